"""TensorBoard event files of a training, beside curves.png, when the ``tensorboard`` package is installed.

    <model_dir>/tensorboard/events.out.tfevents.*   train/loss, train/lr (each iteration), epoch/loss,
                                                    epoch/seconds, validation/<metric> (each validation)

A reporter that listens to the trainer's progress events, so the training loop knows nothing of it. Every
scalar is logged against the global iteration (epoch * iterations_per_epoch + iteration + 1). A resumed run
opens its writer with ``purge_step`` at the iteration it continues from, so TensorBoard drops what an earlier
run logged past its checkpoint (a crash after the last checkpoint) and no step appears twice.
"""

from __future__ import annotations

import math
from pathlib import Path

from deepmed.progress import MultiReporter, Reporter
from deepmed.utils.closed_output import say

TENSORBOARD_DIR = "tensorboard"
_said_missing = False  # the "not installed" line once per process (cross-validation trains several folds)


def tensorboard_available() -> bool:
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return False
    return True


class TensorBoardReporter(Reporter):
    """Writes the scalars of ``iteration``, ``epoch`` and ``validation`` events to one TensorBoard run."""

    def __init__(self, log_dir: Path, iterations_per_epoch: int, resume_step: int = 0):
        from torch.utils.tensorboard import SummaryWriter

        self.iterations_per_epoch = iterations_per_epoch
        self.step = resume_step  # global iterations done; the next iteration is logged at step + 1
        self.writer = SummaryWriter(str(log_dir), purge_step=resume_step + 1 if resume_step else None,
                                    flush_secs=30)

    def emit(self, event, **fields):
        if event == "started":
            self.iterations_per_epoch = fields["iterations_per_epoch"]
        elif event == "iteration":
            self.step = fields["epoch"] * self.iterations_per_epoch + fields["iteration"] + 1
            self._scalar("train/loss", fields["loss"])
            self._scalar("train/lr", fields["lr"])
        elif event == "epoch":  # at the step of the epoch's last iteration (a time budget may end it early)
            self._scalar("epoch/loss", fields["loss"])
            self._scalar("epoch/seconds", fields["seconds"])
        elif event == "validation":
            for name, value in fields["metrics"].items():
                self._scalar(f"validation/{name}", value)
        elif event in ("finished", "stopped", "error"):
            self.writer.flush()

    def _scalar(self, tag: str, value) -> None:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            self.writer.add_scalar(tag, value, self.step)

    def close(self) -> None:
        self.writer.close()


def with_tensorboard(reporter: Reporter, model_dir: Path, iterations_per_epoch: int,
                     resume_step: int = 0) -> tuple[Reporter, TensorBoardReporter | None]:
    """``reporter`` plus a TensorBoard writer into ``model_dir/tensorboard`` (the reporter alone, with one info
    line on stderr, where tensorboard is not installed); and the writer, for the caller to close."""
    global _said_missing
    if not tensorboard_available():
        if not _said_missing:
            say("deepmed: info: tensorboard is not installed, no TensorBoard logs "
                "(pip install tensorboard, or the engine's [tensorboard] extra)")
            _said_missing = True
        return reporter, None
    board = TensorBoardReporter(Path(model_dir) / TENSORBOARD_DIR, iterations_per_epoch, resume_step)
    return MultiReporter(reporter, board), board
