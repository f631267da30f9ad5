"""The repository's own files: one copy of each schema and catalogue, package data that exists, a README that
fits a screen and links that lead somewhere, versions stated alike in pyproject.toml and the README."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "SlicerDeepMed" / "deepmed"
SKIPPED_FOLDERS = {".git", ".venv", "build", "dist", "demo_output", "__pycache__", ".pytest_cache", "_artifacts"}
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def pyproject() -> dict:
    import tomllib  # Python 3.11+ (inside: ruff's target is still py39, where tomllib sorts as third-party)

    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))


def repository_files(suffix: str):
    for folder, subfolders, files in os.walk(REPO):
        subfolders[:] = [name for name in subfolders if name not in SKIPPED_FOLDERS and not name.endswith(".egg-info")]
        yield from (Path(folder) / name for name in files if name.endswith(suffix))


def is_deepmed_catalogue(path: Path) -> bool:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(document, dict) and str(document.get("format", "")).startswith("deepmed-catalog/")


def test_each_schema_and_catalogue_has_one_copy_inside_the_package():
    """The engine reads its schemas and catalogue from the package (pip installs and the Slicer extension ship
    it); a second copy elsewhere in the repository drifts, so none may exist."""
    originals = {PACKAGE / "zoo" / "catalog.json", *(PACKAGE / "zoo" / "schemas").glob("*.json")}
    assert len(originals) == 4 and all(path.is_file() for path in originals)  # card, catalogue, ONNX export
    contents = {path.read_bytes() for path in originals}
    copies = [str(path.relative_to(REPO)) for path in repository_files(".json") if path not in originals and (
        path.name.endswith(".schema.json") or path.read_bytes() in contents or is_deepmed_catalogue(path))]
    assert copies == []


def test_package_data_declares_files_that_exist_and_every_data_file():
    patterns = pyproject()["tool"]["setuptools"]["package-data"]["deepmed"]
    for pattern in patterns:
        assert list(PACKAGE.glob(pattern)), f"package-data {pattern!r} matches no file"
    declared = {path for pattern in patterns for path in PACKAGE.glob(pattern)}
    data_files = {path for path in PACKAGE.rglob("*") if path.is_file() and path.suffix not in {".py", ".pyc"}}
    assert data_files <= declared, sorted(str(p.relative_to(PACKAGE)) for p in data_files - declared)


def test_python_version_agrees_across_pyproject_readme_and_slicer_support():
    from DeepMedLib import Dependencies

    project = pyproject()["project"]
    assert project["requires-python"] == ">=3.11" and Dependencies.MINIMUM_PYTHON == (3, 11)
    versions = {c.rsplit(":: ", 1)[1] for c in project["classifiers"] if c.startswith("Programming Language :: Python :: 3.")}
    assert versions and min(versions, key=lambda v: tuple(map(int, v.split(".")))) == "3.11"
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "Python 3.11" in readme and "Slicer 5.10" in readme


def test_readme_fits_a_screen_and_links_every_docs_page():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 120
    linked = {target.split("#", 1)[0] for target in LINK.findall(readme)}
    unlinked = [page.name for page in sorted((REPO / "docs").glob("*.md")) if f"docs/{page.name}" not in linked]
    assert unlinked == []


def heading_anchors(markdown: str) -> set[str]:
    """GitHub's anchors: a heading lower-cased, punctuation dropped, spaces made dashes."""
    headings = re.findall(r"^#+ (.+)$", re.sub(r"```.*?```", "", markdown, flags=re.DOTALL), re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-") for heading in headings}


@pytest.mark.parametrize("page", ["README.md", "CHANGELOG.md", *(f"docs/{p.name}" for p in sorted((REPO / "docs").glob("*.md")))])
def test_relative_links_lead_to_files_and_headings_in_the_repository(page):
    path = REPO / page
    broken = []
    for target in LINK.findall(path.read_text(encoding="utf-8")):
        if re.match(r"[a-z]+:", target):
            continue
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part) if file_part else path
        anchors = heading_anchors(linked.read_text(encoding="utf-8")) if linked.suffix == ".md" and linked.is_file() else None
        if not linked.exists() or (anchor and anchors is not None and anchor not in anchors):
            broken.append(target)
    assert broken == [], f"{page}: links to missing files or headings"
