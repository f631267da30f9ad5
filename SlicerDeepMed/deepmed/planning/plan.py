"""The training plan as a value: every decision made before training, with its reason.

A ``Plan`` is frozen once made: what changes later (the weights a fine-tuning starts from, the plan the folds of
a cross-validation share, the network adopted from an init model) is a new value made with ``dataclasses.replace``
(the ``with_*`` methods), never an edit. It is saved as ``plan.json`` (format ``deepmed-plan/1``, unchanged: the
generic parts are typed here, the application's own decisions keep their keys at the top level of the file).

    plan.schedule.batch_size        the generic schedule (typed)
    plan.network.name / .args       the network to build (typed)
    plan["patch_size"]              the application's own decisions (they differ per application)
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from deepmed.errors import DeepMedError
from deepmed.utils.json_files import read_json_object

PLAN_FILE = "plan.json"
PLAN_FORMAT = "deepmed-plan/1"
#: Keys of plan.json that the ``Plan`` types itself; every other key is the application's own.
GENERIC_KEYS = ("format", "application", "device", "dataset", "reasons", "schedule", "network", "loss", "sampling",
                "init")
#: What a shared plan (cross-validation) does not replace: each fold keeps its own dataset, schedule and device.
OWN_PER_RUN = ("format", "dataset", "reasons", "schedule", "device")


class FrozenDict(dict):
    """A dict that refuses edits; still JSON-serialisable, picklable (data-loader workers) and copyable."""

    def _refuse(self, *args, **kwargs):
        raise TypeError("a plan is frozen: make a new one (dataclasses.replace, Plan.with_*), do not edit it")

    __setitem__ = __delitem__ = __ior__ = clear = pop = popitem = setdefault = update = _refuse

    def __reduce__(self):
        return FrozenDict, (dict(self),)


def _frozen(mapping: Mapping | None) -> FrozenDict:
    """A read-only copy (the top level refuses edits; nested values are copies no one else holds)."""
    return FrozenDict(copy.deepcopy(dict(mapping or {})))


def _plain(value: Any) -> Any:
    """Read-only mappings back to dicts (for JSON and for code that builds on a plan's values)."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


@dataclass(frozen=True)
class Schedule:
    """How long and how fast to train: iterations, epochs or a time budget, batch, learning rate, validation."""

    iterations_per_epoch: int
    epochs: int
    time_limit_s: float | None
    batch_size: int
    lr: float
    lr_schedule: str
    validate_every: int | str  # every N epochs, or "auto" (at most validation_share of the time)
    validation_share: float
    lr_peak: float = 1.0       # the schedule's start as a share of lr (fine-tuning starts lower)

    def to_json(self) -> dict:
        data = {"iterations_per_epoch": self.iterations_per_epoch, "epochs": self.epochs,
                "time_limit_s": self.time_limit_s, "batch_size": self.batch_size, "lr": self.lr,
                "lr_schedule": self.lr_schedule, "validate_every": self.validate_every,
                "validation_share": self.validation_share}
        if self.lr_peak != 1.0:
            data["lr_peak"] = self.lr_peak
        return data

    @classmethod
    def from_json(cls, data: Mapping, where: str = PLAN_FILE) -> Schedule:
        if not isinstance(data, Mapping):
            raise DeepMedError(f"{where}: 'schedule' must be a mapping, got {type(data).__name__}")
        missing = [k for k in ("iterations_per_epoch", "epochs", "batch_size", "lr") if k not in data]
        if missing:
            raise DeepMedError(f"{where}: 'schedule' lacks {', '.join(missing)}")
        limit = data.get("time_limit_s")
        return cls(int(data["iterations_per_epoch"]), int(data["epochs"]), None if limit is None else float(limit),
                   int(data["batch_size"]), float(data["lr"]), str(data.get("lr_schedule", "cosine")),
                   data.get("validate_every", "auto"), float(data.get("validation_share", 0.1)),
                   float(data.get("lr_peak", 1.0)))


@dataclass(frozen=True)
class NetworkChoice:
    """A registered network and its constructor arguments."""

    name: str
    args: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        object.__setattr__(self, "args", _frozen(self.args))

    def plain_args(self) -> dict:
        """The constructor arguments as a new dict (to build the network from, or to change)."""
        return _plain(self.args)

    def to_json(self) -> dict:
        return {"name": self.name, "args": self.plain_args()}

    @classmethod
    def from_json(cls, data: Mapping, where: str = PLAN_FILE) -> NetworkChoice:
        if not isinstance(data, Mapping) or not isinstance(data.get("name"), str):
            raise DeepMedError(f"{where}: 'network' must be a mapping with a 'name', got {data!r}")
        return cls(data["name"], data.get("args") or {})


@dataclass(frozen=True)
class Plan:
    """One training's plan. ``plan[key]`` reads the application's own decisions (read-only)."""

    application: str
    device: str
    dataset: Mapping[str, Any]
    reasons: Mapping[str, str]
    schedule: Schedule | None  # None only in the draft handed to ``Application.training_defaults``
    network: NetworkChoice | None = None
    loss: str | None = None
    sampling: str | None = None
    init: Mapping[str, Any] | None = None  # the model a fine-tuning starts from (``InitSource.record()``)
    specific: Mapping[str, Any] = field(default_factory=dict)  # the application's own decisions
    format: str = PLAN_FORMAT

    def __post_init__(self):
        for name in ("dataset", "reasons", "specific"):
            object.__setattr__(self, name, _frozen(getattr(self, name)))
        if self.init is not None:
            object.__setattr__(self, "init", _frozen(self.init))
        clash = sorted(set(self.specific) & set(GENERIC_KEYS))
        if clash:
            raise DeepMedError(f"plan: the application's own entries may not be named {', '.join(clash)}")

    # ---- the application's own section (a read-only mapping) ---------------------------------------------
    def __getitem__(self, key: str) -> Any:
        try:
            return self.specific[key]
        except KeyError:
            raise KeyError(f"plan has no {self.application} entry {key!r} (has: {', '.join(self.specific)})") \
                from None

    def __contains__(self, key: str) -> bool:
        return key in self.specific

    def get(self, key: str, default: Any = None) -> Any:
        return self.specific.get(key, default)

    # ---- new values for what changes after planning ----------------------------------------------------------
    def with_reasons(self, **reasons: str) -> Plan:
        return replace(self, reasons={**self.reasons, **reasons})

    def with_init(self, init: Mapping[str, Any] | None, **more: Any) -> Plan:
        return replace(self, init=None if init is None else {**init, **more})

    def with_shared(self, shared: Plan) -> Plan:
        """This run's plan with the decisions of ``shared`` (one plan for every fold of a cross-validation):
        its network, loss, sampling and the application's entries; the run keeps its schedule and dataset."""
        why = "shared by every fold of the cross-validation (planned on all training cases)"
        taken = [k for k in GENERIC_KEYS if k not in OWN_PER_RUN and getattr(shared, k) is not None]
        plan = replace(self, application=shared.application, network=shared.network, loss=shared.loss,
                       sampling=shared.sampling, init=shared.init if shared.init is not None else self.init,
                       specific=shared.specific)
        return plan.with_reasons(**{key: why for key in [*taken, *shared.specific]})

    # ---- plan.json -------------------------------------------------------------------------------------------
    def to_json(self) -> dict:
        data: dict[str, Any] = {"format": self.format, "application": self.application, "device": self.device,
                                "dataset": _plain(self.dataset), "reasons": _plain(self.reasons),
                                **_plain(self.specific)}
        if self.network is not None:
            data["network"] = self.network.to_json()
        for key in ("loss", "sampling"):
            if getattr(self, key) is not None:
                data[key] = getattr(self, key)
        if self.schedule is not None:
            data["schedule"] = self.schedule.to_json()
        if self.init is not None:
            data["init"] = _plain(self.init)
        return data

    @classmethod
    def from_json(cls, data: Mapping, where: str = PLAN_FILE) -> Plan:
        if not isinstance(data, Mapping):
            raise DeepMedError(f"{where}: expected a plan (a mapping), got {type(data).__name__}")
        fmt = data.get("format", PLAN_FORMAT)
        if fmt != PLAN_FORMAT:
            raise DeepMedError(f"{where}: 'format' is {fmt!r}, expected {PLAN_FORMAT!r}")
        missing = [k for k in ("application", "schedule") if k not in data]
        if missing:
            raise DeepMedError(f"{where}: plan lacks {', '.join(missing)}")
        network = data.get("network")
        return cls(application=str(data["application"]), device=str(data.get("device", "cpu")),
                   dataset=data.get("dataset") or {}, reasons=data.get("reasons") or {},
                   schedule=Schedule.from_json(data["schedule"], where),
                   network=NetworkChoice.from_json(network, where) if network is not None else None,
                   loss=data.get("loss"), sampling=data.get("sampling"), init=data.get("init") or None,
                   specific={k: v for k, v in data.items() if k not in GENERIC_KEYS}, format=fmt)

    def save(self, path: Path) -> Path:
        from deepmed.utils.atomic import write_text_atomic

        write_text_atomic(Path(path), json.dumps(self.to_json(), indent=2) + "\n")
        return Path(path)

    @classmethod
    def load(cls, path: Path) -> Plan:
        path = Path(path)
        if not path.is_file():
            raise DeepMedError(f"{path}: no plan (plan.json missing)")
        data = read_json_object(path, "the plan")
        return cls.from_json(data, str(path))


def format_plan(plan: Plan) -> str:
    """The plan for people: one decision per line with its reason."""
    data = plan.to_json()
    lines = [f"plan for {plan.dataset.get('name', 'dataset')} ({plan.application}, {plan.device})"]
    for key, value in data.items():
        if key in ("format", "application", "device", "reasons", "dataset"):
            continue
        text = json.dumps(value) if not isinstance(value, dict) else \
            ", ".join(f"{k}={json.dumps(v)}" for k, v in value.items() if k != "args")
        lines.append(f"  {key:16s} {text}")
        if key == "network" and isinstance(value, dict):
            lines.append(f"  {'':16s} args={json.dumps(value.get('args', {}))}")
    lines.append("why:")
    lines.extend(f"  {key:16s} {reason}" for key, reason in plan.reasons.items())
    return "\n".join(lines)
