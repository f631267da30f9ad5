"""What the Run panel asks the engine for, as one typed value: ``InferenceRequest(...).asArgs()`` is the
worker's ``deepmed infer`` command line (no value crosses the GUI/worker boundary as a hand-built string)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class InferenceRequest:
    model: Path                       # the model directory
    inputs: tuple[Path, ...]          # one file per input volume (the mode says how many)
    output: Path                      # where the worker writes the result (its suffix says the format)
    device: str = "auto"              # auto | cpu | cuda | mps
    mode: str | None = None           # one of the card's modes; None: the card's first
    condition: tuple[float, ...] | None = None  # a conditions mode's values, in the card's order
    steps: int | None = None          # interpolation steps
    count: int | None = None          # samples to generate
    seed: int | None = None
    tta: bool = False                 # test-time flips
    keepLargest: bool = False         # keep the largest connected component per label
    folds: tuple[int, ...] = field(default_factory=tuple)  # of a cross-validation ensemble (empty: all)

    def asArgs(self) -> list[str]:
        """``infer`` and its options, in the engine CLI's spelling, with JSON-lines progress."""
        args = ["infer", "--model", str(self.model), *map(str, self.inputs), "-o", str(self.output),
                "--device", self.device, "--progress", "jsonl"]
        if self.mode is not None:
            args += ["--mode", self.mode]
        if self.condition is not None:
            args += ["--condition", ",".join(repr(float(v)) for v in self.condition)]
        for option, value in (("--steps", self.steps), ("--count", self.count), ("--seed", self.seed)):
            if value is not None:
                args += [option, str(int(value))]
        args += ["--tta"] if self.tta else []
        args += ["--keep-largest"] if self.keepLargest else []
        args += ["--folds", ",".join(str(int(f)) for f in self.folds)] if self.folds else []
        return args
