"""A MONAI bundle configuration read as data: ``@`` references and ``%`` macros resolved, nothing executed.

MONAI's ``ConfigParser`` syntax: ``@key`` refers to another entry, ``%file#key`` copies an entry of a file,
``$...`` is Python evaluated at run time, ``#`` (or ``::``) separates the parts of a key, ``_target_`` names
a class. This reader resolves references and macros to plain values and evaluates the pure subset of ``$``
expressions with ``bundle_expr`` (over ``ast``, nothing run); any other expression raises ``BundleNeedsCode``
naming its key, unless the user gave that key's value (``--set key=value``). A given value replaces the entry
wherever it is read, references and expressions included, and every read of it is counted in ``used``.

Example:
    >>> config = BundleConfig({"size": 96, "inferer": {"roi_size": ["@size", "@size", 64]}}, "b")
    >>> config.get("inferer#roi_size")
    [96, 96, 64]
"""

from __future__ import annotations

import re
from pathlib import Path

from deepmed.errors import DeepMedError
from deepmed.utils.json_files import parse_json
from deepmed.zoo.bundle_expr import BundleNeedsCode, evaluate

__all__ = ["BundleConfig", "BundleNeedsCode", "find_inference_config", "parse_values", "read_config_file",
           "transform_list"]

CONFIG_NAMES = ("inference.json", "inference.yaml", "inference.yml")


def read_config_file(path: Path, where: str):
    """A .json or .yaml bundle config as data (YAML read safely: no tags, no objects)."""
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DeepMedError(f"{where}: cannot read {path.name} ({exc.strerror})") from None
    if path.suffix.lower() == ".json":
        return parse_json(text, f"{where}: {path.name}")
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise DeepMedError(f"{where}: {path.name}: YAML error: {str(exc).splitlines()[0]}") from None


def find_inference_config(bundle: Path, where: str) -> Path:
    for name in CONFIG_NAMES:
        if (bundle / "configs" / name).is_file():
            return bundle / "configs" / name
    raise DeepMedError(f"{where}: MONAI bundle without configs/inference.json or configs/inference.yaml")


def _key(path: str) -> str:
    return path.replace("::", "#")



_MISSING = object()


def lookup(config, key: str, missing=None):
    """The entry at ``key`` (``a#b#0``, or MONAI's older ``a::b``) as written, unresolved; ``missing`` when
    there is none."""
    node = config
    for part in _key(key).split("#") if key else []:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.lstrip("-").isdigit() and -len(node) <= int(part) < len(node):
            node = node[int(part)]
        else:
            return missing
    return node

class BundleConfig:
    """One bundle config; ``get(key)`` gives the entry with every reference resolved to plain data.

    Args:
        config: the parsed config file (dicts, lists, numbers, strings).
        where: the bundle's name in error messages.
        root: the bundle folder (``%file#key`` macros are read relative to it).
        values: user-given values of keys whose entries are ``$`` expressions (``{"a#b": value}``).
    """

    path_name = "inference.json"  # the file it was read from

    def __init__(self, config, where: str, root: Path | None = None, values: dict | None = None,
                 used: set[str] | None = None):
        if not isinstance(config, dict):
            raise DeepMedError(f"{where}: the inference config is not a mapping of keys to entries")
        self.config, self.where, self.root = config, where, root
        self.values = {_key(k): v for k, v in (values or {}).items()}
        self.used: set[str] = set() if used is None else used  # the given keys read so far (shared by copies)

    def has(self, key: str) -> bool:
        try:
            self.raw(key)
            return True
        except DeepMedError:
            return False

    def raw(self, key: str, config=None):
        """The entry at ``key`` as written (unresolved)."""
        found = lookup(self.config if config is None else config, key, missing=_MISSING)
        if found is _MISSING:
            raise DeepMedError(f"{self.where}: the config has no entry {key!r}")
        return found

    def get(self, key: str, _seen: tuple[str, ...] = ()):
        """The entry at ``key`` with references and macros resolved; ``$`` expressions refused."""
        key = _key(key)
        given = self._given(key)
        if given is not None:
            return given[0]
        return self.resolve(self.raw(key), key, _seen)

    def _given(self, key: str) -> tuple | None:
        """``(value,)`` when the user gave ``key`` or an entry holding it (``--set a={"b": 1}`` gives ``a#b``)."""
        parts = key.split("#")
        for end in range(len(parts), 0, -1):
            prefix = "#".join(parts[:end])
            if prefix in self.values:
                self.used.add(prefix)
                return (self.raw("#".join(parts[end:]), self.values[prefix]) if end < len(parts)
                        else self.values[prefix],)
        return None

    def resolve(self, value, key: str, _seen: tuple[str, ...] = ()):
        """``value`` (found at ``key``) with every reference inside it resolved."""
        given = self._given(key) if key else None
        if given is not None:
            return given[0]
        if isinstance(value, dict):
            return {k: self.resolve(v, f"{key}#{k}" if key else k, _seen) for k, v in value.items()}
        if isinstance(value, list):
            return [self.resolve(v, f"{key}#{i}", _seen) for i, v in enumerate(value)]
        if not isinstance(value, str) or value[:1] not in ("@", "%", "$"):
            return value
        if value.startswith("@"):
            target = _key(value[1:])
            if target in _seen:
                raise DeepMedError(f"{self.where}: {key}: circular reference {value!r}")
            return self.get(target, _seen + (target,))
        if value.startswith("%"):
            return self._macro(value, key, _seen)
        return self._expression(value, key, _seen)

    def _macro(self, value: str, key: str, seen):
        path, _, target = _key(value[1:]).partition("#")
        if not path:
            return self.get(target, seen)
        if self.root is None or Path(path).is_absolute() or ".." in Path(path).parts:
            raise DeepMedError(f"{self.where}: {key} = {value!r}: macros may only name files inside the bundle")
        file = self.root / path
        if not file.is_file():
            raise DeepMedError(f"{self.where}: {key} = {value!r}: {path} not found in the bundle")
        other = BundleConfig(read_config_file(file, self.where), self.where, self.root, self.values, self.used)
        return other.resolve(other.raw(target), key, seen)

    def _expression(self, value: str, key: str, seen):
        """The pure subset of Python (``bundle_expr``); anything else raises ``BundleNeedsCode``."""
        return evaluate(value, key, lambda reference: self.get(reference, seen + (_key(reference),)), self.where)


