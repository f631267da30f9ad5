"""Asking a running training to stop (with a checkpoint): signals, a stop file, or the caller."""

from __future__ import annotations

import signal
import threading
from pathlib import Path


class StopRequest:
    """Set by SIGINT/SIGTERM, by a caller (e.g. a GUI thread), or by ``stop_file`` appearing (``deepmed train
    --stop-file``: how the Slicer panels ask a worker process to stop on every platform): finish the step,
    checkpoint, stop."""

    def __init__(self, stop_file: Path | None = None):
        self._requested = False
        self._previous: dict = {}
        self.stop_file = Path(stop_file) if stop_file else None

    def __call__(self, signum=None, frame=None):
        self._requested = True

    @property
    def requested(self) -> bool:
        if not self._requested and self.stop_file is not None and self.stop_file.exists():
            self._requested = True
        return self._requested

    @requested.setter
    def requested(self, value: bool):
        self._requested = bool(value)

    def install(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self)

    def uninstall(self):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
