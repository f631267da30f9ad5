"""YAML read by the YAML 1.2 core schema: ``1e-4`` is a number, ``on``/``yes``/``2024-01-01`` are strings.

PyYAML implements YAML 1.1, where ``1e-4`` (no dot) is a string and ``on`` is true. Configs and ``--set``
values follow YAML 1.2 instead: null (``null``, ``~``, empty), booleans (``true``/``false``), integers
(``12``, ``0o17``, ``0x1F``), floats (``1e-4``, ``.5``, ``.inf``, ``-.inf``, ``.nan``), else strings.

Example:
    >>> load_yaml("[1e-4, .5, on, 017, .inf]")
    [0.0001, 0.5, 'on', 17, inf]
"""

from __future__ import annotations

import re
from typing import Any

import yaml

_TAG = "tag:yaml.org,2002:"
#: (tag, regex, first characters) of the YAML 1.2 core schema's scalars.
_CORE = [
    ("null", r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
    ("bool", r"^(?:true|True|TRUE|false|False|FALSE)$", list("tTfF")),
    ("int", r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", list("-+0123456789")),
    ("float", (r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
               r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"), list("-+.0123456789")),
]
#: PyYAML's YAML 1.1 resolvers that the core schema replaces or does not have.
_REPLACED = {_TAG + name for name in ("null", "bool", "int", "float", "timestamp", "value")}


class Yaml12Loader(yaml.SafeLoader):
    """A safe loader resolving plain scalars by the YAML 1.2 core schema."""


Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, regex) for tag, regex in resolvers if tag not in _REPLACED]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
for _name, _pattern, _first in _CORE:
    Yaml12Loader.add_implicit_resolver(_TAG + _name, re.compile(_pattern), _first)


def _construct_int(loader: yaml.SafeLoader, node: yaml.Node) -> int:
    text = loader.construct_scalar(node)
    if text.startswith(("0o", "0x")):
        return int(text[2:], 8 if text[1] == "o" else 16)
    return int(text, 10)  # "017" is seventeen in YAML 1.2 (octal in 1.1)


def _construct_float(loader: yaml.SafeLoader, node: yaml.Node) -> float:
    text = loader.construct_scalar(node).lower()
    if text.endswith(".inf"):
        return float("-inf") if text.startswith("-") else float("inf")
    if text == ".nan":
        return float("nan")
    return float(text)


Yaml12Loader.add_constructor(_TAG + "int", _construct_int)
Yaml12Loader.add_constructor(_TAG + "float", _construct_float)


def load_yaml(text: str) -> Any:
    """Parse YAML text by the 1.2 core schema (raises ``yaml.YAMLError`` on a syntax error)."""
    return yaml.load(text, Loader=Yaml12Loader)  # a SafeLoader subclass
