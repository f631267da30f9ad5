"""The main job: ``deepmed demo`` trains, segments and evaluates on an embedded synthetic cohort. Every
application's demo (``deepmed demo --app NAME``) writes into its own output folder with :func:`demo_folder`."""

from __future__ import annotations

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
