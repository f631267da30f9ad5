"""One helper for every string option: typos answered with "did you mean ...?"."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from deepmed.errors import DeepMedError


def suggest(value: str, available: Iterable[str]) -> str:
    """Return a ``did you mean 'x'? `` hint for ``value`` among ``available`` (or an empty string)."""
    lowered = {a.lower(): a for a in available}
    matches = difflib.get_close_matches(str(value).lower(), list(lowered), n=1, cutoff=0.6)
    return f"did you mean '{lowered[matches[0]]}'? " if matches else ""


def choice_error(what: str, value: object, available: Iterable[str]) -> str:
    """Message for an unknown option value, e.g. ``unknown loss 'dise': did you mean 'dice'? available: ...``."""
    available = sorted(available)
    return f"unknown {what} '{value}': {suggest(str(value), available)}available: {', '.join(available)}"


def look_up(what: str, value: str, available: Iterable[str]) -> str:
    """Return the canonical spelling of ``value`` (case-insensitive) or raise a DeepMedError with a hint.

    Example:
        >>> look_up("loss", "Dice", ["dice", "dice_ce"])
        'dice'
    """
    available = list(available)
    for option in available:
        if str(value).lower() == option.lower():
            return option
    raise DeepMedError(choice_error(what, value, available))
