"""Progress events: one stream of events, shown to people (tqdm) or to programs (JSON lines).

The JSON-lines protocol (``--progress jsonl``, read by the Slicer panels): one object per line on stdout,
each with ``"event"`` and ``"time"`` (Unix seconds):

* ``started``    - ``epochs``, ``iterations_per_epoch``, ``device``, ``model_dir``, ``start_epoch``,
  ``time_limit_s`` (null without a time budget; with one, training runs to it and ``epochs`` does not apply),
  ``world_size``
* ``initialized`` - ``model``, ``path``, ``fold``, ``loaded_tensors``, ``reinitialized`` (tensor names): a
  fine-tuning run (``--init``) took its starting weights from another model
* ``iteration``  - ``epoch``, ``iteration``, ``iterations_per_epoch``, ``loss``, ``lr``, ``eta_s``, ``elapsed_s``
* ``epoch``      - ``epoch``, ``loss`` (mean), ``lr``, ``seconds``, ``eta_s``
* ``validation`` - ``epoch``, ``metrics`` (name -> value), ``key_metric``, ``best``
* ``checkpoint`` - ``epoch``, ``kind`` (``last`` / ``best``), ``path``
* ``finished``   - ``model_dir``, ``epochs``, ``best_metric``, ``best_epoch``, ``seconds``, ``ended_by``
  (``epochs`` or ``time``); a segmentation with validation cases also ``calibration`` (the card's section:
  ``temperature`` and ``ece`` ``before`` / ``after`` on held-out cases)
* ``stopped``    - ``epoch``, ``iteration``, ``checkpoint``: stopped on request, checkpoint written
* ``error``      - ``message``
* ``inference``  - ``case``, ``index``, ``total``, ``output``, ``seconds``; ``skipped`` (the reason, and
  ``output`` null) for a case of a batch that could not be read

``deepmed worker`` (the warm worker of Slicer's Refine mode) writes the same kind of lines: ``ready`` (``pid``)
once, then one ``response`` per request (``id``, ``ok``, ``error`` or the request's results;
``deepmed/cli/worker_cmd.py``).

When stdout closes (the reader, e.g. the Slicer GUI, went away), the reporter stops writing, says so once on
stderr and asks the training to stop: it writes its checkpoint and exits as on Stop (exit code 130).
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable
from typing import IO

from deepmed.utils.closed_output import CLOSED_OUTPUT_ERRORS, point_at_devnull, say


class Reporter:
    """Receives every event; subclasses show or forward them."""

    def emit(self, event: str, **fields) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def close(self) -> None:
        pass

    def watch_output(self, on_broken: Callable[[], None]) -> None:
        """Call ``on_broken()`` once if this reporter's output closes (default: nothing to watch)."""


def _clean(value):
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    return value


class JsonLinesReporter(Reporter):
    """Write each event as one JSON object per line (flushed at once).

    A closed output (``BrokenPipeError``, a closed file) sets ``broken``: later events are dropped, the
    stream's file descriptor is pointed at the null device (so Python's flush at exit cannot fail) and the
    ``watch_output`` callback is called, once.
    """

    def __init__(self, stream: IO[str] | None = None):
        self.stream = stream or sys.stdout
        self.broken = False
        self._on_broken: Callable[[], None] | None = None

    def watch_output(self, on_broken):
        self._on_broken = on_broken

    def emit(self, event, **fields):
        if self.broken:
            return
        record = {"event": event, "time": round(time.time(), 3), **{k: _clean(v) for k, v in fields.items()}}
        line = json.dumps(record) + "\n"
        try:
            self.stream.write(line)
            self.stream.flush()
        except CLOSED_OUTPUT_ERRORS as exc:
            self._break(exc)

    def _break(self, exc: Exception) -> None:
        self.broken = True
        point_at_devnull(self.stream)
        then = "; stopping with a checkpoint" if self._on_broken is not None else ""
        say(f"deepmed: progress output closed ({type(exc).__name__}){then}")
        if self._on_broken is not None:
            self._on_broken()


