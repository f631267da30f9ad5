"""A long-lived engine worker (``deepmed worker``) that keeps a model loaded: requests go as JSON lines to its
stdin, responses come back on its stdout, read without blocking the GUI (``poll()`` from a QTimer, as
``BackgroundJob``). torch never runs in Slicer's process.

    worker = WarmWorker()
    worker.request({"op": "open", "model": "lesion-clicks"}, onResponse)   # starts the process if needed
    worker.request({"op": "refine", ...}, onResponse)
    worker.poll()   # from a timer: calls onResponse(dict) for every answer that arrived
    worker.stop()   # panel or scene closed

A worker that died (crashed, killed) is started again by the next request, and the last ``open`` is sent again
first, so the caller never has to know. Requests still waiting when it died are answered with
``{"ok": False, "error": ...}`` naming the exit and its last error line.
"""

from __future__ import annotations

import json
import queue
import subprocess
import threading
import time

from DeepMedLib.BackgroundJob import killProcessTree, processOptions
from DeepMedLib.EngineCommand import engineCommand, engineEnvironment

STDERR_LINES_KEPT = 50


class WarmWorker:
    """One ``deepmed worker`` process at a time; ``starts`` counts the processes started (1 while it lives)."""

    def __init__(self, arguments=(), command=None, environment=None):
        self.arguments = [str(a) for a in arguments]     # e.g. ("--library", folder)
        self.command = command or engineCommand
        self.environment = environment or engineEnvironment
        self.process: subprocess.Popen | None = None
        self.starts = 0
        self.stderr: list[str] = []
        self._pending: dict[int, object] = {}   # request id -> callback(response)
        self._nextId = 1
        self._lastOpen: dict | None = None
        self._queue: queue.Queue = queue.Queue()

    # ---- life cycle ------------------------------------------------------------------------------
    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.alive else None

    @property
    def busy(self) -> bool:
        """Requests sent and not answered yet."""
        return bool(self._pending)

    def start(self) -> None:
        """Start the worker process (raises OSError when it cannot be started: no engine, no interpreter)."""
        self._failPending()
        self.process = subprocess.Popen(self.command("worker", *self.arguments), stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=self.environment(None),
                                        text=True, encoding="utf-8", errors="replace", bufsize=1,
                                        **processOptions())
        self.starts += 1
        self._queue = queue.Queue()  # lines of an earlier process are never taken for this one's
        for stream, kind in ((self.process.stdout, "out"), (self.process.stderr, "err")):
            threading.Thread(target=self._read, args=(stream, kind, self._queue), daemon=True).start()

    def stop(self, graceSeconds: float = 2.0) -> None:
        """Ask the worker to quit; kill it (and anything it started) if it has not ended after ``graceSeconds``."""
        process, self.process = self.process, None
        self._failPending("the worker was stopped")
        self._lastOpen = None
        if process is None:
            return
        if process.poll() is None:
            try:
                process.stdin.write(json.dumps({"id": 0, "op": "quit"}) + "\n")
                process.stdin.flush()
                process.wait(timeout=graceSeconds)
            except (OSError, ValueError, subprocess.TimeoutExpired):
                pass
        if process.poll() is None:
            killProcessTree(process)
            process.wait(timeout=10)
        for stream in (process.stdin, process.stdout, process.stderr):
            try:
                stream.close()
            except (OSError, ValueError):
                pass

    # ---- requests ----------------------------------------------------------------------------------
    def request(self, fields: dict, callback) -> int:
        """Send a request (``op`` and its fields); ``callback(response)`` is called from ``poll()``. Starts
        the worker when none runs (again after a crash: its last ``open`` is sent first). Returns its id."""
        if not self.alive:
            self.start()
            if self._lastOpen is not None and fields.get("op") != "open":
                self._send(dict(self._lastOpen), lambda response: None)
        if fields.get("op") == "open":
            self._lastOpen = {key: value for key, value in fields.items() if key != "id"}
        return self._send(fields, callback)

    def _send(self, fields: dict, callback) -> int:
        requestId = self._nextId
        self._nextId += 1
        self._pending[requestId] = callback
        try:
            self.process.stdin.write(json.dumps({**fields, "id": requestId}) + "\n")
            self.process.stdin.flush()
        except (OSError, ValueError):  # it died meanwhile: poll() answers with why
            pass
        return requestId

    def poll(self) -> None:
        """Hand every response that arrived to its callback; answer waiting requests if the worker died."""
        while True:
            try:
                kind, line = self._queue.get_nowait()
            except queue.Empty:
                break
            if kind == "err":
                if line.strip():
                    self.stderr.append(line)
                    del self.stderr[:-STDERR_LINES_KEPT]
                continue
            response = _parseResponse(line)
            if response is None:
                continue
            callback = self._pending.pop(response.get("id"), None)
            if callback is not None:
                callback(response)
        if self._pending and self.process is not None and self.process.poll() is not None and self._queue.empty():
            time.sleep(0.05)  # the reader threads may still hold its last lines
            if self._queue.empty():
                self._failPending(self._deathMessage())

    def _failPending(self, message: str = "the worker was restarted") -> None:
        pending, self._pending = self._pending, {}
        for callback in pending.values():
            callback({"ok": False, "error": message})

    def _deathMessage(self) -> str:
        code = self.process.returncode if self.process is not None else None
        errors = [line for line in self.stderr if "error" in line.lower()] or self.stderr
        last = errors[-1].strip() if errors else ""
        return f"the worker ended (exit code {code})" + (f": {last}" if last else "")

    @staticmethod
    def _read(stream, kind: str, into: queue.Queue) -> None:
        try:
            for line in iter(stream.readline, ""):
                into.put((kind, line.rstrip("\r\n")))
        except (OSError, ValueError):
            pass


def _parseResponse(line: str) -> dict | None:
    if not line.startswith("{"):
        return None
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        return None
    return record if isinstance(record, dict) and record.get("event") == "response" else None
