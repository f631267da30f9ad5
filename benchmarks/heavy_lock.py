"""One heavy job at a time on a shared machine: an optional file lock (``flock``) held around a measurement."""

from __future__ import annotations

import contextlib
import fcntl
from pathlib import Path


@contextlib.contextmanager
def held(lock: Path | None):
    """Hold ``lock`` exclusively for the block (waits for it); no lock: nothing to hold."""
    if lock is None:
        yield
        return
    with open(lock, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
