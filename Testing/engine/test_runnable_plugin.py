"""Runnable-only applications: a model that deepmed runs but does not train (imported nnU-Net models, MONAI
bundles, or a plug-in like ``voxel_affine`` below) implements only what running needs, and every command that
trains or plans refuses it in one line.

``voxel_affine`` is the minimal runnable plug-in: a 1x1x1 convolution (``2 * x + 1`` in the weights written
here) whose card and ``model.safetensors`` are made by hand, as an importer would make them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from deepmed.applications import (
    APPLICATIONS,
    Prediction,
    RunnableApplication,
    TrainableApplication,
    get_application,
    get_trainable_application,
    trainable_application_names,
)
from deepmed.cli.main import EXIT_USER_ERROR, main
from deepmed.errors import DeepMedError
from deepmed.io.image_io import write_image
from deepmed.model.directory import CARD, CARD_FORMAT, WEIGHTS
from deepmed.model.weights import save_weights
from deepmed.zoo.schemas import CARD_SCHEMA, schema_problems

REPO = Path(__file__).resolve().parents[2]
PLUGIN = "voxel_affine"
INSTEAD = "fit the affine map with numpy and import it"


@APPLICATIONS.register(PLUGIN, "test plug-in: a voxel-wise affine map, run only")
class VoxelAffineApplication(RunnableApplication):
    name = PLUGIN
    output_kind = "scalar_volume"
    instead = INSTEAD

    def inference_parts(self, card, model_dir):
        return {"model": torch.nn.Conv3d(1, 1, 1)}

    def predict(self, members, inputs, card, device, options):
        image = inputs[0] if isinstance(inputs[0], sitk.Image) else sitk.ReadImage(str(inputs[0]), sitk.sitkFloat32)
        array = torch.from_numpy(sitk.GetArrayFromImage(image).astype(np.float32))[None, None].to(device)
        networks = [member["model"] for member in members]  # one per fold: averaged
        with torch.no_grad():
            mean = sum(network(array) for network in networks) / len(networks)
        output = sitk.GetImageFromArray(mean[0, 0].cpu().numpy())
        output.CopyInformation(image)
        return Prediction(output)

    def write_prediction(self, prediction, path):
        return write_image(prediction.output, Path(path))


def _model(folder: Path) -> Path:
    folder.mkdir()
    card = {"format": CARD_FORMAT, "application": PLUGIN, "title": "affine", "output_kind": "scalar_volume",
            "inputs": [{"name": "image", "normalization": "none"}], "labels": []}
    assert not schema_problems(card, CARD_SCHEMA)  # what an importer must write
    (folder / CARD).write_text(json.dumps(card))
    save_weights({"weight": torch.full((1, 1, 1, 1, 1), 2.0), "bias": torch.ones(1)}, folder / WEIGHTS)
    return folder


def _oblique_image(path: Path) -> Path:
    """A small image off the identity grid: anisotropic spacing, an origin and a rotated direction."""
    image = sitk.GetImageFromArray(np.random.default_rng(0).normal(size=(5, 6, 7)).astype(np.float32))
    image.SetSpacing((0.7, 1.3, 2.1))
    image.SetOrigin((-12.0, 4.5, 30.0))
    image.SetDirection((0.0, 1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 1.0))
    sitk.WriteImage(image, str(path))
    return path


def _dataset(folder: Path) -> Path:
    entries = []
    for i in range(2):
        image = sitk.GetImageFromArray(np.full((4, 4, 4), float(i), np.float32))
        sitk.WriteImage(image, str(folder / f"c{i}.nii.gz"))
        sitk.WriteImage(sitk.Cast(image > 0, sitk.sitkUInt8), str(folder / f"c{i}_seg.nii.gz"))
        entries.append({"image": f"c{i}.nii.gz", "label": f"c{i}_seg.nii.gz"})
    path = folder / "dataset.json"
    path.write_text(json.dumps({"name": "tiny", "labels": {"background": 0, "fg": 1}, "training": entries}))
    return path


def test_the_runnable_interface_is_what_running_needs():
    """Three methods to implement; the runnable-only applications have no training member at all."""
    assert RunnableApplication.__abstractmethods__ == {"inference_parts", "predict", "write_prediction"}
    training_members = set(dir(TrainableApplication)) - set(dir(RunnableApplication))
    assert {"plan", "train_step", "validate_case", "card_fields", "load_cases"} <= training_members
    runnable_only = [n for n in APPLICATIONS.names() if n not in trainable_application_names()]
    assert {"nnunet", "monai_bundle", "monai_bundle_trusted", PLUGIN} <= set(runnable_only)
    for name in runnable_only:
        application = get_application(name)
        assert not isinstance(application, TrainableApplication)
        assert not [m for m in training_members if hasattr(application, m)], name


def test_the_predictor_runs_a_runnable_plug_in_on_the_input_grid(tmp_path):
    from deepmed.inference.predictor import Predictor

    source = _oblique_image(tmp_path / "in.nii.gz")
    predictor = Predictor(_model(tmp_path / "affine"), "cpu")
    image = sitk.ReadImage(str(source))
    output = predictor.predict([source]).output
    assert (output.GetSize(), output.GetSpacing(), output.GetOrigin(), output.GetDirection()) == \
        (image.GetSize(), image.GetSpacing(), image.GetOrigin(), image.GetDirection())
    np.testing.assert_allclose(sitk.GetArrayFromImage(output), 2 * sitk.GetArrayFromImage(image) + 1, rtol=1e-5)


def test_get_trainable_application_refuses_a_runnable_one_with_what_to_do_instead():
    assert isinstance(get_trainable_application("segmentation"), TrainableApplication)
    with pytest.raises(DeepMedError, match=PLUGIN) as refused:
        get_trainable_application(PLUGIN)
    assert INSTEAD in str(refused.value)


def test_a_registered_non_application_is_named(tmp_path):
    APPLICATIONS.register("not_an_application", "test: a registered object of the wrong kind")(dict)
    try:
        with pytest.raises(DeepMedError, match="not_an_application.*RunnableApplication"):
            get_application("not_an_application")
    finally:
        APPLICATIONS._items.pop("not_an_application")
        APPLICATIONS._metadata.pop("not_an_application")


@pytest.mark.parametrize("command", [
    ["train", "--app", "nnunet", "--out", "{out}"],
    ["train", "--app", "monai_bundle_trusted", "--folds", "2", "--out", "{out}"],
    ["plan", "--app", "monai_bundle"],
    ["demo", "--app", "nnunet", "--out", "{out}"],
    ["list", "networks", "--app", "nnunet"],
    ["list", "losses", "--app", "monai_bundle"],
])
def test_training_and_planning_commands_refuse_an_imported_application(command, tmp_path, capsys):
    """``deepmed train|plan|demo`` and ``list networks|losses --app``: one line naming the application, exit 2."""
    dataset = _dataset(tmp_path)
    argv = [part.format(out=tmp_path / "out") for part in command]
    if argv[0] in ("train", "plan"):
        argv += ["--dataset", str(dataset)] if argv[0] == "train" else [str(dataset)]
    assert main(argv) == EXIT_USER_ERROR
    error = capsys.readouterr().err.strip().splitlines()
    application = command[command.index("--app") + 1]
    assert len(error) == 1 and f"'{application}'" in error[0] and "not trained" in error[0]
    assert not (tmp_path / "out").exists()


def test_the_command_line_runs_a_runnable_plug_in_and_refuses_to_train_it(tmp_path):
    env = {**os.environ, "DEEPMED_PLUGINS": "test_runnable_plugin",
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), str(REPO / "SlicerDeepMed")])}
    script = ("import json, sys\nfrom deepmed.cli.main import main\n"
              "for argv in (['list', 'applications', '--json'], ['list', 'applications', '--trainable', '--json']):\n"
              "    main(argv)\n"
              "sys.exit(main(sys.argv[1:]))\n")
    source = _oblique_image(tmp_path / "in.nii.gz")
    model = _model(tmp_path / "affine")
    run = subprocess.run([sys.executable, "-c", script, "infer", "--model", str(model), str(source),
                          "-o", str(tmp_path / "out.nii.gz"), "--progress", "none"],
                         env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    decoder = json.JSONDecoder()
    listed, end = decoder.raw_decode(run.stdout)
    trainable, _ = decoder.raw_decode(run.stdout[end:].lstrip())
    assert PLUGIN in listed and PLUGIN not in trainable and set(trainable) < set(listed)
    written, image = sitk.ReadImage(str(tmp_path / "out.nii.gz")), sitk.ReadImage(str(source))
    assert (written.GetSize(), written.GetOrigin(), written.GetDirection()) == \
        (image.GetSize(), image.GetOrigin(), image.GetDirection())
    np.testing.assert_allclose(sitk.GetArrayFromImage(written), 2 * sitk.GetArrayFromImage(image) + 1, rtol=1e-5)
    refused = subprocess.run([sys.executable, "-m", "deepmed", "train", "--dataset", str(_dataset(tmp_path)),
                              "--app", PLUGIN, "--out", str(tmp_path / "m"), "--progress", "none"],
                             env=env, capture_output=True, text=True)
    assert refused.returncode == EXIT_USER_ERROR and "Traceback" not in refused.stderr
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and "'app'" in lines[0] and f"'{PLUGIN}'" in lines[0] and INSTEAD in lines[0]
    assert not (tmp_path / "m").exists()


def test_an_application_missing_because_its_plug_in_failed_names_the_plug_in_and_why():
    """A model of a plug-in application whose module does not import: the error names the module and the reason,
    not only 'unknown application'."""
    code = ("import sys\nfrom deepmed.applications import get_application\nfrom deepmed.errors import DeepMedError\n"
            "try:\n    get_application('voxel_affine_elsewhere')\nexcept DeepMedError as exc:\n    print(exc)\n"
            "    sys.exit(3)\n")
    env = {**os.environ, "DEEPMED_PLUGINS": "no_such_plugin_module"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 3, done.stderr
    assert "voxel_affine_elsewhere" in done.stdout and "no_such_plugin_module" in done.stdout
    assert "ModuleNotFoundError" in done.stdout
