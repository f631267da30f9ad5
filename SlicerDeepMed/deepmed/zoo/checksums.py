"""sha256 of files, and the ``SHA256SUMS`` list every model package carries (``sha256sum`` format)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from deepmed.errors import DeepMedError

SUMS = "SHA256SUMS"
CHUNK = 1 << 20


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def package_files(folder: Path) -> list[str]:
    """Every file of a package folder (relative POSIX paths), except SHA256SUMS itself."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() and p.name != SUMS)


def write_sums(folder: Path) -> Path:
    lines = [f"{sha256_of(folder / name)}  {name}" for name in package_files(folder)]
    path = folder / SUMS
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def read_sums(folder: Path) -> dict[str, str]:
    path = folder / SUMS
    if not path.is_file():
        raise DeepMedError(f"{folder}: {SUMS} missing: not a model package (or not exported with 'deepmed zoo export')")
    sums = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        digest, _, name = line.partition("  ")
        if len(digest) != 64 or not name:
            raise DeepMedError(f"{path}: line {number}: expected '<sha256>  <file>', got {line[:80]!r}")
        sums[name] = digest
    return sums


def verify_sums(folder: Path) -> list[str]:
    """Problems (one line each): files missing, changed, or present but not listed."""
    sums = read_sums(folder)
    problems = []
    present = set(package_files(folder))
    for name, digest in sums.items():
        if name not in present:
            problems.append(f"{folder / name}: listed in {SUMS} but missing")
        elif sha256_of(folder / name) != digest:
            problems.append(f"{folder / name}: sha256 differs from {SUMS} (file changed or corrupted)")
    for name in sorted(present - set(sums)):
        problems.append(f"{folder / name}: not listed in {SUMS}")
    return problems
