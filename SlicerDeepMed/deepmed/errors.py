"""Errors that are the user's to fix: the CLI prints them on one line, without a traceback."""

from __future__ import annotations


class DeepMedError(Exception):
    """A problem with the user's input (file, option, dataset); the message says what and where."""


class DeepMedInterrupted(DeepMedError):
    """The user stopped a long job (Ctrl-C, SIGTERM, Stop button)."""
