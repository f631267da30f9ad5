"""Shared fixtures: tiny images with awkward geometry, written with fixed seeds; paths to the real scans."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from slicer_support import i18n

REPO = Path(__file__).resolve().parents[1]
MODULES = REPO / "SlicerDeepMed" / "Modules"
# DeepMedLib and the module files importable, as Slicer's qt-scripted-modules folder makes them
for _path in (MODULES, MODULES / "DeepMedData", MODULES / "DeepMedTrain", MODULES / "DeepMedRun",
              MODULES / "DeepMedReview"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))
SHARED_DATA = REPO.parent / "shared" / "data"
# Slicer's slicer.i18n (the modules' ``_()``), which slicer-core lacks: before any module file is imported
i18n.install()

OBLIQUE = (0.8660254037844387, -0.5, 0.0, 0.5, 0.8660254037844387, 0.0, 0.0, 0.0, 1.0)  # 30 deg about z
LEFT_HANDED = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, -1.0)
PERMUTED = (0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0)


def make_image(shape_zyx=(6, 7, 8), spacing=(0.7, 1.3, 3.1), origin=(-12.5, 40.25, 7.0), direction=OBLIQUE,
               dtype=np.float32, seed=0, array: np.ndarray | None = None) -> sitk.Image:
    """A small image with anisotropic spacing, non-zero origin and non-identity direction."""
    if array is None:
        rng = np.random.default_rng(seed)
        array = (rng.normal(100, 20, size=shape_zyx)).astype(dtype)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    image.SetDirection(direction)
    return image


def make_label(image: sitk.Image, values=(1, 2), seed=1) -> sitk.Image:
    """A label map on ``image``'s grid with boxes of the given values."""
    size = image.GetSize()[::-1]
    array = np.zeros(size, dtype=np.uint8)
    for i, value in enumerate(values):
        z0 = min(i, size[0] - 2)
        array[z0:z0 + 2, 1 + i:4 + i, 2:5] = value
    label = sitk.GetImageFromArray(array)
    label.CopyInformation(image)
    return label


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.fail(f"the real scans are expected in {SHARED_DATA} (shared/ beside the checkout)")
    return SHARED_DATA


@pytest.fixture
def toy_dataset(tmp_path: Path) -> Path:
    """Three 2-channel cases with labels, written as NIfTI, and an MSD-style manifest."""
    import json

    entries = []
    for i in range(3):
        t1 = make_image(seed=i)
        t2 = make_image(seed=10 + i)
        label = make_label(t1)
        names = [f"case{i}_t1.nii.gz", f"case{i}_t2.nii.gz", f"case{i}_seg.nii.gz"]
        for img, name in zip((t1, t2, label), names):
            sitk.WriteImage(img, str(tmp_path / name))
        entries.append({"image": names[:2], "label": names[2]})
    manifest = {"name": "toy", "modality": {"0": "T1", "1": "T2"}, "labels": {"0": "background", "1": "a", "2": "b"},
                "training": entries}
    path = tmp_path / "dataset.json"
    path.write_text(json.dumps(manifest))
    return path


# ---- Slicer modules: a headless MRML application (slicer-core) ----------------------------------------
@pytest.fixture
def slicerApp():
    from slicer_support.mrml_app import HeadlessSlicer

    app = HeadlessSlicer()
    yield app
    app.close()


@pytest.fixture
def scene(slicerApp):
    return slicerApp.scene


@pytest.fixture(scope="session")
def tinyModelLibrary(tmp_path_factory):
    """A model library with one tiny segmentation model 'boxes' (trained in-process, once per session)."""
    import deepmed
    from DeepMedLib.SelfTestData import TINY_SETTINGS, writeSyntheticDataset

    root = tmp_path_factory.mktemp("library-root")
    manifest = writeSyntheticDataset(root / "data")
    overrides = [f"{key}={value}".replace(" ", "") for key, value in TINY_SETTINGS.items()]
    (root / "library").mkdir()
    deepmed.train(manifest, root / "library" / "boxes", epochs=6, device="cpu", overrides=overrides, progress="none")
    return root / "library", manifest