class CallbackReporter(Reporter):
    """Hand each event to a Python callable as a dict (the Python API's ``progress=`` argument)."""

    def __init__(self, callback: Callable[[dict], None]):
        self.callback = callback

    def emit(self, event, **fields):
        self.callback({"event": event, **fields})


TIME_BAR = "{desc}: {percentage:3.0f}%|{bar}| {n}/{total} s [{postfix}]"


class TqdmReporter(Reporter):
    """A progress bar with loss, metric and ETA for people (on stderr)."""

    def __init__(self):
        self.bar = None
        self.timed = False
        self.postfix: dict = {}

    def emit(self, event, **fields):
        from tqdm import tqdm

        if event == "started" and fields.get("time_limit_s"):  # a time budget: the bar counts seconds
            self.timed = True
            self.bar = tqdm(total=round(fields["time_limit_s"]), unit="s", desc="training (time budget)",
                            dynamic_ncols=True, file=sys.stderr, bar_format=TIME_BAR)
        elif event == "started":
            total = fields["epochs"] * fields["iterations_per_epoch"]
            done = fields.get("start_epoch", 0) * fields["iterations_per_epoch"]
            self.bar = tqdm(total=total, initial=done, unit="it", desc="training", dynamic_ncols=True, file=sys.stderr)
        elif event == "initialized":
            fresh = fields["reinitialized"]
            print(f"starting from {fields['model']}: {fields['loaded_tensors']} tensors loaded"
                  + (f", re-initialised: {', '.join(fresh)}" if fresh else ""), file=sys.stderr)
        elif event == "iteration" and self.bar is not None:
            if self.timed:
                self.bar.update(min(self.bar.total, round(fields["elapsed_s"])) - self.bar.n)
            else:
                self.bar.update(1)
            self.postfix["epoch"] = fields["epoch"] + 1
            self.postfix["loss"] = f"{fields['loss']:.4f}"
            self.bar.set_postfix(self.postfix, refresh=False)
        elif event == "validation" and self.bar is not None:
            self.postfix[fields["key_metric"]] = f"{fields['metrics'][fields['key_metric']]:.4f}"
        elif event in ("finished", "stopped", "error"):
            self.close()
            if event == "finished" and fields.get("calibration"):
                from deepmed.model.card_calibration import Calibration

                print(f"calibration: {Calibration.from_dict(fields['calibration']).summary()}", file=sys.stderr)
            if event == "stopped":
                print(f"stopped at epoch {fields['epoch'] + 1}; checkpoint {fields['checkpoint']}", file=sys.stderr)
        elif event == "inference":
            if self.bar is None:
                self.bar = tqdm(total=fields["total"], unit="case", desc="inference", file=sys.stderr)
            self.bar.update(1)
            if fields["index"] + 1 == fields["total"]:
                self.close()

    def close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class SilentReporter(Reporter):
    def emit(self, event, **fields):
        pass


class MultiReporter(Reporter):
    def __init__(self, *reporters: Reporter):
        self.reporters = reporters

    def emit(self, event, **fields):
        for r in self.reporters:
            r.emit(event, **fields)

    def watch_output(self, on_broken):
        for r in self.reporters:
            r.watch_output(on_broken)

    def close(self):
        for r in self.reporters:
            r.close()


def make_reporter(progress) -> Reporter:
    """``"tqdm"``, ``"jsonl"``, ``"none"``, a Reporter, or a callable taking an event dict."""
    if isinstance(progress, Reporter):
        return progress
    if callable(progress):
        return CallbackReporter(progress)
    from deepmed.utils.choices import look_up

    kind = look_up("progress mode", progress or "tqdm", ["tqdm", "jsonl", "none"])
    return {"tqdm": TqdmReporter, "jsonl": JsonLinesReporter, "none": SilentReporter}[kind]()
