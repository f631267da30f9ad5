"""A MONAI bundle configuration read as data: ``@`` references and ``%`` macros resolved, nothing executed.

MONAI's ``ConfigParser`` syntax: ``@key`` refers to another entry, ``%file#key`` copies an entry of a file,
``$...`` is Python evaluated at run time, ``#`` (or ``::``) separates the parts of a key, ``_target_`` names
a class. This reader resolves references and macros to plain values and refuses a ``$`` expression wherever
a value is needed, naming its key, unless the user gave that key's value (``--set key=value``). The one
kind of expression it reads is a concatenation of strings and references (``$@bundle_root + '/models/x.pt'``,
the usual weights path), parsed with ``ast`` and never run.

Example:
    >>> config = BundleConfig({"size": 96, "inferer": {"roi_size": ["@size", "@size", 64]}}, "b")
    >>> config.get("inferer#roi_size")
    [96, 96, 64]
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

from deepmed.errors import DeepMedError

CONFIG_NAMES = ("inference.json", "inference.yaml", "inference.yml")


def read_config_file(path: Path, where: str):
    """A .json or .yaml bundle config as data (YAML read safely: no tags, no objects)."""
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DeepMedError(f"{where}: cannot read {path.name} ({exc.strerror})") from None
    try:
        if path.suffix.lower() == ".json":
            return json.loads(text)
        return yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        raise DeepMedError(f"{where}: {path.name}: JSON syntax error at line {exc.lineno}: {exc.msg}") from None
    except yaml.YAMLError as exc:
        raise DeepMedError(f"{where}: {path.name}: YAML error: {str(exc).splitlines()[0]}") from None


def find_inference_config(bundle: Path, where: str) -> Path:
    for name in CONFIG_NAMES:
        if (bundle / "configs" / name).is_file():
            return bundle / "configs" / name
    raise DeepMedError(f"{where}: MONAI bundle without configs/inference.json or configs/inference.yaml")


def _key(path: str) -> str:
    return path.replace("::", "#")


class BundleConfig:
    """One bundle config; ``get(key)`` gives the entry with every reference resolved to plain data.

    Args:
        config: the parsed config file (dicts, lists, numbers, strings).
        where: the bundle's name in error messages.
        root: the bundle folder (``%file#key`` macros are read relative to it).
        values: user-given values of keys whose entries are ``$`` expressions (``{"a#b": value}``).
    """

    path_name = "inference.json"  # the file it was read from

    def __init__(self, config, where: str, root: Path | None = None, values: dict | None = None):
        if not isinstance(config, dict):
            raise DeepMedError(f"{where}: the inference config is not a mapping of keys to entries")
        self.config, self.where, self.root = config, where, root
        self.values = {_key(k): v for k, v in (values or {}).items()}
        self.used: set[str] = set()

    def has(self, key: str) -> bool:
        try:
            self.raw(key)
            return True
        except DeepMedError:
            return False

    def raw(self, key: str, config=None):
        """The entry at ``key`` as written (unresolved)."""
        node = self.config if config is None else config
        for part in _key(key).split("#") if key else []:
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif isinstance(node, list) and part.lstrip("-").isdigit() and -len(node) <= int(part) < len(node):
                node = node[int(part)]
            else:
                raise DeepMedError(f"{self.where}: the config has no entry {key!r}")
        return node

    def get(self, key: str, _seen: tuple[str, ...] = ()):
        """The entry at ``key`` with references and macros resolved; ``$`` expressions refused."""
        key = _key(key)
        if key in self.values:
            self.used.add(key)
            return self.values[key]
        return self.resolve(self.raw(key), key, _seen)

    def resolve(self, value, key: str, _seen: tuple[str, ...] = ()):
        """``value`` (found at ``key``) with every reference inside it resolved."""
        if key in self.values:
            self.used.add(key)
            return self.values[key]
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
        other = BundleConfig(read_config_file(file, self.where), self.where, self.root, self.values)
        return other.resolve(other.raw(target), key, seen)

    def _expression(self, value: str, key: str, seen):
        """Only ``$'text' + @ref + ...`` (strings and references joined by ``+``) is read; anything else is
        Python that deepmed does not run."""
        source = value[1:].strip()
        references: dict[str, str] = {}

        def placeholder(match: str) -> str:
            name = f"__ref{len(references)}__"
            references[name] = match
            return name

        text = re.sub(r"@([A-Za-z0-9_#:]+)", lambda m: placeholder(m.group(1)), source)
        try:
            tree = ast.parse(text, mode="eval").body
        except SyntaxError:
            tree = None
        parts = _concatenation(tree) if tree is not None else None
        if parts is not None:
            pieces = []
            for kind, item in parts:
                piece = self.get(references[item], seen) if kind == "ref" else item
                if not isinstance(piece, str):
                    parts = None
                    break
                pieces.append(piece)
            if parts is not None:
                return "".join(pieces)
        raise DeepMedError(f"{self.where}: {key} = {value[:80]!r} is a Python expression that deepmed does not "
                           f"run; give its value with --set '{key}=VALUE'")


def _concatenation(node):
    """``'a' + name + 'b'`` -> [("text", "a"), ("ref", name), ("text", "b")]; None for anything else."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [("text", node.value)]
    if isinstance(node, ast.Name) and node.id.startswith("__ref"):
        return [("ref", node.id)]
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _concatenation(node.left), _concatenation(node.right)
        if left is not None and right is not None:
            return left + right
    return None


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
