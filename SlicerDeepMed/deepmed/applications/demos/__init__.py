"""Every application's demo (``deepmed demo --app NAME``, ``make demo`` for the default one): synthetic data
from :mod:`deepmed.phantoms` (or a shared real scan), training, inference and the metric against the
application's named baseline. Demos sit on top of the engine (they train, predict and evaluate through its
Python API); nothing in the engine imports them, and they import no CLI."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from deepmed.errors import DeepMedError


def demo_folder(out, results: tuple[str, ...] = ("model",)) -> Path:
    """``out`` ready for a demo run, created with its parent folders (one-line error when it cannot be); the
    ``results`` a previous run left there (the model, predictions, ...) are removed, since the demo owns its
    folder and re-running starts afresh. Data it generated may stay and be reused."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise DeepMedError(f"{out}: exists and is not a folder; choose another --out")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DeepMedError(f"{out}: cannot create the output folder ({exc.strerror or exc})") from None
    for name in results:
        if (out / name).exists():
            shutil.rmtree(out / name)
    return out


def shared_scan() -> Path | None:
    """A real scan from ../shared/data (DEEPMED_SHARED_DATA overrides), to show the model copes with real data."""
    roots = [Path(os.environ["DEEPMED_SHARED_DATA"])] if "DEEPMED_SHARED_DATA" in os.environ else []
    here = Path(__file__).resolve()
    roots += [parent / "shared" / "data" for parent in here.parents[:6]]
    for root in roots:
        candidate = root / "pyradiomics" / "brain1_image.nrrd"
        if candidate.is_file():
            return candidate
    return None
