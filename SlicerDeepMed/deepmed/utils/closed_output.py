"""Writing to an output whose reader went away (the Slicer GUI closed): stop writing, never crash."""

from __future__ import annotations

import os
import sys
from typing import IO

#: What a write to a closed pipe or file raises: BrokenPipeError/EPIPE, or "I/O operation on closed file".
CLOSED_OUTPUT_ERRORS = (OSError, ValueError)


def point_at_devnull(stream: IO[str]) -> None:
    """Point ``stream``'s file descriptor at the null device, so that later writes and Python's flush at
    exit (which would otherwise end the process with exit code 120) succeed silently."""
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(null, stream.fileno())
        finally:
            os.close(null)
    except (OSError, ValueError, AttributeError):
        pass


def say(line: str, stream: IO[str] | None = None) -> bool:
    """Print one line (default: stderr); on a closed output silence it and return False."""
    stream = stream or sys.stderr
    try:
        print(line, file=stream, flush=True)
        return True
    except CLOSED_OUTPUT_ERRORS:
        point_at_devnull(stream)
        return False
