"""The pure part of MONAI bundle ``$`` expressions, evaluated over Python's ``ast``: nothing is ever run.

A bundle writes values as Python (``"$len(@spatial_size)"``, ``"$[1.5] * 3 if @highres else [3.0] * 3"``,
``"$torch.float32"``, ``"$monai.utils.CommonKeys.IMAGE"``). This module reads the side-effect-free subset:
literals, arithmetic, comparisons, boolean and conditional expressions, indexing and slicing, list / tuple /
dict / set displays, a few built-in functions (``len min max int float round sum range abs list tuple bool
str``), ``@`` references, a short allow-list of constant names (torch and numpy dtypes, MONAI's
``CommonKeys``) and ``torch.device(...)``, which stands for the device the user runs on. The whole tree is
checked before any of it is evaluated; anything else (attribute access on values, other calls, names,
lambdas, comprehensions, imports) raises :class:`BundleNeedsCode` naming the key. Sizes are bounded: source
length, tree depth and size, integer bits, sequence lengths.

Values that are not plain data are tagged dicts the card can hold: ``{"$dtype": "torch.float32"}`` and
``{"$device": "user"}``; ``deepmed.model.card_values.decode`` turns them back into the objects MONAI expects.

Example:
    >>> evaluate("$[1.5, 1.5, 1.5] if @highres else [3.0] * 3", "pixdim", {"highres": False}.__getitem__)
    [3.0, 3.0, 3.0]
"""

from __future__ import annotations

import ast
import operator
import re
from collections.abc import Callable

from deepmed.errors import DeepMedError
from deepmed.model.card_values import NUMPY_DTYPES as _NUMPY_DTYPES
from deepmed.model.card_values import TORCH_DTYPES as _TORCH_DTYPES

MAX_SOURCE = 2000  # characters
MAX_NODES = 400
MAX_DEPTH = 40
MAX_BITS = 4096  # an integer result's size
MAX_ITEMS = 100_000  # a sequence's length

#: MONAI's monai.utils.CommonKeys (a str enum: its members are these strings)
COMMON_KEYS = {"IMAGE": "image", "LABEL": "label", "PRED": "pred", "LOSS": "loss", "METADATA": "metadata"}

CONSTANTS: dict[str, object] = {
    **{f"torch.{d}": {"$dtype": f"torch.{d}"} for d in _TORCH_DTYPES},
    **{f"{m}.{d}": {"$dtype": f"numpy.{d}"} for m in ("numpy", "np") for d in _NUMPY_DTYPES},
    **{f"{prefix}.{k}": v for prefix in ("monai.utils.CommonKeys", "monai.utils.enums.CommonKeys")
       for k, v in COMMON_KEYS.items()},
}
USER_DEVICE = {"$device": "user"}
FUNCTIONS: dict[str, Callable] = {"len": len, "min": min, "max": max, "int": int, "float": float, "round": round,
                                  "sum": sum, "range": range, "abs": abs, "list": list, "tuple": tuple, "bool": bool,
                                  "str": str}
#: dotted calls allowed only as the argument of torch.device(...), whose arguments are never evaluated
DEVICE_QUERIES = {"torch.cuda.is_available"}

_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow}
_UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg, ast.Not: operator.not_}
_COMPARE = {ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
            ast.Gt: operator.gt, ast.GtE: operator.ge, ast.In: lambda a, b: a in b,
            ast.NotIn: lambda a, b: a not in b, ast.Is: operator.is_, ast.IsNot: operator.is_not}
_PLAIN = (ast.Expression, ast.Constant, ast.BinOp, ast.UnaryOp, ast.BoolOp, ast.Compare, ast.IfExp, ast.Subscript,
          ast.Slice, ast.List, ast.Tuple, ast.Dict, ast.Set, ast.Load, ast.And, ast.Or,
          *_BINARY, *_UNARY, *_COMPARE)
_REFERENCE = re.compile(r"@([A-Za-z0-9_#:]+)")
_PLACEHOLDER = "__ref{}__"


class BundleNeedsCode(DeepMedError):
    """A ``$`` expression outside the pure subset: running it needs the bundle's own code (``--trust-code``).

    Attributes: ``key`` (the config key), ``source`` (the expression), ``reason`` (what was not pure)."""

    def __init__(self, where: str, key: str, source: str, reason: str):
        self.key, self.source, self.reason = key, source, reason
        super().__init__(f"{where}: {key} = {source[:80]!r} is Python deepmed does not evaluate ({reason}); give "
                         f"its value with --set '{key}=VALUE', or run the bundle's own code with --trust-code")


