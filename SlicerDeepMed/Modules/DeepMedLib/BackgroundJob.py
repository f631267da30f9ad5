"""Run the engine in a separate process and read its JSON-lines progress without blocking.

The GUI calls ``poll()`` from a QTimer; scripts call ``wait()``. Stop asks a training to checkpoint and
end (a stop file, works on every platform); Cancel kills the whole process tree. A crashed worker never
takes Slicer down: its exit code and last error line end up in ``result.errorMessage``.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from slicer.i18n import tr as _

from DeepMedLib.Signal import Signal

SUCCEEDED, FAILED, STOPPED, CANCELLED = "succeeded", "failed", "stopped", "cancelled"
LOG_LINES_KEPT = 200


@dataclass
class JobResult:
    status: str                       # succeeded / failed / stopped / cancelled
    returnCode: int | None
    errorMessage: str = ""
    events: list = field(default_factory=list)

    @property
    def succeeded(self) -> bool:
        return self.status == SUCCEEDED


class BackgroundJob:
    """One worker process. Signals: ``eventReceived(dict)``, ``logReceived(str)``, ``finished(JobResult)``."""

    def __init__(self, command: list[str], env: dict | None = None, cwd: str | None = None,
                 stopFile: Path | None = None, name: str = "job", stopGraceSeconds: float = 60.0):
        self.command = [str(part) for part in command]
        self.env, self.cwd, self.name = env, cwd, name
        self.stopFile = Path(stopFile) if stopFile else None
        self.stopGraceSeconds = stopGraceSeconds
        self.eventReceived = Signal("dict")
        self.logReceived = Signal("str")
        self.finished = Signal("JobResult")
        self.process: subprocess.Popen | None = None
        self.result: JobResult | None = None
        self.events: list[dict] = []
        self.log: list[str] = []
        self.output: list[str] = []   # stdout lines that are not progress events (a command's JSON answer)
        self._queue: queue.Queue = queue.Queue()
        self._openStreams = 0
        self._cancelled = False
        self._stopRequestedAt: float | None = None
        self._startError: str | None = None
        self.onCancel = None  # called by cancel() before the kill (a remote job also ends its remote worker)

    # ---- life cycle ------------------------------------------------------------------------------
    def start(self) -> BackgroundJob:
        """Start the worker. Never raises: a worker that cannot start (no PythonSlicer, a bad working folder,
        too many processes) ends as a failed job at the next ``poll()``, so every caller's ``finished``
        handler runs and no panel is left half set up."""
        try:
            self.process = subprocess.Popen(self.command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                            stdin=subprocess.DEVNULL, env=self.env, cwd=self.cwd, text=True,
                                            encoding="utf-8", errors="replace", bufsize=1, **processOptions())
        except (OSError, ValueError, subprocess.SubprocessError) as exc:
            self._startError = _("{job}: could not start the worker ({program}): {error}").format(
                job=self.name, program=self.command[0], error=exc)
            return self
        for stream, kind in ((self.process.stdout, "out"), (self.process.stderr, "err")):
            self._openStreams += 1
            threading.Thread(target=self._read, args=(stream, kind), daemon=True).start()
        return self

    def _read(self, stream, kind: str) -> None:
        for line in iter(stream.readline, ""):
            self._queue.put((kind, line.rstrip("\r\n")))
        stream.close()
        self._queue.put((kind, None))

    @property
    def running(self) -> bool:
        return (self.process is not None or self._startError is not None) and self.result is None

    def poll(self) -> bool:
        """Handle what the worker wrote since the last call; True while the job is still running."""
        if self.result is not None:
            return False
        if self._startError is not None:
            self.result = JobResult(status=FAILED, returnCode=None, errorMessage=self._startError)
            self.finished.emit(self.result)
            return False
        while True:
            try:
                kind, line = self._queue.get_nowait()
            except queue.Empty:
                break
            if line is None:
                self._openStreams -= 1
            elif kind == "out" and line.startswith("{") and self._handleEvent(line):
                pass
            elif line.strip():
                if kind == "out":
                    self.output.append(line)
                self._addLog(line)
        if self._stopRequestedAt is not None and time.time() - self._stopRequestedAt > self.stopGraceSeconds:
            self.cancel()
        if self._openStreams == 0 and self.process.poll() is not None:
            self._finish()
            return False
        return True

    def wait(self, timeout: float | None = None, processEvents=None, interval: float = 0.05) -> JobResult:
        """Block until the job ends (``processEvents`` keeps a GUI alive meanwhile); cancel on timeout."""
        deadline = None if timeout is None else time.time() + timeout
        while self.poll():
            if deadline is not None and time.time() > deadline:
                self.cancel()
            if processEvents is not None:
                processEvents()
            time.sleep(interval)
        return self.result

    def waitForStop(self, seconds: float, processEvents=None, interval: float = 0.05) -> bool:
        """After ``requestStop``: wait up to ``seconds`` for the worker to checkpoint and end, never killing it
        (on Slicer exit it may go on alone: it finishes its checkpoint with or without us). True if it ended."""
        deadline = time.time() + seconds
        self._stopRequestedAt = None if self._stopRequestedAt is None else float("inf")  # no Cancel from poll()
        while self.poll():
            if time.time() > deadline:
                return False
            if processEvents is not None:
                processEvents()
            time.sleep(interval)
        return True

    def requestStop(self) -> None:
        """Ask the worker to finish its step, write a checkpoint and end (Cancel after a grace period)."""
        if not self.running or self.process is None or self._stopRequestedAt is not None:
            return
        self._stopRequestedAt = time.time()
        if self.stopFile is not None:
            self.stopFile.parent.mkdir(parents=True, exist_ok=True)
            self.stopFile.write_text("stop\n")
        elif sys.platform != "win32":
            os.kill(self.process.pid, signal.SIGINT)
        else:
            self.cancel()

    def cancel(self) -> None:
        """End the worker and every process it started, at once."""
        if self.process is None or (self.process.poll() is not None and self._openStreams == 0):
            return
        self._cancelled = True
        if self.onCancel is not None:
            self.onCancel()
        killProcessTree(self.process)

    # ---- internals -------------------------------------------------------------------------------
    def _handleEvent(self, line: str) -> bool:
        """A JSON-lines progress event (True), or not one (False: kept as output)."""
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            return False
        if not isinstance(event, dict) or "event" not in event:
            return False
        self.events.append(event)
        self.eventReceived.emit(event)
        return True

    def outputJson(self):
        """The command's answer printed as JSON on stdout (``--json``), or None when there is none."""
        text = "\n".join(self.output)
        start = min((i for i in (text.find("{"), text.find("[")) if i >= 0), default=-1)
        if start < 0:
            return None
        try:
            return json.JSONDecoder().raw_decode(text[start:])[0]
        except json.JSONDecodeError:
            return None

    def _addLog(self, line: str) -> None:
        self.log.append(line)
        del self.log[:-LOG_LINES_KEPT]
        self.logReceived.emit(line)

    def _finish(self) -> None:
        code = self.process.returncode
        kinds = [e["event"] for e in self.events]
        if self._cancelled:
            status = CANCELLED
        elif "stopped" in kinds:
            status = STOPPED
        elif code == 0:
            status = SUCCEEDED
        else:
            status = FAILED
        message = self._errorMessage(code) if status == FAILED else ""
        self.result = JobResult(status=status, returnCode=code, errorMessage=message, events=list(self.events))
        if self.stopFile is not None and self.stopFile.exists():
            self.stopFile.unlink()
        self.finished.emit(self.result)

    def _errorMessage(self, code: int) -> str:
        errors = [e.get("message", "") for e in self.events if e["event"] == "error"]
        if errors and errors[-1]:
            return errors[-1]
        userErrors = [line.split("deepmed: error:", 1)[1].strip() for line in self.log if "deepmed: error:" in line]
        if userErrors:
            return "\n".join(userErrors)
        if code is not None and code < 0:
            try:
                signalName = signal.Signals(-code).name
            except ValueError:
                signalName = f"signal {-code}"
            return _("{job}: the worker process crashed ({signal})").format(job=self.name, signal=signalName)
        lastLine = next((line for line in reversed(self.log) if line.strip()), "")
        return _("{job}: the worker process ended with exit code {code}").format(job=self.name, code=code) + (
            f": {lastLine}" if lastLine else "")


def processOptions(platform: str = sys.platform, subprocessModule=subprocess) -> dict:
    """Popen options: its own process group (Cancel kills the tree); on Windows no console window, as
    ``slicer.util.launchConsoleProcess`` (a hidden STARTUPINFO window, and CREATE_NO_WINDOW)."""
    if platform != "win32":
        return {"start_new_session": True}
    info = subprocessModule.STARTUPINFO()
    info.dwFlags |= subprocessModule.STARTF_USESHOWWINDOW
    info.wShowWindow = 0  # SW_HIDE
    return {"startupinfo": info,
            "creationflags": subprocessModule.CREATE_NEW_PROCESS_GROUP | subprocessModule.CREATE_NO_WINDOW}


def killProcessTree(process: subprocess.Popen) -> None:
    """Kill a process started by BackgroundJob and all its descendants (its own process group / job)."""
    if sys.platform == "win32":
        subprocess.run(["taskkill", "/F", "/T", "/PID", str(process.pid)], capture_output=True, check=False)
        return
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
