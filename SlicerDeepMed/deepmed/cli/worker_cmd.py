"""``deepmed worker``: a warm worker that keeps an interactive model loaded and answers refine requests.

JSON lines on stdin, one JSON line on stdout per request (the Slicer Run panel's Refine mode talks to it, so
a click costs a model run, never a process start and a model load)::

    {"id": 1, "op": "open", "model": "M", "device": "cpu"}
      -> {"event": "response", "id": 1, "ok": true, "labels": ["lesion"], "seconds": 0.8, ...}
    {"id": 2, "op": "refine", "image": "ct.nrrd", "clicks": {...ClickSet.to_dict()}, "previous": null,
     "label": "lesion", "output": "out.nrrd"}
      -> {"event": "response", "id": 2, "ok": true, "output": "out.nrrd", "seconds": 0.4, "label": "lesion"}
    {"id": 3, "op": "quit"}  -> {"event": "response", "id": 3, "ok": true}, then the worker ends (exit 0)

A request that cannot be served is answered ``{"ok": false, "error": "one line"}`` and the worker goes on
(only end of input and ``quit`` end it). Outputs are written atomically (a temporary file beside, then a
rename): a reader never sees half a file. Anything the model code prints goes to stderr, never into the
protocol. Before the first request the worker says ``{"event": "ready", "pid": ...}``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from pathlib import Path
from typing import IO


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "worker", help="keep an interactive model loaded; answer JSON-lines refine requests on stdin")
    parser.add_argument("--library", type=Path, help="model library folder (default: $DEEPMED_LIBRARY or per-user)")
    parser.add_argument("--device", default="cpu", help="device of the models opened without one (default cpu)")
    parser.set_defaults(run=run_worker)


def run_worker(args: argparse.Namespace) -> int:
    return RefineServer(library=args.library, device=args.device).serve(sys.stdin, sys.stdout)


class RequestError(ValueError):
    """A request that cannot be served; its message is the response's one-line error."""


class RefineServer:
    """Serves requests one after the other; holds one open InteractiveSession (``open`` replaces it)."""

    def __init__(self, library: Path | None = None, device: str = "cpu", session_factory=None):
        self.library, self.device = library, device
        self.session_factory = session_factory
        self.session = None
        self.model = None

    def serve(self, requests: IO[str], responses: IO[str]) -> int:
        self._send(responses, {"event": "ready", "pid": os.getpid()})
        for line in requests:
            if not line.strip():
                continue
            request, response = None, None
            try:
                request = _parse(line)
                with contextlib.redirect_stdout(sys.stderr):  # model code printing must not break the protocol
                    response = self.handle(request)
            except RequestError as error:
                response = {"ok": False, "error": _one_line(str(error))}
            except Exception as error:  # a bad request never ends the worker
                from deepmed.errors import DeepMedError

                text = str(error) if isinstance(error, DeepMedError) else f"{type(error).__name__}: {error}"
                response = {"ok": False, "error": _one_line(text)}
            request_id = request.get("id") if isinstance(request, dict) else None
            if not self._send(responses, {"event": "response", "id": request_id, **response}):
                return 0  # the reader went away: nothing more to answer
            if isinstance(request, dict) and request.get("op") == "quit" and response.get("ok"):
                return 0
        return 0

    def handle(self, request: dict) -> dict:
        op = request.get("op")
        if op == "open":
            return self._open(request)
        if op == "refine":
            return self._refine(request)
        if op == "quit":
            return {"ok": True}
        if op == "ping":
            return {"ok": True, "model": self.model, "pid": os.getpid()}
        raise RequestError(f"request 'op': expected open, refine, ping or quit, got {op!r}")

    def _open(self, request: dict) -> dict:
        model = _required(request, "model", str)
        started = time.perf_counter()
        factory = self.session_factory
        if factory is None:
            import deepmed.applications  # noqa: F401 - every application registered before a model is read
            from deepmed.interactive.session import InteractiveSession as factory
        self.session = factory(model, device=request.get("device") or self.device, library=self.library)
        self.model = model
        return {"ok": True, "model": model, "labels": list(self.session.labels),
                "seconds": round(time.perf_counter() - started, 4)}

    def _refine(self, request: dict) -> dict:
        if self.session is None:
            raise RequestError("refine before open: send {\"op\": \"open\", \"model\": ...} first")
        from deepmed.interactive.clicks import ClickSet

        image = Path(_required(request, "image", str))
        output = Path(_required(request, "output", str))
        if not image.is_file():
            raise RequestError(f"request 'image': {image}: no such file")
        clicks = ClickSet.from_dict(_required(request, "clicks", dict), "request 'clicks'")
        previous = request.get("previous")
        if previous is not None and not Path(previous).is_file():
            raise RequestError(f"request 'previous': {previous}: no such file")
        started, cpu_started = time.perf_counter(), time.process_time()
        result = self.session.refine(str(image), clicks, previous=previous, label=request.get("label"))
        write_atomically(result.labels, output)
        return {"ok": True, "output": str(output), "label": result.label, "seconds": round(result.seconds, 4),
                "total_seconds": round(time.perf_counter() - started, 4),  # the refine and writing the output
                "cpu_seconds": round(time.process_time() - cpu_started, 4),  # all threads: less sensitive to load
                "region": [list(part) for part in result.region] if result.region else None}

    @staticmethod
    def _send(stream: IO[str], record: dict) -> bool:
        try:
            stream.write(json.dumps({"time": round(time.time(), 3), **record}) + "\n")
            stream.flush()
            return True
        except (OSError, ValueError):
            return False


def write_atomically(image, output: Path) -> None:
    """Write a SimpleITK image so that ``output`` appears whole or not at all (same folder, then a rename)."""
    import SimpleITK as sitk

    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(f".partial-{os.getpid()}-{output.name}")  # same extension: same writer
    try:
        sitk.WriteImage(image, str(partial), useCompression=False)
        os.replace(partial, output)
    finally:
        if partial.exists():
            partial.unlink()


def _parse(line: str) -> dict:
    try:
        request = json.loads(line)
    except json.JSONDecodeError as error:
        raise RequestError(f"request: not JSON ({error.msg} at column {error.colno})") from None
    if not isinstance(request, dict):
        raise RequestError(f"request: expected a JSON object, got {type(request).__name__}")
    return request


def _required(request: dict, key: str, kind: type):
    value = request.get(key)
    if not isinstance(value, kind) or (kind is str and not value):
        raise RequestError(f"request '{key}': expected a {kind.__name__}, got {value!r}")
    return value


def _one_line(text: str) -> str:
    return " ".join(text.split()) or "error"