@pytest.fixture(scope="session")
def nnunetReference(tmp_path_factory):
    """An nnU-Net v2 result folder and nnU-Net's own predictions, made by nnunetv2 (a test extra) in a
    subprocess, once per session (Testing/engine/nnunet_reference.py); the work folder."""
    import os
    import subprocess

    pytest.importorskip("nnunetv2", reason="nnunetv2 (test extra, Python >= 3.10) not installed")
    work = tmp_path_factory.mktemp("nnunet")
    script = Path(__file__).resolve().parent / "engine" / "nnunet_reference.py"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "nnUNet_def_n_proc": "1"}
    done = subprocess.run([sys.executable, str(script), str(work)], env=env, capture_output=True,
                          encoding="utf-8", errors="replace", timeout=900)  # nnU-Net prints non-ASCII text
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return work


@pytest.fixture
def qtHarness(slicerApp, tinyModelLibrary, monkeypatch, tmp_path):
    """PySide6 offscreen + Slicer stand-ins, a real scene, the panels' library folder a copy of the library
    (``qtHarness.library``). ``$DEEPMED_LIBRARY`` names another, empty folder: the panels pass their folder to
    the engine and its workers explicitly, so a path that fell back on the environment would find no model."""
    import shutil

    from slicer_support import qt_harness

    library = tmp_path / "library"
    shutil.copytree(tinyModelLibrary[0], library)
    monkeypatch.setenv("DEEPMED_LIBRARY", str(tmp_path / "not-the-panels-library"))
    monkeypatch.setenv("DEEPMED_CATALOGS", "")  # no shipped catalogue: model lists stay what each test makes
    app = qt_harness.install()
    from DeepMedLib import ModelLibrary

    ModelLibrary.useLibraryFolder(library, announce=False)
    qt_harness.library = library
    qt_harness.isolateSettings(tmp_path / "settings")
    for recorded in (qt_harness.messages, qt_harness.uncaught, qt_harness.fileDialogAnswers,
                     qt_harness.fileDialogCalls):
        recorded.clear()
    qt_harness.confirmAnswer[0] = True
    yield qt_harness
    qt_harness.modules.exitApplication()
    app.processEvents()
    ModelLibrary.useLibraryFolder(None)  # the next test starts from the default, as a new Slicer would


@pytest.fixture
def openPanel(qtHarness, scene, request):
    """``openPanel("DeepMedRun")``: the user selects the module (its widget is set up the first time, then
    entered, as Slicer does; its first catalogue read done); at teardown each panel's final state is saved as
    a screenshot, then Slicer "exits" (every widget's ``cleanup()``)."""
    opened = {}

    def open_(moduleName: str):
        widget = qtHarness.modules.select(moduleName)
        qtHarness.processEventsUntil(lambda: not getattr(widget.panel, "zooJobs", None), timeout=60)
        # the engine's lists (applications, then the losses of the chosen one) have answered
        qtHarness.processEventsUntil(lambda: getattr(widget.panel, "applicationsJob", None) is None
                                     and getattr(widget.panel, "lossJob", None) is None
                                     and getattr(widget.panel, "networkJob", None) is None, timeout=60)
        opened[moduleName] = widget
        return widget

    yield open_
    for moduleName, widget in opened.items():
        saveScreenshot(widget.parent, f"{moduleName[len('DeepMed'):].lower()}_panel_{request.node.name}")


def saveScreenshot(widget, name: str) -> Path:
    """Save a PNG of a panel to build/screenshots/ (look at them; one is in the README)."""
    folder = REPO / "build" / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    layout = widget.layout()
    height = layout.totalHeightForWidth(460) if layout is not None and layout.hasHeightForWidth() else -1
    widget.resize(460, max(height, widget.sizeHint().height(), 700))  # word-wrapped labels get their lines
    assert widget.grab().save(str(path)), f"could not save {path}"
    return path


# ---- a local HTTP server (catalogues and packages over real HTTP, nothing outside 127.0.0.1) -------------
class _Handler(__import__("http.server").server.SimpleHTTPRequestHandler):
    """Serves a folder; ``/truncated/NAME`` announces the full length, sends half and hangs up."""

    def log_message(self, *args):
        pass

    def do_GET(self):
        if self.path.startswith("/truncated/"):
            data = (Path(self.directory) / self.path.split("/", 2)[2]).read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        super().do_GET()


@pytest.fixture
def httpServer(tmp_path):
    """``(folder, base_url)``: files put in ``folder`` are served at ``base_url`` on 127.0.0.1."""
    import http.server
    import threading

    folder = tmp_path / "served"
    folder.mkdir()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), lambda *a: _Handler(*a, directory=str(folder)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield folder, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