#: a transforms entry that is a reference to a list, or lists joined with ``+``
LIST_SUM = re.compile(r"\$?\s*@[\w#:]+(\s*\+\s*@[\w#:]+)*\s*")


def transform_list(config: BundleConfig, key: str) -> list[tuple[str, dict]]:
    """The transforms of the Compose (or list) at ``key`` as ``(key of the step, step)``; ``_disabled_`` ones
    left out. ``transforms: "$@a + @b"`` (references to lists, joined) reads those lists."""
    if not config.has(key):
        return []
    raw = config.raw(key)
    prefix = key
    sources = None  # the key each transform is read from, when the list is made of references
    if isinstance(raw, dict):
        transforms, prefix = raw.get("transforms"), f"{key}#transforms"
        if isinstance(transforms, str) and LIST_SUM.fullmatch(transforms):  # "$@transforms" or "$@a + @b"
            lists = [_key(r) for r in re.findall(r"@([\w#:]+)", transforms)]
            parts = [(f"{name}#{i}", item) for name in lists if isinstance(config.raw(name), list)
                     for i, item in enumerate(config.raw(name))]
            if len(parts) != sum(len(config.raw(n)) if isinstance(config.raw(n), list) else 1 for n in lists):
                raise DeepMedError(f"{config.where}: {prefix} = {transforms!r} joins entries that are not lists")
            sources, transforms = [p for p, _ in parts], [item for _, item in parts]
        if str(raw.get("_target_", "Compose")).rsplit(".", 1)[-1] != "Compose" or not isinstance(transforms, list):
            raise DeepMedError(f"{config.where}: {key} is not a Compose of transforms")
        if config.resolve(raw.get("lazy", False), f"{key}#lazy"):
            raise DeepMedError(f"{config.where}: {key} uses lazy resampling, which deepmed does not reproduce")
        raw = transforms
    if not isinstance(raw, list):
        raise DeepMedError(f"{config.where}: {key} is neither a Compose nor a list of transforms")
    steps = []
    for index, item in enumerate(raw):
        path = sources[index] if sources else f"{prefix}#{index}"
        if isinstance(item, str) and item.startswith("@"):
            item, path = config.raw(item[1:]), item[1:]
        if not isinstance(item, dict) or "_target_" not in item:
            raise DeepMedError(f"{config.where}: {path} is not a transform with a _target_")
        if config.resolve(item.get("_disabled_", False), f"{path}#_disabled_") is True:
            continue
        steps.append((path, item))
    return steps


def parse_values(pairs: list[str]) -> dict:
    """``["a#b=[1, 2]", ...]`` (``--set``) -> ``{"a#b": [1, 2]}``, values read as YAML 1.2."""
    from deepmed.utils.yaml12 import load_yaml

    values = {}
    for pair in pairs or []:
        key, sep, text = pair.partition("=")
        if not sep or not key.strip():
            raise DeepMedError(f"--set: expected KEY=VALUE (a bundle config key such as "
                               f"preprocessing#transforms#3#pixdim), got {pair!r}")
        values[_key(key.strip())] = load_yaml(text)
    return values
