"""A tiny pure-Python signal (Qt signals declared in Python are fragile under PythonQt)."""

from __future__ import annotations


class Signal:
    """``signal.connect(callback)``; ``signal.emit(*args)`` calls every callback in connection order."""

    def __init__(self, *typeNames: str):
        self.typeNames = typeNames
        self._callbacks = []

    def connect(self, callback) -> None:
        if callback not in self._callbacks:
            self._callbacks.append(callback)

    def disconnect(self, callback) -> None:
        if callback in self._callbacks:
            self._callbacks.remove(callback)

    def emit(self, *args) -> None:
        for callback in list(self._callbacks):
            callback(*args)
