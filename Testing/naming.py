"""Error checks that pin what a message names (the file, the key, the offending value), not its sentence.

    with pytest.raises(DeepMedError, match=naming("d.json", "line 4")): ...
    assert names(stderr, "model.safetensors", "--force")
"""

from __future__ import annotations

import re


def naming(*tokens: str) -> str:
    """A ``pytest.raises(match=...)`` pattern that holds when the message contains every token, in any order."""
    if not tokens:
        raise ValueError("naming() needs at least one token")
    return "(?s)" + "".join(f"(?=.*{re.escape(token)})" for token in tokens)


def names(text: str, *tokens: str) -> bool:
    """True when ``text`` contains every token (``assert names(err, path, key)``)."""
    if not tokens:
        raise ValueError("names() needs at least one token")
    return all(token in text for token in tokens)