class _Refused(Exception):
    """Internal: why an expression is not pure."""


def _dotted(node) -> str | None:
    """``torch.cuda.is_available`` -> that string; None unless the node is a chain of names."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        return ".".join([node.id, *reversed(parts)])
    return None


def _check(node, depth: int = 0, in_device: bool = False) -> None:
    """Every node of the tree is one the evaluator knows; raises ``_Refused`` before anything runs."""
    if depth > MAX_DEPTH:
        raise _Refused(f"nested deeper than {MAX_DEPTH}")
    if isinstance(node, (ast.Attribute, ast.Name)):
        name = _dotted(node)
        if name is not None and (name in CONSTANTS or re.fullmatch(r"__ref\d+__", name)):
            return
        raise _Refused(f"the name {ast.unparse(node)[:40]!r}")
    if isinstance(node, ast.Call):
        name = _dotted(node.func)
        if name == "torch.device" and not node.keywords:
            for argument in node.args:
                _check(argument, depth + 1, in_device=True)
            return
        if name in DEVICE_QUERIES and in_device and not node.args and not node.keywords:
            return
        if name not in FUNCTIONS:
            raise _Refused(f"a call of {ast.unparse(node.func)[:40]!r}")
        if node.keywords and (name != "round" and name not in ("min", "max", "sum")):
            raise _Refused(f"keyword arguments to {name}")
        for child in [*node.args, *(k.value for k in node.keywords)]:
            if isinstance(child, ast.Starred):
                raise _Refused("starred arguments")
            _check(child, depth + 1, in_device)
        return
    if isinstance(node, ast.Constant) and not isinstance(node.value, (int, float, str, bool, type(None))):
        raise _Refused(f"a {type(node.value).__name__} constant")
    if not isinstance(node, _PLAIN):
        raise _Refused(f"{type(node).__name__} is not a pure expression")
    for child in ast.iter_child_nodes(node):
        _check(child, depth + 1, in_device)


def _bounded(value):
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > MAX_BITS:
        raise _Refused(f"an integer of more than {MAX_BITS} bits")
    if isinstance(value, (str, list, tuple, dict, set, range)) and _weight(value, {}) > MAX_ITEMS:
        raise _Refused(f"a value of more than {MAX_ITEMS} items")
    return value


def _weight(value, memo: dict) -> int:
    """Items in ``value`` counted through nested containers (``[[0] * 1000] * 1000`` is a million: it would be
    written out in full), each distinct object weighed once."""
    if id(value) in memo:
        return memo[id(value)]
    if isinstance(value, (str, range)):
        weight = len(value)
    elif isinstance(value, (list, tuple, set)):
        weight = len(value) + sum(_weight(v, memo) for v in value)
    elif isinstance(value, dict):
        weight = len(value) + sum(_weight(k, memo) + _weight(v, memo) for k, v in value.items())
    else:
        weight = 1
    memo[id(value)] = weight
    return weight


def _binary(op, left, right):
    """``left op right``, refused before computing a result past the bounds."""
    numbers = all(isinstance(v, (int, float)) for v in (left, right))
    if isinstance(op, ast.Pow) and numbers and (
            abs(right) > 1024 or (isinstance(left, int) and isinstance(right, int) and abs(left) > 1
                                  and right * abs(left).bit_length() > MAX_BITS)):
        raise _Refused("a power beyond the size bound")
    if isinstance(op, ast.Mult) and not numbers and (isinstance(left, int) or isinstance(right, int)):
        count, sequence = (left, right) if isinstance(left, int) else (right, left)
        if count * _weight(sequence, {}) > MAX_ITEMS:
            raise _Refused(f"a value of more than {MAX_ITEMS} items")
    if (isinstance(op, ast.Mult) and numbers and isinstance(left, int) and isinstance(right, int)
            and left.bit_length() + right.bit_length() > MAX_BITS + 1):
        raise _Refused("an integer beyond the size bound")
    if isinstance(op, ast.Mod) and isinstance(left, str):
        raise _Refused("%-formatting of strings")
    return _bounded(_BINARY[type(op)](left, right))


class _Evaluator:
    def __init__(self, references: dict[str, str], get: Callable[[str], object]):
        self.references, self.get = references, get

    def __call__(self, node):
        method = getattr(self, f"_{type(node).__name__}", None)
        if method is None:
            raise _Refused(f"{type(node).__name__} is not a pure expression")
        return _bounded(method(node))

    def _Constant(self, node):
        return node.value

    def _Name(self, node):
        if node.id in self.references:
            return self.get(self.references[node.id])
        return CONSTANTS[node.id]

    def _Attribute(self, node):
        return CONSTANTS[_dotted(node)]

    def _BinOp(self, node):
        return _binary(node.op, self(node.left), self(node.right))

    def _UnaryOp(self, node):
        return _UNARY[type(node.op)](self(node.operand))

    def _BoolOp(self, node):
        value = None
        for operand in node.values:
            value = self(operand)
            if (isinstance(node.op, ast.And) and not value) or (isinstance(node.op, ast.Or) and value):
                return value
        return value

    def _Compare(self, node):
        left = self(node.left)
        for op, comparator in zip(node.ops, node.comparators):
            right = self(comparator)
            if not _COMPARE[type(op)](left, right):
                return False
            left = right
        return True

    def _IfExp(self, node):
        return self(node.body) if self(node.test) else self(node.orelse)

    def _Subscript(self, node):
        return self(node.value)[self(node.slice)]

    def _Slice(self, node):
        return slice(*(None if part is None else self(part) for part in (node.lower, node.upper, node.step)))

    def _List(self, node):
        return [self(e) for e in node.elts]

    def _Tuple(self, node):
        return tuple(self(e) for e in node.elts)

    def _Set(self, node):
        return {self(e) for e in node.elts}

    def _Dict(self, node):
        if any(k is None for k in node.keys):
            raise _Refused("dict unpacking")
        return {self(k): self(v) for k, v in zip(node.keys, node.values)}

    def _Call(self, node):
        name = _dotted(node.func)
        if name == "torch.device":
            return dict(USER_DEVICE)
        args = [self(a) for a in node.args]
        keywords = {k.arg: self(k.value) for k in node.keywords}
        if name == "range" and len(range(*args)) > MAX_ITEMS:
            raise _Refused(f"a range of more than {MAX_ITEMS} items")
        if name in ("int", "float", "str") and any(isinstance(a, (dict, list, tuple, set)) for a in args):
            raise _Refused(f"{name} of a container")
        items = args[0] if len(args) == 1 and isinstance(args[0], (list, tuple, range)) else [None]
        if name == "sum" and (keywords or not all(isinstance(v, (int, float)) for v in items)):
            raise _Refused("sum of anything but a list of numbers")
        return FUNCTIONS[name](*args, **keywords)


def evaluate(source: str, key: str, get: Callable[[str], object], where: str = "bundle"):
    """The value of the ``$`` expression ``source`` found at ``key``; ``get(ref)`` gives an ``@ref``'s value.

    Raises :class:`BundleNeedsCode` for anything outside the pure subset, before any part of it is evaluated."""
    text = source[1:].strip() if source.startswith("$") else source.strip()
    references: dict[str, str] = {}

    def placeholder(match) -> str:
        name = _PLACEHOLDER.format(len(references))
        references[name] = match.group(1)
        return name

    try:
        if len(text) > MAX_SOURCE:
            raise _Refused(f"longer than {MAX_SOURCE} characters")
        tree = ast.parse(_REFERENCE.sub(placeholder, text), mode="eval")
        if sum(1 for _ in ast.walk(tree)) > MAX_NODES:
            raise _Refused(f"more than {MAX_NODES} syntax nodes")
        _check(tree)
        return _Evaluator(references, get)(tree.body)
    except SyntaxError:
        raise BundleNeedsCode(where, key, source, "a statement or not Python") from None
    except _Refused as reason:
        text = str(reason)
        for name, reference in references.items():
            text = text.replace(name, f"@{reference}")
        raise BundleNeedsCode(where, key, source, text) from None
    except (TypeError, ValueError, ZeroDivisionError, OverflowError, IndexError, KeyError, AttributeError) as exc:
        raise BundleNeedsCode(where, key, source, f"{type(exc).__name__}: {str(exc)[:60]}") from None
    except (RecursionError, MemoryError):
        raise BundleNeedsCode(where, key, source, "too deeply nested") from None
