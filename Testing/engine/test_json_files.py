"""The one JSON reader behind the card, manifest, plan, ONNX pipeline, nnU-Net and catalogue files: each bad file
gives one DeepMedError naming the file and the problem (missing, not JSON at line/column, not an object)."""

from __future__ import annotations

import pytest
from naming import naming

from deepmed.data.manifest import Dataset
from deepmed.errors import DeepMedError
from deepmed.export.pipeline import OnnxPipeline
from deepmed.model.card import ModelCard
from deepmed.planning.plan import Plan
from deepmed.utils.json_files import parse_json, read_json, read_json_object


def test_reader_names_the_file_and_the_problem(tmp_path):
    path = tmp_path / "x.json"
    with pytest.raises(DeepMedError, match=naming("x.json", "the thing", "not found")):
        read_json(path, "the thing")
    path.write_text('{"a": 1,\n  "b": }')
    with pytest.raises(DeepMedError, match=naming("x.json", "line 2", "column 8")):
        read_json(path, "the thing")
    path.write_bytes(b'{"a": "\xff"}')
    with pytest.raises(DeepMedError, match=naming("x.json", "cannot read the thing")):
        read_json(path, "the thing")
    path.write_text("[1, 2]")
    assert read_json(path, "the thing") == [1, 2]
    with pytest.raises(DeepMedError, match=naming("x.json", "expected a JSON object", "array")):
        read_json_object(path, "the thing")
    path.write_text('{"a": [1]}')
    assert read_json_object(path, "the thing") == {"a": [1]}
    with pytest.raises(DeepMedError, match=naming("where", "line 1")):
        parse_json("{", "where")


class Refused(DeepMedError):
    pass


def test_reader_keeps_the_callers_error_type(tmp_path):
    with pytest.raises(Refused):
        read_json_object(tmp_path / "none.json", "the job", error=Refused)


@pytest.mark.parametrize("reader, name", [
    (lambda folder: ModelCard.read_file(folder / "model_card.json"), "model_card.json"),
    (lambda folder: OnnxPipeline.read(folder), "pipeline.json"),
    (lambda folder: Plan.load(folder / "plan.json"), "plan.json"),
    (lambda folder: Dataset.load(folder), "dataset.json"),  # an nnU-Net raw folder's dataset.json
])
def test_a_json_array_where_an_object_belongs_is_one_clear_error(tmp_path, reader, name):
    (tmp_path / name).write_text("[]")
    (tmp_path / "imagesTr").mkdir()
    with pytest.raises(DeepMedError, match=naming(name, "expected a JSON object")):
        reader(tmp_path)
    (tmp_path / name).write_text("{\n\n  oops")
    with pytest.raises(DeepMedError, match=naming(name, "line 3")):
        reader(tmp_path)
