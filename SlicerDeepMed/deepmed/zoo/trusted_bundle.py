"""MONAI bundles whose pipeline needs their own code, imported only when the user trusts it (``--trust-code``).

``code_to_run`` reads a bundle's inference config as data and lists what MONAI's config machinery would
execute to build its pipeline (preprocessing, network, inferer, postprocessing): the ``$import`` entries,
the ``$`` expressions those parts reach, the classes from outside MONAI/PyTorch they instantiate (typically
``scripts.*``) and the bundle's ``scripts/`` files. Nothing is executed to list it (``deepmed zoo inspect``).

``trusted_card.convert_trusted_bundle`` writes a *trusted* model directory: the bundle's ``configs/`` and
``scripts/`` under ``bundle/`` (``copy_bundle_code``), the weights read with ``torch.load(weights_only=True)``
and stored as safetensors, and a card with ``trust_code: true`` and that list. At run time
(``applications.trusted_bundle``, in the engine's process, never Slicer's) MONAI's ``ConfigParser`` builds the
pipeline from ``bundle/``, with ``bundle/`` on ``sys.path`` only while it does. Writing steps (``SaveImaged``)
are left out: the engine writes the result.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

from deepmed.applications.trusted_bundle import BUNDLE_FOLDER, is_writer
from deepmed.errors import DeepMedError
from deepmed.zoo.bundle_config import find_inference_config, lookup, read_config_file

PIPELINE_KEYS = ("preprocessing", "network_def", "inferer", "postprocessing")
#: config keys the engine sets itself at run time (their own expressions never run)
ENGINE_KEYS = ("bundle_root", "device")
#: classes named by these prefixes (or by a bare name, found in MONAI) are the installed libraries' own
LIBRARY_PREFIXES = ("monai.", "torch.", "numpy.", "np.")
REFERENCE = re.compile(r"@(\w+(?:(?:#|::)\w*)*)")
IMPORT = re.compile(r"^\$\s*(import|from)\s")


@dataclass
class CodeToRun:
    """What running a bundle's pipeline through MONAI executes besides MONAI's and PyTorch's own code."""

    imports: list[str] = field(default_factory=list)
    expressions: list[dict] = field(default_factory=list)  # {"key": config key, "code": "$..."}
    targets: list[dict] = field(default_factory=list)  # {"key": config key, "target": "scripts.x.Y"}
    scripts: list[str] = field(default_factory=list)  # files under scripts/, relative to the bundle

    @property
    def needed(self) -> bool:
        return bool(self.imports or self.expressions or self.targets)

    def as_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        parts = [f"{len(self.expressions)} Python expression(s)" if self.expressions else "",
                 "classes " + ", ".join(sorted({t["target"] for t in self.targets})) if self.targets else "",
                 f"imports ({'; '.join(i.lstrip('$').strip() for i in self.imports)})" if self.imports else "",
                 f"scripts/ ({len(self.scripts)} file(s))" if self.scripts else ""]
        return ", ".join(p for p in parts if p) or "nothing beyond MONAI"


def _key(key: str) -> str:
    return key.replace("::", "#")


def _foreign(target: str) -> bool:
    return "." in target and not target.startswith(LIBRARY_PREFIXES)


def code_to_run(config: dict, bundle: Path | None = None) -> CodeToRun:
    """The code the bundle's pipeline parts reach through references (read as data, nothing run)."""
    code = CodeToRun()

    def walk_all(node):
        if isinstance(node, dict):
            for value in node.values():
                walk_all(value)
        elif isinstance(node, list):
            for value in node:
                walk_all(value)
        elif isinstance(node, str) and IMPORT.match(node) and node not in code.imports:
            code.imports.append(node)

    walk_all(config)  # MONAI runs every import entry of the config whatever it builds
    seen: set[str] = set()
    pending = list(PIPELINE_KEYS)

    def walk(node, key: str):
        if is_writer(node):
            return
        if isinstance(node, dict):
            target = node.get("_target_")
            if isinstance(target, str) and _foreign(target):
                code.targets.append({"key": key, "target": target})
            for name, value in node.items():
                walk(value, f"{key}#{name}")
        elif isinstance(node, list):
            for index, value in enumerate(node):
                walk(value, f"{key}#{index}")
        elif isinstance(node, str):
            if node.startswith("$") and not IMPORT.match(node):
                code.expressions.append({"key": key, "code": node})
            if node[:1] in ("@", "$"):
                pending.extend(_key(ref) for ref in REFERENCE.findall(node))

    while pending:
        key = pending.pop(0)
        if key in seen or key in ENGINE_KEYS or any(key.startswith(f"{k}#") for k in seen):
            continue
        seen.add(key)
        walk(lookup(config, key), key)
    code.expressions = list({e["key"]: e for e in code.expressions}.values())
    code.targets = list({t["key"]: t for t in code.targets}.values())
    if bundle is not None and (bundle / "scripts").is_dir():
        code.scripts = sorted(p.relative_to(bundle).as_posix() for p in (bundle / "scripts").rglob("*")
                              if p.is_file() and "__pycache__" not in p.parts)
    return code


def inspect_bundle(bundle: Path, where: str) -> dict:
    """What ``--trust-code`` would run for this bundle (for a confirm dialog): nothing is executed."""
    config = read_config_file(find_inference_config(bundle, where), where)
    if not isinstance(config, dict):
        raise DeepMedError(f"{where}: the inference config is not a mapping of keys to entries")
    metadata = read_config_file(bundle / "configs" / "metadata.json", where)
    code = code_to_run(config, bundle)
    return {"bundle": str(bundle), "name": str(metadata.get("name") or bundle.name) if isinstance(metadata, dict)
            else bundle.name, "needs_code": code.needed or bool(code.scripts), "summary": code.summary(),
            **code.as_dict()}


def copy_bundle_code(bundle: Path, target: Path) -> None:
    """The bundle's configs and scripts (no weights, no caches) into ``target/bundle``."""
    destination = target / BUNDLE_FOLDER
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.pt", "*.pth", "*.ts", "*.onnx", "*.ckpt")
    shutil.copytree(bundle / "configs", destination / "configs", ignore=ignore)
    if (bundle / "scripts").is_dir():
        shutil.copytree(bundle / "scripts", destination / "scripts", ignore=ignore, symlinks=False)

