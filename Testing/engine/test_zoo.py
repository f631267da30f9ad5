"""Model zoo: packages, checksums, catalogues over real HTTP on 127.0.0.1, refusals of bad packages."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from naming import names, naming

from deepmed.errors import DeepMedError
from deepmed.inference.predictor import Predictor
from deepmed.zoo.checksums import sha256_of, write_sums
from deepmed.zoo.library import installed_models
from deepmed.zoo.package import export_package, import_package, remove_model, verify_installed
from deepmed.zoo.pull import pull_model

REPO = Path(__file__).resolve().parents[2]
MARKER_ENV = "DEEPMED_TEST_PICKLE_MARKER"


class Payload:
    """Unpickling this creates a marker file: proof that pickle code ran."""

    def __reduce__(self):
        return (os.system, (f"touch {os.environ[MARKER_ENV]}",))


@pytest.fixture
def server(httpServer):
    return httpServer


@pytest.fixture
def model_dir(tinyModelLibrary):
    return tinyModelLibrary[0] / "boxes"


@pytest.fixture
def library(tmp_path, monkeypatch):
    path = tmp_path / "library"
    monkeypatch.setenv("DEEPMED_LIBRARY", str(path))
    return path


def catalogue(folder: Path, base: str, packages: dict[str, Path], sha_override: dict | None = None) -> str:
    models = []
    for model_id, package in packages.items():
        models.append({"id": model_id, "version": "1.0.0", "title": model_id, "description": "test", "task": "segmentation",
                       "modality": "MR", "licence": "CC-BY-4.0", "urls": [package.name], "size": package.stat().st_size,
                       "sha256": (sha_override or {}).get(model_id, sha256_of(package))})
    (folder / "catalog.json").write_text(json.dumps({"format": "deepmed-catalog/1", "models": models}))
    return f"{base}/catalog.json"


def repack(source_zip: Path, target_zip: Path, change) -> Path:
    """Unzip, let ``change(folder)`` edit it, zip again."""
    work = target_zip.with_suffix(".dir")
    with zipfile.ZipFile(source_zip) as archive:
        archive.extractall(work)
    change(work)
    with zipfile.ZipFile(target_zip, "w") as archive:
        for path in sorted(work.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(work).as_posix())
    shutil.rmtree(work)
    return target_zip


def nothing_installed(library: Path) -> bool:
    return not library.exists() or not [p for p in library.iterdir() if p.name != "catalogs.txt"]


# ---- packages ------------------------------------------------------------------------------------------
def test_export_writes_a_checksummed_schema_valid_package(model_dir, tmp_path):
    package = export_package(model_dir, tmp_path / "boxes.zip", licence="CC-BY-4.0", citation="Doe et al. 2026",
                             title="Boxes", authors=["A. Doe"])
    with zipfile.ZipFile(package) as archive:
        names = sorted(archive.namelist())
        sums = dict(line.split("  ")[::-1] for line in archive.read("SHA256SUMS").decode().splitlines())
        card = json.loads(archive.read("model_card.json"))
    assert {"model_card.json", "model.safetensors", "config.yaml", "LICENSE", "CITATION.txt", "README.md",
            "SHA256SUMS"} <= set(names)
    assert sorted(sums) == sorted(n for n in names if n != "SHA256SUMS")
    assert card["id"] == "boxes" and card["licence"] == "CC-BY-4.0" and card["version"] == "1.0.0"
    assert card["memory"]["weights_mb"] > 0 and card["memory"]["inference_mb"] > 0
    assert [label["name"] for label in card["labels"]] == ["background", "box", "core"]
    with pytest.raises(DeepMedError, match="already exists"):
        export_package(model_dir, package, licence="CC-BY-4.0")
    with pytest.raises(DeepMedError, match=naming("licence")):
        export_package(model_dir, tmp_path / "nolicence.zip")
    assert not (tmp_path / "nolicence.zip").exists()


def test_import_into_an_empty_library_segments_identically(model_dir, tmp_path, library):
    package = export_package(model_dir, tmp_path / "boxes.zip", licence="CC-BY-4.0")
    installed = import_package(package)
    assert installed.path == library / "boxes" and verify_installed(installed) == []
    image = sitk.ReadImage(str(next((model_dir.parents[1] / "data").glob("case3.nii.gz"))))
    original = Predictor(model_dir, "cpu").predict(image).output
    again = Predictor(installed.path, "cpu").predict(image).output
    np.testing.assert_array_equal(sitk.GetArrayFromImage(original), sitk.GetArrayFromImage(again))
    with pytest.raises(DeepMedError, match="already installed"):
        import_package(package)
    remove_model("boxes")
    assert installed_models() == []


def test_folder_packages_import_too_and_tampering_is_detected(model_dir, tmp_path, library):
    folder = export_package(model_dir, tmp_path / "boxes-folder", licence="MIT")
    installed = import_package(folder, model_id="boxes2")
    (installed.path / "config.yaml").write_text("tampered: true\n")
    assert any("sha256 differs" in p for p in verify_installed(installed))
    result = subprocess.run([sys.executable, "-m", "deepmed", "zoo", "verify"], capture_output=True, text=True,
                            env={**os.environ, "DEEPMED_LIBRARY": str(library)})
    assert result.returncode == 2 and "boxes2: 1 problem(s)" in result.stdout


# ---- catalogues over HTTP ------------------------------------------------------------------------------
def test_pull_installs_a_good_package_and_lists_it(model_dir, server, library, tmp_path):
    folder, base = server
    package = export_package(model_dir, folder / "boxes-1.0.0.zip", licence="CC-BY-4.0", version="1.0.0")
    url = catalogue(folder, base, {"boxes": package})
    installed = pull_model("boxes", catalogs=[url], progress=False)
    assert installed.path == library / "boxes" and verify_installed(installed) == []
    result = subprocess.run([sys.executable, "-m", "deepmed", "zoo", "--catalog", url, "list"], capture_output=True,
                            text=True, env={**os.environ, "DEEPMED_LIBRARY": str(library)}, check=True)
    assert "boxes" in result.stdout and "installed" in result.stdout and "CC-BY-4.0" in result.stdout
    assert pull_model("boxes", catalogs=[url], progress=False).path == installed.path  # already there


@pytest.mark.parametrize("case, message", [
    ("wrong checksum", "sha256 mismatch"),
    ("truncated", "truncated after"),
    ("corrupted inside", "checksum verification failed"),
    ("malicious pickle weights", "not a valid safetensors file"),
    ("pickle file shipped", "holds pickle-based files"),
    ("card fails schema", "fails its schema"),
    ("unsafe path", "unsafe path in archive"),
])
def test_bad_packages_install_nothing_and_run_nothing(case, message, model_dir, server, library, tmp_path, monkeypatch):
    folder, base = server
    marker = tmp_path / "pickle-ran"
    monkeypatch.setenv(MARKER_ENV, str(marker))
    good = export_package(model_dir, tmp_path / "good.zip", licence="CC-BY-4.0")
    target = folder / "boxes.zip"

    def malicious_weights(work):
        (work / "model.safetensors").write_bytes(pickle.dumps(Payload()))
        write_sums(work)

    def ship_pickle(work):
        (work / "model.pt").write_bytes(pickle.dumps(Payload()))
        write_sums(work)

    def bad_card(work):
        card = json.loads((work / "model_card.json").read_text())
        card["network"] = {"name": "unet", "args": {**card["network"]["args"], "norm": "$__import__('os')"}}
        card["_target_"] = "os.system"
        (work / "model_card.json").write_text(json.dumps(card))
        write_sums(work)

    def corrupt(work):
        data = bytearray((work / "model.safetensors").read_bytes())
        data[-10] ^= 0xFF
        (work / "model.safetensors").write_bytes(bytes(data))

    sha_override, url_path = {}, None
    if case == "wrong checksum":
        shutil.copy(good, target)
        sha_override["boxes"] = "0" * 64
    elif case == "truncated":
        shutil.copy(good, target)
        url_path = f"{base}/truncated/boxes.zip"
    elif case == "unsafe path":
        shutil.copy(good, target)
        with zipfile.ZipFile(target, "a") as archive:
            archive.writestr("../escaped.txt", "x")
    else:
        change = {"corrupted inside": corrupt, "malicious pickle weights": malicious_weights,
                  "pickle file shipped": ship_pickle, "card fails schema": bad_card}[case]
        repack(good, target, change)
    url = catalogue(folder, base, {"boxes": target}, sha_override)
    if url_path is not None:
        document = json.loads((folder / "catalog.json").read_text())
        document["models"][0]["urls"] = [url_path]
        (folder / "catalog.json").write_text(json.dumps(document))
    with pytest.raises(DeepMedError, match=message) as raised:
        pull_model("boxes", catalogs=[url], progress=False)
    assert "\n" not in str(raised.value).strip() or case == "card fails schema"
    assert nothing_installed(library), sorted(p.name for p in library.iterdir())
    assert not marker.exists(), "pickle code ran"
    assert not (tmp_path / "escaped.txt").exists() and not (library.parent / "escaped.txt").exists()


def test_offline_lists_installed_models_and_says_so(model_dir, library, tmp_path):
    import_package(export_package(model_dir, tmp_path / "boxes.zip", licence="CC-BY-4.0"))
    unreachable = "http://127.0.0.1:9/catalog.json"
    result = subprocess.run([sys.executable, "-m", "deepmed", "zoo", "--catalog", unreachable, "list"],
                            capture_output=True, text=True, env={**os.environ, "DEEPMED_LIBRARY": str(library)})
    assert result.returncode == 0 and "boxes" in result.stdout
    assert names(result.stderr, unreachable)
    result = subprocess.run([sys.executable, "-m", "deepmed", "zoo", "--catalog", unreachable, "pull", "liver"],
                            capture_output=True, text=True, env={**os.environ, "DEEPMED_LIBRARY": str(library)})
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert names(result.stderr, "liver", "boxes")


def test_catalogue_failing_its_schema_is_reported(server, library):
    folder, base = server
    (folder / "catalog.json").write_text(json.dumps({"format": "deepmed-catalog/1", "models": [{"id": "x"}]}))
    with pytest.raises(DeepMedError, match=naming("catalog.json", "schema")):
        from deepmed.zoo.catalog import load_catalog

        load_catalog(f"{base}/catalog.json")


def test_the_packaged_catalogue_passes_its_schema():
    from deepmed.zoo.catalog import BUNDLED_CATALOG, load_catalog

    assert load_catalog(str(BUNDLED_CATALOG))  # the one copy: Testing/engine/test_project_files.py


def test_the_shipped_catalogue_entry_is_the_committed_demo_package(tmp_path):
    """The project's catalogue lists the demo package kept in Resources/Models: same size, same sha256, and it
    installs (read from the repository file; the catalogue URL is where the file is published)."""
    from deepmed.zoo.catalog import BUNDLED_CATALOG, load_catalog

    packages = [entry for entry in load_catalog(str(BUNDLED_CATALOG)) if entry.format == "deepmed-package"]
    assert packages  # the MONAI bundle entries are checked in test_monai_catalogue.py
    for entry in packages:
        local = REPO / "Resources" / "Models" / entry.urls[0].rsplit("/", 1)[1]
        assert entry.urls[0].endswith(f"/main/Resources/Models/{local.name}")
        assert local.stat().st_size == entry.size and sha256_of(local) == entry.sha256
        installed = import_package(local, library=tmp_path / "library", model_id=entry.id)
        assert installed.card.version == entry.version and verify_installed(installed) == []
