"""The MONAI Model Zoo as a catalogue: its model_info.json read, bundles pulled over real HTTP on 127.0.0.1 with
the publisher's SHA-1 checked, converted, recorded and run; the project catalogue made from the real bundles."""

from __future__ import annotations

import hashlib
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
from conftest import OBLIQUE, SHARED_DATA, make_image
from naming import names

from deepmed.cli.main import main
from deepmed.errors import DeepMedError
from deepmed.zoo.catalog import BUNDLED_CATALOG, find_entry, load_catalog, version_key, versions_of
from deepmed.zoo.checksums import sha256_of
from deepmed.zoo.library import read_installed
from deepmed.zoo.package import verify_installed
from deepmed.zoo.pull import ORIGIN, pull_model

BUNDLES = SHARED_DATA / "monai-bundles"
SPLEEN = "spleen_ct_segmentation"


class Payload:
    """Unpickling this creates ``marker``: proof that pickle code ran."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(scope="module")
def spleen_zip(tmp_path_factory) -> Path:
    """The real spleen_ct_segmentation bundle (configs, LICENSE) with random weights of the right shape, zipped as
    the MONAI Model Zoo publishes it (one top folder), plus a TorchScript-named pickle that must never be loaded."""
    import torch
    from monai.bundle import ConfigParser

    work = tmp_path_factory.mktemp("spleen-bundle")
    bundle = shutil.copytree(BUNDLES / SPLEEN, work / SPLEEN)
    parser = ConfigParser()
    parser.read_config(str(bundle / "configs" / "inference.json"))
    torch.manual_seed(0)
    network = parser.get_parsed_content("network_def")
    (bundle / "models").mkdir()
    torch.save(network.state_dict(), bundle / "models" / "model.pt")
    (bundle / "models" / "model.ts").write_bytes(pickle.dumps(Payload(work / "pickle-ran")))
    archive = work / f"{SPLEEN}_v0.5.9.zip"
    with zipfile.ZipFile(archive, "w") as out:
        for path in sorted(bundle.rglob("*")):
            if path.is_file():
                method = zipfile.ZIP_STORED if path.suffix == ".pt" else zipfile.ZIP_DEFLATED
                out.write(path, path.relative_to(work).as_posix(), compress_type=method)
    return archive


@pytest.fixture
def library(tmp_path, monkeypatch):
    path = tmp_path / "library"
    monkeypatch.setenv("DEEPMED_LIBRARY", str(path))
    monkeypatch.setenv("DEEPMED_CATALOGS", "")  # only the catalogue served here (the shipped one points online)
    return path


def sha1_of(path: Path) -> str:
    return hashlib.sha1(path.read_bytes(), usedforsecurity=False).hexdigest()


def serve(httpServer, archive: Path, checksum: str | None = None) -> str:
    """Put the zip and a model_info.json listing it (and an older version) on the local server; its URL."""
    folder, base = httpServer
    shutil.copy(archive, folder / archive.name)
    info = {f"{SPLEEN}_v0.5.8": {"checksum": "1" * 40, "source": f"{base}/old.zip"},
            f"{SPLEEN}_v0.5.9": {"checksum": checksum or sha1_of(archive), "source": f"{base}/{archive.name}"}}
    (folder / "model_info.json").write_text(json.dumps(info, indent=1))
    return f"{base}/model_info.json"


def nothing_installed(library: Path) -> bool:
    return not library.exists() or not [p for p in library.rglob("*") if p.name != "catalogs.txt"]


# ---- reading MONAI's catalogue format --------------------------------------------------------------------
def test_model_info_is_read_as_a_catalogue_newest_version_first():
    entries = load_catalog(str(BUNDLES / "model_info.json"))
    document = json.loads((BUNDLES / "model_info.json").read_text())
    assert len(entries) == len(document) and {e.format for e in entries} == {"monai-bundle"}
    assert {e.id for e in entries} >= {SPLEEN, "prostate_mri_anatomy", "brats_mri_segmentation",
                                       "swin_unetr_btcv_segmentation"}
    newest = find_entry(SPLEEN, entries)
    assert newest.version == "0.5.9" and newest.sha1 == document[f"{SPLEEN}_v0.5.9"]["checksum"]
    assert newest.urls == [document[f"{SPLEEN}_v0.5.9"]["source"]] and newest.sha256 is None
    older = find_entry(f"{SPLEEN}@0.3.1", entries)
    assert older.version == "0.3.1" and older.sha1 == document[f"{SPLEEN}_v0.3.1"]["checksum"]
    assert find_entry(f"{SPLEEN}@9.9.9", entries) is None
    assert versions_of(SPLEEN, entries)[:3] == ["0.5.9", "0.5.8", "0.5.7"]
    assert sorted(["0.10.0", "0.5.10", "0.5.9", "0.5.9-rc1"], key=version_key) == ["0.5.9", "0.5.9-rc1", "0.5.10",
                                                                                   "0.10.0"]
    assert newest.checksum_text == "SHA-1" and newest.size_text == "size unknown"


@pytest.mark.parametrize("document, message", [
    ({"spleen-0.5.9": {"checksum": "a" * 40, "source": "x.zip"}}, ("'spleen-0.5.9'", "<bundle>_v<version>")),
    ({"spleen_v0.5.9": {"checksum": "a" * 39, "source": "x.zip"}}, ("checksum", "SHA-1")),
    ({"spleen_v0.5.9": {"checksum": "a" * 40, "source": ""}}, ("source", "URL")),
    ({"models": []}, ("catalogue",)),
])
def test_malformed_model_info_is_refused_in_one_line(document, message, tmp_path):
    path = tmp_path / "model_info.json"
    path.write_text(json.dumps(document))
    with pytest.raises(DeepMedError) as raised:
        load_catalog(str(path))
    assert names(str(raised.value), *message, str(path)) and "\n" not in str(raised.value)


# ---- pulling a bundle over HTTP ---------------------------------------------------------------------------
def test_pull_verifies_sha1_records_sha256_and_the_bundle_segments(spleen_zip, httpServer, library, tmp_path,
                                                                   capsys):
    url = serve(httpServer, spleen_zip)
    assert main(["zoo", "add-catalog", url]) == 0
    assert "1 model(s)" in capsys.readouterr().out
    assert main(["zoo", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["models"]
    assert [(r["id"], r["version"], r["status"], r["checksum"]) for r in rows] == [(SPLEEN, "0.5.9", "available",
                                                                                     "SHA-1")]
    assert main(["zoo", "--progress", "none", "pull", SPLEEN]) == 0
    installed = read_installed(library / SPLEEN)
    assert installed is not None and installed.card.version == "0.5.9"
    origin = json.loads((installed.path / ORIGIN).read_text())
    assert origin["archive_sha256"] == sha256_of(spleen_zip) and origin["publisher_sha1"] == sha1_of(spleen_zip)
    assert origin["url"].endswith(spleen_zip.name) and origin["archive_bytes"] == spleen_zip.stat().st_size
    assert verify_installed(installed) == []  # SHA256SUMS covers the converted files and ORIGIN.json
    assert f"  {ORIGIN}" in (installed.path / "SHA256SUMS").read_text()
    assert not (spleen_zip.parent / "pickle-ran").exists(), "the bundle's TorchScript-named pickle was loaded"
    capsys.readouterr()
    assert main(["zoo", "info", SPLEEN]) == 0
    info = capsys.readouterr().out
    assert f"SHA-1 (publisher's) {sha1_of(spleen_zip)}" in info and origin["archive_sha256"] in info
    assert f"other versions ({SPLEEN}@VERSION): 0.5.8" in info

    scan = make_image(shape_zyx=(20, 40, 44), spacing=(1.6, 1.4, 2.2), direction=OBLIQUE, seed=5)
    sitk.WriteImage(scan, str(tmp_path / "ct.nii.gz"))
    scan = sitk.ReadImage(str(tmp_path / "ct.nii.gz"))  # the grid as stored (NIfTI keeps float32 geometry)
    assert main(["infer", "--model", SPLEEN, str(tmp_path / "ct.nii.gz"), "-o", str(tmp_path / "seg.nii.gz"),
                 "--device", "cpu", "--progress", "none"]) == 0
    segmentation = sitk.ReadImage(str(tmp_path / "seg.nii.gz"))
    assert segmentation.GetSize() == scan.GetSize() and segmentation.GetSpacing() == scan.GetSpacing()
    assert segmentation.GetOrigin() == scan.GetOrigin() and segmentation.GetDirection() == scan.GetDirection()
    assert set(np.unique(sitk.GetArrayFromImage(segmentation))) <= {0, 1}


def test_a_wrong_sha1_is_refused_in_one_line_and_installs_nothing(spleen_zip, httpServer, library):
    url = serve(httpServer, spleen_zip, checksum="0" * 40)
    result = subprocess.run([sys.executable, "-m", "deepmed", "zoo", "--catalog", url, "--progress", "none", "pull",
                             SPLEEN], capture_output=True, text=True, env=os.environ.copy())
    assert result.returncode == 2 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "SHA-1 mismatch: expected " + "0" * 40 in lines[0], result.stderr
    assert f"got {sha1_of(spleen_zip)}" in lines[0] and "nothing installed" in lines[0]
    assert nothing_installed(library), sorted(str(p) for p in library.rglob("*"))


def _traversal(archive: Path, target: Path):
    shutil.copy(archive, target)
    with zipfile.ZipFile(target, "a") as out:
        out.writestr("../escaped.txt", "x")


@pytest.mark.parametrize("case, message", [
    ("bigger than the limit", ("1000",)),
    ("not a zip", ("zip",)),
    ("path traversal", ("'../escaped.txt'",)),
])
def test_bad_downloads_with_the_right_sha1_install_nothing(case, message, spleen_zip, httpServer, library, tmp_path,
                                                           monkeypatch):
    target = tmp_path / spleen_zip.name
    if case == "bigger than the limit":
        monkeypatch.setattr("deepmed.zoo.download.MAX_DOWNLOAD_BYTES", 1000)
        shutil.copy(spleen_zip, target)
    elif case == "not a zip":
        target.write_bytes(b"<html>a login page, not a zip</html>")
    else:
        _traversal(spleen_zip, target)
    url = serve(httpServer, target)
    with pytest.raises(DeepMedError) as raised:
        pull_model(SPLEEN, catalogs=[url], progress=False)
    assert names(str(raised.value), *message) and "\n" not in str(raised.value)
    assert nothing_installed(library) and not (library.parent / "escaped.txt").exists()


# ---- the project's catalogue ------------------------------------------------------------------------------
def test_project_catalogue_lists_shared_bundles_that_import_as_the_tool_makes_them():
    """The MONAI entries of deepmed/zoo/catalog.json are what ``deepmed zoo catalog-from-bundles`` makes from the
    real bundle configs and model_info.json (each imported again here, with random weights): none typed by hand, none
    that the importer refuses. (``make model-catalog`` also runs each network once and leaves out the bundles that
    cannot run, e.g. SwinUNETR without einops; that forward pass is too slow for this test.)"""
    from deepmed.zoo.bundle_catalog import entries_from_bundles

    shipped = [m for m in json.loads(BUNDLED_CATALOG.read_text())["models"] if m.get("format") == "monai-bundle"]
    assert [m["id"] for m in shipped] == sorted(m["id"] for m in shipped) and SPLEEN in [m["id"] for m in shipped]
    made, left_out = entries_from_bundles([BUNDLES / m["id"] for m in shipped], str(BUNDLES / "model_info.json"))
    assert left_out == [], left_out
    assert len(made) == len(shipped)
    for entry, again in zip(shipped, made):
        assert entry == again, f"{entry['id']}: the catalogue is out of date: run 'make model-catalog'"
    spleen = next(m for m in made if m["id"] == SPLEEN)
    info = json.loads((BUNDLES / "model_info.json").read_text())[f"{SPLEEN}_v0.5.9"]
    assert spleen["sha1"] == info["checksum"] and spleen["urls"] == [info["source"]]
    assert (spleen["title"], spleen["modality"], spleen["licence"], spleen["labels"]) == \
        ("Spleen CT segmentation", "CT", "Apache-2.0", ["spleen"])
    assert spleen["weights_mb"] == pytest.approx(4_811_370 * 4 / 1e6, abs=0.2)  # UNet parameters x float32
    entry = find_entry(SPLEEN, load_catalog(str(BUNDLED_CATALOG)))
    assert entry.format == "monai-bundle" and entry.size_text == "19+ MB" and entry.checksum_text == "SHA-1"


def test_an_importer_crash_on_a_pulled_bundle_is_one_line_and_installs_nothing(spleen_zip, httpServer, library,
                                                                               monkeypatch):
    def crash(*args, **kwargs):
        raise KeyError("channel_def")  # what an importer bug on an unforeseen bundle looks like

    monkeypatch.setattr("deepmed.zoo.pull.import_package", crash)
    with pytest.raises(DeepMedError) as raised:
        pull_model(SPLEEN, catalogs=[serve(httpServer, spleen_zip)], progress=False)
    assert str(raised.value) == (f"{SPLEEN} 0.5.9: cannot be imported (KeyError: 'channel_def'); nothing installed")
    assert nothing_installed(library)
