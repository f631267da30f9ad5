"""``deepmed worker``: JSON lines in, one response per request out; bad requests never end it."""

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from conftest import make_image

from deepmed.cli.worker_cmd import RefineServer
from deepmed.interactive.clicks import Click, ClickSet

ENGINE = str(Path(__file__).resolve().parents[2] / "SlicerDeepMed")


class BallSession:
    """The smallest session with the contract's shape: a ball of 2 voxels around each positive click (of the
    image read from its path), minus balls around negative ones; it prints, as model code may."""

    labels = ("ball",)

    def __init__(self, model, device="cpu", library=None):
        self.model, self.device, self.reads = model, device, 0

    def refine(self, image, clicks, previous=None, label=None):
        from types import SimpleNamespace

        print("model chatter on stdout")
        image = sitk.ReadImage(image)
        self.reads += 1
        array = np.zeros(sitk.GetArrayViewFromImage(image).shape, dtype=np.uint8)
        if previous is not None:
            array[sitk.GetArrayViewFromImage(sitk.ReadImage(previous)) > 0] = 1
        grid = np.indices(array.shape)
        for click in clicks.to_lps().clicks:
            index = image.TransformPhysicalPointToContinuousIndex(click.point)[::-1]  # (k, j, i)
            ball = sum((grid[axis] - index[axis]) ** 2 for axis in range(3)) <= 4
            array[ball] = 1 if click.positive else 0
        labels = sitk.GetImageFromArray(array)
        labels.CopyInformation(image)
        return SimpleNamespace(labels=labels, label=label or "ball", seconds=0.01, region=None)


def serve(lines, tmp_path, factory=BallSession):
    server = RefineServer(library=tmp_path, session_factory=factory)
    out = io.StringIO()
    code = server.serve(io.StringIO("".join(json.dumps(x) + "\n" if not isinstance(x, str) else x for x in lines)),
                        out)
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    return code, records, server


def test_refine_writes_the_mask_on_the_input_grid_and_answers_each_request_by_id(tmp_path):
    sitk.WriteImage(make_image(shape_zyx=(12, 13, 14), spacing=(1.0, 1.5, 2.0)), str(tmp_path / "image.nrrd"))
    image = sitk.ReadImage(str(tmp_path / "image.nrrd"))  # the worker's input, as it reads it
    centre = image.TransformIndexToPhysicalPoint((7, 6, 5))
    clicks = ClickSet((Click(centre, True, "ball"),), "LPS")
    ras = ClickSet((Click((-centre[0], -centre[1], centre[2]), True, "ball"),), "RAS")
    output = tmp_path / "out" / "mask.nrrd"
    code, records, server = serve([
        {"id": 1, "op": "open", "model": "m"},
        {"id": 2, "op": "refine", "image": str(tmp_path / "image.nrrd"), "clicks": clicks.to_dict(),
         "label": "ball", "output": str(output)},
        {"id": 3, "op": "refine", "image": str(tmp_path / "image.nrrd"), "clicks": ras.to_dict(),
         "label": "ball", "output": str(tmp_path / "ras.nrrd")},
        {"id": 4, "op": "quit"},
        {"id": 5, "op": "ping"},  # after quit: never answered
    ], tmp_path)
    assert code == 0 and records[0]["event"] == "ready"
    responses = [r for r in records if r["event"] == "response"]
    assert [r["id"] for r in responses] == [1, 2, 3, 4] and all(r["ok"] for r in responses)
    assert responses[0]["labels"] == ["ball"] and responses[1]["output"] == str(output)
    mask = sitk.ReadImage(str(output))
    assert mask.GetSize() == image.GetSize() and mask.GetDirection() == image.GetDirection()
    assert mask.GetOrigin() == image.GetOrigin() and mask.GetSpacing() == image.GetSpacing()
    assert mask[7, 6, 5] == 1 and mask[0, 0, 0] == 0
    assert np.array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "ras.nrrd"))),
                          sitk.GetArrayFromImage(mask))  # RAS clicks are the same points
    assert sorted(p.name for p in output.parent.iterdir()) == ["mask.nrrd"]  # no partial file left


