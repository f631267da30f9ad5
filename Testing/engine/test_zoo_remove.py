"""``deepmed zoo remove`` and library versions: ``NAME`` removes every version and ``NAME.versions.json``;
``NAME@N`` removes that version only and refuses the promoted one."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from naming import naming

from deepmed.errors import DeepMedError
from deepmed.zoo.package import remove_model
from deepmed.zoo.versions import ModelVersions, read_versions, record_path, write_versions


@pytest.fixture
def versioned(tmp_path):
    """'liver' in versions 1, 2 and 3 (2 promoted), and an unrelated 'liver2'."""
    for folder in ("liver", "liver@2", "liver@3", "liver2"):
        (tmp_path / folder).mkdir()
    write_versions(tmp_path, ModelVersions("liver", promoted=2, held_out=("c1",)))
    return tmp_path


def test_removing_one_version_keeps_the_others_and_refuses_the_promoted_one(versioned):
    with pytest.raises(DeepMedError, match=naming("liver@2", "promoted", "zoo remove liver")):
        remove_model("liver@2", versioned)
    assert (versioned / "liver@2").is_dir()
    assert remove_model("liver@3", versioned) == [versioned / "liver@3"]
    assert remove_model("liver@1", versioned) == [versioned / "liver"]
    assert sorted(p.name for p in versioned.iterdir()) == ["liver.versions.json", "liver2", "liver@2"]
    assert read_versions(versioned, "liver").promoted == 2
    with pytest.raises(DeepMedError, match=naming("liver@3", "not installed", "liver@2")):
        remove_model("liver@3", versioned)
    assert remove_model("liver@2", versioned) == [versioned / "liver@2"]  # the last one: the record goes too
    assert sorted(p.name for p in versioned.iterdir()) == ["liver2"]


def test_removing_the_name_removes_every_version_and_the_record(versioned):
    result = subprocess.run([sys.executable, "-m", "deepmed", "zoo", "remove", "liver"], capture_output=True,
                            text=True, env={**os.environ, "DEEPMED_LIBRARY": str(versioned)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("removed") == 3
    assert sorted(p.name for p in versioned.iterdir()) == ["liver2"]
    assert not record_path(versioned, "liver").exists()
    result = subprocess.run([sys.executable, "-m", "deepmed", "zoo", "remove", "liver@2"], capture_output=True,
                            text=True, env={**os.environ, "DEEPMED_LIBRARY": str(versioned)})
    assert result.returncode == 2 and "Traceback" not in result.stderr and "liver@2" in result.stderr
