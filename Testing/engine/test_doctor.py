"""``deepmed doctor``: one JSON object the Slicer panel parses; missing packages and devices are problems."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib

import pytest
from conftest import REPO
from naming import names

from deepmed import doctor
from deepmed.cli.main import main

KEYS = {"python", "platform", "packages", "torch_cuda", "devices", "check", "problems"}


def _doctor_subprocess(*args: str, prelude: str = "pass") -> subprocess.CompletedProcess:
    code = f"import sys; {prelude}; from deepmed.cli.main import main; sys.exit(main({list(args)!r}))"
    return subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=300)


def test_json_shape_on_cpu():
    result = _doctor_subprocess("doctor", "--json", "--device", "cpu")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)  # exactly one JSON object on stdout
    assert set(report) == KEYS
    assert report["python"] == ".".join(map(str, sys.version_info[:3]))
    assert {"torch", "monai", "SimpleITK", "numpy"} <= set(report["packages"])
    assert all(isinstance(v, str) for v in report["packages"].values())
    assert report["devices"][0]["type"] == "cpu" and report["devices"][0]["name"]
    check = report["check"]
    assert check["device"] == "cpu" and check["ok"] is True and check["seconds"] >= 0
    assert check["message"] == "forward/backward of a small 3D UNet on cpu: ok"
    assert report["problems"] == []


def test_missing_monai_is_a_problem_with_a_fix():
    result = _doctor_subprocess("doctor", "--json", "--device", "cpu", prelude="sys.modules['monai'] = None")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    report = json.loads(result.stdout)
    assert report["packages"]["monai"] is None and report["check"]["ok"] is False
    assert any(names(p["what"], "monai") and p["fix"] == "pip install 'monai>=1.4,<1.7'" for p in report["problems"])
    text = _doctor_subprocess("doctor", "--device", "cpu", prelude="sys.modules['monai'] = None")
    assert text.returncode == 1 and any(names(line, "monai", "MISSING") for line in text.stdout.splitlines())
    assert "pip install 'monai>=1.4,<1.7'" in text.stdout


def test_cuda_without_cuda_is_a_problem(capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert main(["doctor", "--json", "--device", "cuda"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["check"] == {"device": "cuda", "ok": False, "seconds": None,
                               "message": "device cuda is not available"}
    assert names(report["problems"][0]["what"], "cuda")


def test_too_old_versions_are_problems(monkeypatch):
    real = doctor.metadata.version
    monkeypatch.setattr(doctor.metadata, "version", lambda d: {"monai": "1.3.2", "torch": "2.3.1"}.get(d) or real(d))
    monkeypatch.setattr(doctor, "_monai_torch_requirement", lambda: ">=2.8.0")
    monkeypatch.setattr(doctor, "in_slicer", lambda: False)  # outside Slicer the fix is a pip command
    problems = []
    versions, _ = doctor._packages(problems)
    assert versions["monai"] == "1.3.2"
    assert any(names(p["what"], "monai 1.3.2", ">=1.4,<1.7") and p["fix"] == "pip install 'monai>=1.4,<1.7'"
               for p in problems)
    assert any(names(p["what"], "monai 1.3.2", "torch>=2.8.0", "2.3.1") and p["fix"] == "pip install 'torch>=2.8.0'"
               for p in problems)
    monkeypatch.setattr(doctor, "in_slicer", lambda: True)
    assert doctor._fix("torch", ">=2.8.0") == doctor.SLICER_TORCH_FIX


@pytest.mark.parametrize("version, spec, ok", [
    ("2.13.0+cpu", ">=2.2", True), ("2.1.2", ">=2.2", False), ("1.6.1", ">=1.4,<1.7", True),
    ("1.7.0", ">=1.4,<1.7", False), ("1.4", ">=1.4.0", True), ("2.0.0rc1", ">=2.0", True)])
def test_version_comparison(version, spec, ok):
    assert doctor.satisfies(version, spec) is ok


def test_requirements_match_pyproject():
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    assert {dist: spec for dist, (_, spec) in doctor.REQUIREMENTS.items()} == {
        d.split(">")[0].split("<")[0]: d[len(d.split(">")[0].split("<")[0]):] for d in deps}


def test_text_report_is_a_few_aligned_lines():
    text = doctor.format_report(doctor.run_checks("cpu"))
    assert text.splitlines()[-1] == "ready"
    assert all(line[12] == " " for line in text.splitlines()[:-1])
