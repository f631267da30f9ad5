"""The main job: ``deepmed demo`` trains, segments and evaluates on an embedded synthetic cohort. Every
application's demo (``deepmed demo --app NAME``) writes into its own output folder with :func:`demo_folder`."""

from __future__ import annotations

import shutil
from pathlib import Path

from deepmed.errors import DeepMedError


def demo_folder(out, results: tuple[str, ...] = ("model",)) -> Path:
    """``out`` ready for a demo run: its parent must exist (one-line error otherwise); the ``results`` a
    previous run left there (the model, predictions, ...) are removed, since the demo owns its folder and
    re-running starts afresh. Data it generated may stay and be reused."""
    out = Path(out)
    if not out.parent.is_dir():
        raise DeepMedError(f"{out}: output folder {out.parent} does not exist")
    for name in results:
        if (out / name).exists():
            shutil.rmtree(out / name)
    return out
