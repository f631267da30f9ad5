"""One handle class for what a panel or a script holds while a worker runs (an inference, a training, a
dataset check, an installation check): ``poll`` / ``stop`` / ``cancel`` / ``wait`` on its BackgroundJob.

Subclasses turn the worker's end into their own result (``_onJobFinished``) and say what ``wait`` returns
(``waitValue``: the output node, the report, ...).
"""

from __future__ import annotations


class JobHandle:
    def __init__(self, job=None):
        self.job = None
        if job is not None:
            self.attach(job)

    def attach(self, job) -> None:
        """Follow ``job`` (a BackgroundJob, started or not)."""
        self.job = job
        job.finished.connect(self._onJobFinished)

    def poll(self) -> bool:
        """Handle what the worker wrote since the last call; True while it runs (a QTimer calls this)."""
        return self.job.poll() if self.job is not None else False

    def stop(self) -> None:
        """Ask the worker to finish its step, write what it has (a checkpoint) and end."""
        if self.job is not None:
            self.job.requestStop()

    def cancel(self) -> None:
        """End the worker and everything it started, at once."""
        if self.job is not None:
            self.job.cancel()

    def wait(self, timeout: float | None = None, processEvents=None):
        """Block until the worker ended (``processEvents`` keeps a GUI alive); returns ``waitValue()``."""
        self.job.wait(timeout, processEvents)
        return self.waitValue()

    def waitValue(self):
        return self.job.result

    def _onJobFinished(self, result) -> None:
        pass
