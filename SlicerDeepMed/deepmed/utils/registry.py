"""A small named registry that can list itself (the idea of MONAI's ComponentStore)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from deepmed.utils.choices import look_up


class Registry:
    """Map names to factories, each with a one-line description.

    Example:
        >>> LOSSES = Registry("loss")
        >>> @LOSSES.register("l1", "mean absolute error")
        ... def make_l1(**kwargs): ...
        >>> LOSSES.names()
        ['l1']

    ``register`` also takes metadata (e.g. ``applications=("my_app",)``), read back with ``metadata``.
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, tuple[Callable[..., Any], str]] = {}
        self._metadata: dict[str, dict[str, Any]] = {}

    def register(self, name: str, description: str, **metadata: Any) -> Callable:
        def decorator(factory: Callable) -> Callable:
            self._items[name] = (factory, description)
            self._metadata[name] = metadata
            return factory

        return decorator

    def names(self) -> list[str]:
        return sorted(self._items)

    def describe(self) -> dict[str, str]:
        return {name: self._items[name][1] for name in self.names()}

    def metadata(self, name: str) -> dict[str, Any]:
        """What ``name`` was registered with besides its factory and description."""
        return dict(self._metadata[self.canonical(name)])

    def update_metadata(self, name: str, **metadata: Any) -> None:
        """Change what ``name`` was registered with (e.g. a plug-in adds itself to a loss's applications)."""
        self._metadata[self.canonical(name)].update(metadata)

    def registration_order(self) -> list[str]:
        return list(self._items)

    def canonical(self, name: str) -> str:
        """The registered spelling of ``name``, or a DeepMedError with "did you mean"."""
        return look_up(self.kind, name, self._items)

    def get(self, name: str) -> Callable[..., Any]:
        return self._items[self.canonical(name)][0]

    def __contains__(self, name: str) -> bool:
        return any(name.lower() == n.lower() for n in self._items)