def test_bad_requests_are_answered_on_one_line_and_the_worker_goes_on(tmp_path):
    image = make_image()
    sitk.WriteImage(image, str(tmp_path / "image.nrrd"))
    refine = {"op": "refine", "image": str(tmp_path / "image.nrrd"), "clicks": {"coordinates": "LPS", "clicks": []},
              "output": str(tmp_path / "o.nrrd")}
    code, records, _ = serve([
        "{not json\n",
        [1, 2],
        {"id": 1, "op": "fly"},
        {"id": 2, **refine},  # before open
        {"id": 3, "op": "open"},
        {"id": 4, "op": "open", "model": "m"},
        {"id": 5, **refine, "image": str(tmp_path / "missing.nrrd")},
        {"id": 6, **refine, "clicks": {"coordinates": "XYZ"}},
        {"id": 7, **refine, "previous": str(tmp_path / "gone.nrrd")},
        {"id": 8, **refine},
    ], tmp_path)
    responses = [r for r in records if r["event"] == "response"]
    assert code == 0 and len(responses) == 10
    errors = [r.get("error", "") for r in responses]
    assert [r["ok"] for r in responses] == [False] * 5 + [True, False, False, False, True]
    assert "not JSON" in errors[0] and "JSON object" in errors[1] and "'op'" in errors[2] and "fly" in errors[2]
    assert "before open" in errors[3] and "'model'" in errors[4]
    assert "'image'" in errors[6] and "missing.nrrd" in errors[6]
    assert "coordinates" in errors[7] and "'previous'" in errors[8] and "gone.nrrd" in errors[8]
    assert all("\n" not in e for e in errors)


def test_an_exception_in_the_model_is_one_line_and_the_session_stays_open(tmp_path):
    class Failing(BallSession):
        def refine(self, image, clicks, previous=None, label=None):
            if not clicks.clicks:
                raise RuntimeError("no clicks\nsecond line")
            return super().refine(image, clicks, previous, label)

    sitk.WriteImage(make_image(), str(tmp_path / "image.nrrd"))
    point = make_image().TransformIndexToPhysicalPoint((2, 2, 2))
    request = {"op": "refine", "image": str(tmp_path / "image.nrrd"), "output": str(tmp_path / "o.nrrd")}
    code, records, server = serve([
        {"id": 1, "op": "open", "model": "m"},
        {"id": 2, **request, "clicks": {"coordinates": "LPS", "clicks": []}},
        {"id": 3, **request, "clicks": ClickSet((Click(point, True, "ball"),)).to_dict()},
    ], tmp_path, factory=Failing)
    responses = [r for r in records if r["event"] == "response"]
    assert responses[1] == {**responses[1], "ok": False, "error": "RuntimeError: no clicks second line"}
    assert responses[2]["ok"] and server.session.reads == 1


def test_the_worker_command_starts_without_torch_and_ends_on_quit(tmp_path):
    probe = ("import sys; import deepmed.cli.main as m; m.build_parser(); import deepmed.cli.worker_cmd; "
             "print('torch' in sys.modules)")
    env = {"PYTHONPATH": ENGINE, "PATH": "/usr/bin:/bin"}
    assert subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True,
                          timeout=60).stdout.strip() == "False"
    requests = "\n".join(json.dumps(r) for r in ({"id": 1, "op": "ping"}, {"id": 2, "op": "quit"}))
    done = subprocess.run([sys.executable, "-m", "deepmed", "worker", "--library", str(tmp_path)], input=requests + "\n",
                          env=env, capture_output=True, text=True, timeout=120)
    responses = [json.loads(line) for line in done.stdout.splitlines() if '"response"' in line]
    assert done.returncode == 0 and [r["id"] for r in responses] == [1, 2] and responses[0]["ok"]
    assert "Traceback" not in done.stderr


def test_opening_a_model_that_is_not_there_names_it(tmp_path):
    code, records, server = serve([{"id": 1, "op": "open", "model": str(tmp_path / "no-model")}], tmp_path,
                                  factory=None)  # the real InteractiveSession
    response = records[-1]
    assert code == 0 and not response["ok"] and "no-model" in response["error"] and server.session is None
