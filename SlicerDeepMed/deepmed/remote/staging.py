"""Which of a deepmed command's arguments are local files to send, and which results to bring back.

The arguments keep their order; each path is replaced by its place in the remote job folder:

* output options (``--out``, ``-o/--output``, ``--probabilities``, ``--uncertainty``) -> ``out/K_NAME``,
  brought back to the local path when the worker ends (an output that already exists, e.g. the model folder
  of ``train --resume``, is also sent);
* ``--stop-file F`` -> the job's remote stop file (the local side watches F and forwards it);
* a dataset manifest (``--dataset x.json``) -> a copy whose image and label paths point at the sent files;
* any other argument naming an existing local file or folder -> ``in/K_NAME``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

OUTPUT_OPTIONS = {"--out", "-o", "--output", "--probabilities", "--uncertainty"}
STOP_OPTION = "--stop-file"
DATASET_OPTION = "--dataset"


@dataclass
class RemotePlan:
    """The remote command line, the staging folder to send (mirrors the job folder) and the results to fetch."""

    arguments: list[str]
    stage: Path
    outputs: list[tuple[str, str]] = field(default_factory=list)  # (path in the job folder, local path)
    stop_file: str | None = None                                   # the local stop file to watch


def plan(arguments: list[str], stage: Path) -> RemotePlan:
    """Stage the inputs of ``arguments`` (symbolic links under ``stage/in``, ``stage/out``) and map paths."""
    (stage / "in").mkdir(parents=True, exist_ok=True)
    (stage / "out").mkdir(parents=True, exist_ok=True)
    result = RemotePlan(arguments=[], stage=stage)
    previous = None
    for index, argument in enumerate(arguments):
        argument = str(argument)
        if previous in OUTPUT_OPTIONS:
            remote = f"out/{index}_{Path(argument).name}"
            result.outputs.append((remote, str(Path(argument).absolute())))
            if Path(argument).exists():
                _link(Path(argument), stage / remote)
            result.arguments.append(remote)
        elif previous == STOP_OPTION:
            result.stop_file = str(Path(argument).absolute())
            result.arguments.append("stop")
        elif previous == DATASET_OPTION and argument.lower().endswith(".json") and Path(argument).is_file():
            result.arguments.append(_stage_manifest(Path(argument), stage / "in" / f"{index}_dataset"))
        elif not argument.startswith("-") and _exists(argument):
            remote = f"in/{index}_{Path(argument).name}"
            _link(Path(argument), stage / remote)
            result.arguments.append(remote)
        else:
            result.arguments.append(argument)
        previous = argument
    return result


def _stage_manifest(manifest: Path, folder: Path) -> str:
    """The manifest with every case file linked under ``folder`` (one sub-folder per source folder, names
    kept); the returned path is relative to the job folder."""
    from deepmed.data.manifest import Dataset

    dataset = Dataset.load(manifest)
    folders: dict[Path, str] = {}
    for case in dataset.training + dataset.test + dataset.pool:
        case.images = [_link_into(path, folder, folders) for path in case.images]
        if case.label is not None:
            case.label = _link_into(case.label, folder, folders)
    target = folder / manifest.name
    dataset.save(target)
    return str(target.relative_to(folder.parent.parent))


def _link_into(path: Path, folder: Path, folders: dict[Path, str]) -> Path:
    parent = path.absolute().parent
    sub = folders.setdefault(parent, f"files{len(folders)}")
    target = folder / sub / path.name
    if not target.exists():
        _link(path, target)
    return target


def _link(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(source.absolute(), target, target_is_directory=source.is_dir())


def _exists(argument: str) -> bool:
    try:
        return bool(argument) and Path(argument).exists()
    except (OSError, ValueError):
        return False
