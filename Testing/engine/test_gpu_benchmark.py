"""The GPU benchmark degrades to one clear line without CUDA; the CPU-levers benchmark refuses to measure bf16
emulation; the utilisation sampler's summary reads its samples."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BENCHMARKS = REPO / "benchmarks"
NO_CUDA = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "DEEPMED_PYTHON": sys.executable,
           "PYTHONPATH": os.pathsep.join([str(REPO / "SlicerDeepMed"), os.environ.get("PYTHONPATH", "")])}


def _run(command: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=REPO, env=NO_CUDA, capture_output=True, text=True, timeout=120)


def test_gpu_script_without_cuda_says_so_in_one_line_and_exits_2():
    done = _run(["bash", str(BENCHMARKS / "gpu.sh")])
    output = (done.stdout + done.stderr).strip().splitlines()
    assert done.returncode == 2
    assert len(output) == 1 and output[0].startswith("no CUDA GPU:")


@pytest.mark.parametrize("script", ["bench_gpu_train.py", "bench_large_ct.py"])
def test_python_benchmarks_asked_for_cuda_without_it_exit_2_without_traceback(script):
    done = _run([sys.executable, str(BENCHMARKS / script), "--device", "cuda"])
    assert done.returncode == 2
    assert "no CUDA GPU:" in done.stderr and "Traceback" not in done.stderr


def test_sampler_summary_reports_mean_and_max_utilisation(tmp_path):
    sys.path.insert(0, str(BENCHMARKS))
    from gpu_sampler import summary

    samples = tmp_path / "gpu.csv"
    samples.write_text("20,1000\n80,3000\nnot a sample\n")
    text = summary(samples)
    assert "mean 50%" in text and "max 80%" in text and "3,000 MiB" in text and "2 samples" in text
    assert summary(tmp_path / "missing.csv").endswith("no samples")


def test_cpu_levers_do_not_measure_bf16_emulation():
    sys.path.insert(0, str(BENCHMARKS))
    from bench_cpu_levers import Lever, levers, not_applicable

    bf16 = [lever for lever in levers(2) if lever.precision == "bfloat16"]
    assert bf16, "the table has bf16 rows"
    assert all("not supported here" in not_applicable(lever, "engine", bf16_native=False) for lever in bf16)
    assert all(not_applicable(lever, "engine", bf16_native=True) is None for lever in bf16)
    assert not_applicable(Lever("x", "batch", sw_batch=4), "nnunet", bf16_native=True).startswith("n/a")
