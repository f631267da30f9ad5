"""Background worker processes: JSON-lines events, errors, crashes, Stop and Cancel of the whole tree."""

import os
import sys
import textwrap
import time
import types
from pathlib import Path

import pytest
from naming import names, naming

from DeepMedLib import Dependencies
from DeepMedLib.BackgroundJob import CANCELLED, FAILED, STOPPED, SUCCEEDED, BackgroundJob
from DeepMedLib.EngineCommand import engineCommand, engineEnvironment, engineRoot

REPO = Path(__file__).resolve().parents[2]


def pythonJob(code: str, **kwargs) -> BackgroundJob:
    return BackgroundJob([sys.executable, "-c", textwrap.dedent(code)], **kwargs).start()


def test_events_arrive_in_order_and_logs_are_kept_apart():
    job = pythonJob("""
        import json, sys
        for i in range(3):
            print(json.dumps({"event": "iteration", "iteration": i}), flush=True)
        print("a plain line", flush=True)
        print("warning: something", file=sys.stderr, flush=True)
    """)
    received, logs = [], []
    job.eventReceived.connect(received.append)
    job.logReceived.connect(logs.append)
    result = job.wait(timeout=60)
    assert result.status == SUCCEEDED and result.returnCode == 0
    assert [e["iteration"] for e in received] == [0, 1, 2]
    assert sorted(logs) == ["a plain line", "warning: something"]


def test_poll_never_blocks_while_the_worker_is_busy():
    job = pythonJob("import time; time.sleep(30)")
    try:
        started = time.perf_counter()
        for _ in range(20):
            assert job.poll() is True
        assert time.perf_counter() - started < 1.0
    finally:
        job.cancel()
        assert job.wait(timeout=30).status == CANCELLED


def test_engine_user_error_becomes_the_message(tmp_path):
    job = BackgroundJob(engineCommand("infer", "--model", tmp_path / "nope", tmp_path / "ct.nii.gz", "-o",
                                      tmp_path / "out.nii.gz"), env=engineEnvironment(), name="inference").start()
    result = job.wait(timeout=120)
    assert result.status == FAILED and result.returnCode == 2
    assert names(result.errorMessage, str(tmp_path / "nope"))
    assert "Traceback" not in result.errorMessage


def test_a_crashing_worker_is_reported_not_fatal():
    job = pythonJob("import os; os.abort()", name="training")
    result = job.wait(timeout=60)
    assert result.status == FAILED
    assert names(result.errorMessage, "training", "SIGABRT") and "\n" not in result.errorMessage


def test_a_worker_that_cannot_start_ends_as_a_failed_job_not_an_exception(tmp_path):
    """No PythonSlicer, a vanished working folder: start() returns, poll() reports the failure once."""
    finished = []
    for command, cwd in (([str(tmp_path / "no-such-python"), "-m", "deepmed"], None),
                         ([sys.executable, "-c", "pass"], str(tmp_path / "gone"))):
        job = BackgroundJob(command, cwd=cwd, name="catalogue")
        job.finished.connect(finished.append)
        assert job.start() is job and job.running
        job.requestStop()
        job.cancel()  # neither raises on a worker that never started
        assert job.poll() is False and not job.running
        assert job.result.status == FAILED and job.result.errorMessage.startswith("catalogue: could not start")
        assert job.wait(timeout=1) is job.result
    assert len(finished) == 2


def test_an_unexpected_exception_shows_its_last_line():
    result = pythonJob("raise RuntimeError('out of memory on the GPU')", name="inference").wait(timeout=60)
    assert result.status == FAILED
    assert result.errorMessage.endswith("RuntimeError: out of memory on the GPU")


def test_cancel_kills_the_whole_process_tree():
    job = pythonJob("""
        import json, subprocess, sys, time
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
        print(json.dumps({"event": "child", "pid": child.pid}), flush=True)
        time.sleep(120)
    """)
    deadline = time.time() + 30
    while not job.events and time.time() < deadline:
        job.poll()
        time.sleep(0.05)
    childPid = job.events[0]["pid"]
    job.cancel()
    assert job.wait(timeout=30).status == CANCELLED
    deadline = time.time() + 10
    while time.time() < deadline and _alive(childPid):
        time.sleep(0.1)
    assert not _alive(childPid)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/status")
    return not (status.exists() and "zombie" in status.read_text())


def test_stop_creates_the_stop_file_and_waits_for_the_worker(tmp_path):
    stopFile = tmp_path / "stop"
    job = pythonJob(f"""
        import json, os, time
        while not os.path.exists({str(stopFile)!r}):
            time.sleep(0.05)
        print(json.dumps({{"event": "stopped", "epoch": 0}}), flush=True)
        raise SystemExit(130)
    """, stopFile=stopFile)
    job.requestStop()
    result = job.wait(timeout=60)
    assert result.status == STOPPED and result.returnCode == 130
    assert not stopFile.exists()  # cleaned up for the next run


def test_stop_escalates_to_cancel_after_the_grace_period(tmp_path):
    job = pythonJob("import time; time.sleep(120)", stopFile=tmp_path / "stop", stopGraceSeconds=0.5)
    job.requestStop()
    assert job.wait(timeout=30).status == CANCELLED


def test_engine_runs_with_this_environment():
    assert (engineRoot() / "deepmed" / "__init__.py").is_file()
    result = BackgroundJob(engineCommand("--version"), env=engineEnvironment()).start().wait(timeout=60)
    assert result.succeeded


# ---- dependencies ------------------------------------------------------------------------------------
def test_missing_packages_are_named_and_installed_with_slicer_packages_pinned():
    installed = {"torch", "scipy", "tqdm", "matplotlib", "yaml", "jsonschema", "nibabel", "einops", "skimage"}
    calls = []

    def pipInstall(arguments):
        calls.append(list(arguments))
        constraints = Path(arguments[arguments.index("-c") + 1]).read_text().split()
        assert any(line.startswith("numpy==") for line in constraints)
        assert any(line.startswith("SimpleITK==") for line in constraints)
        assert any(line.startswith("torch==") for line in constraints)  # an installed torch stays
        installed.update({"monai", "safetensors"})

    available = installed.__contains__
    assert Dependencies.missingPackages(available) == ["monai==1.6.1", "safetensors==0.8.0"]
    assert Dependencies.describeMissing(available).startswith("Missing Python packages: monai, safetensors.")
    done = Dependencies.installEngineDependencies(pipInstall, confirm=lambda message: True, available=available)
    assert done == ["monai==1.6.1", "safetensors==0.8.0"]
    assert calls[0][:2] == ["monai==1.6.1", "safetensors==0.8.0"] and not Path(calls[0][-1]).exists()
    assert Dependencies.describeMissing(available) == ""


def test_declining_installs_nothing():
    calls = []
    with pytest.raises(Dependencies.DependencyError, match="declined: monai"):
        Dependencies.installEngineDependencies(calls.append, confirm=lambda m: False,
                                               available=lambda name: name != "monai")
    assert calls == []


def test_torch_is_installed_by_light_the_torch_in_another_process_never_imported_here():
    """As the PyTorch extension installs it (light-the-torch picks the CUDA build), but through
    ``slicer.util._executePythonModule`` (a PythonSlicer process) and without PyTorchUtils' functions,
    which import torch into Slicer."""
    installed, ran, pipped, asked = set(), [], [], []

    def execute(module, arguments):
        ran.append((module, arguments))
        installed.add("torch")

    def pip(requirement):
        pipped.append(requirement)
        installed.add("light_the_torch")

    assert Dependencies.installTorch(execute, pip, confirm=lambda m: asked.append(m) or True,
                                     available=installed.__contains__) is True
    assert ran == [("light_the_torch", ["install", "torch>=2.8"])]  # what monai 1.6.1 requires
    assert pipped == ["light-the-torch>=0.5"] and len(asked) == 1
    assert Dependencies.installTorch(execute, pip, available=installed.__contains__) is True
    assert len(ran) == 1  # already there: nothing runs
    assert Dependencies.installTorch(execute, pip, confirm=lambda m: False, available=lambda n: False) is False
    assert len(ran) == 1


def test_torch_missing_after_light_the_torch_is_one_clear_error():
    with pytest.raises(Dependencies.DependencyError, match="still missing"):
        Dependencies.installTorch(lambda m, a: None, lambda r: None, available=lambda name: False)


def test_pins_match_the_tested_environment():
    pinned = dict(line.lower().split("==") for line in (REPO / "requirements" / "constraints.txt").read_text().split()
                  if "==" in line)
    for requirement, _ in Dependencies.ENGINE_PACKAGES.values():
        name, version = requirement.split("==")
        assert pinned[name.lower()] == version, f"{requirement} differs from requirements/constraints.txt"


def test_python_floor_follows_the_pins_installed_metadata():
    """The oldest Python each pin supports is its wheel's Requires-Python (read from the tested venv)."""
    import importlib.metadata

    for requirement, minimum in Dependencies.ENGINE_PACKAGES.values():
        name = requirement.split("==")[0]
        floor = importlib.metadata.metadata(name)["Requires-Python"].replace(">=", "").split(",")[0]
        assert minimum == tuple(int(part) for part in floor.split(".")[:2]), requirement
    monai = importlib.metadata.requires("monai")
    assert any(r.replace(" ", "").startswith(f"torch>={Dependencies.MINIMUM_TORCH}") for r in monai)


def test_an_unsupported_python_is_told_in_one_line_before_pip_runs():
    calls = []
    message = Dependencies.unsupportedPython((3, 9))  # Slicer 5.6 / 5.8
    assert message == ("DeepMed needs Slicer 5.10 or newer (Python 3.11+); this Slicer runs Python 3.9. Install a "
                       "newer Slicer from download.slicer.org.")
    assert Dependencies.describeMissing(lambda name: False, version=(3, 9)) == message
    with pytest.raises(Dependencies.DependencyError, match=naming("5.10")):
        Dependencies.installEngineDependencies(calls.append, available=lambda name: False, version=(3, 9))
    assert calls == [] and Dependencies.unsupportedPython((3, 12)) == ""


def test_an_old_torch_is_never_replaced_by_pip():
    calls = []
    oldTorch = {"torch": "2.4.1+cu121", "numpy": "1.26.4", "SimpleITK": "2.3.1"}.__getitem__

    def version(name):
        try:
            return oldTorch(name)
        except KeyError:
            raise importlib.metadata.PackageNotFoundError(name) from None

    import importlib.metadata

    assert names(Dependencies.torchTooOld(version), "2.4.1+cu121", "2.8")
    with pytest.raises(Dependencies.DependencyError, match="PyTorch Utils module"):
        Dependencies.installEngineDependencies(calls.append, available=lambda name: name != "monai",
                                               installedVersion=version)
    assert calls == []
    assert "torch==2.4.1+cu121" in Dependencies.keepInstalledConstraints(version)


def test_workers_open_no_console_window_on_windows():
    from DeepMedLib.BackgroundJob import processOptions

    class FakeStartupInfo:
        dwFlags, wShowWindow = 0, 1

    fake = types.SimpleNamespace(STARTUPINFO=FakeStartupInfo, STARTF_USESHOWWINDOW=1, CREATE_NEW_PROCESS_GROUP=0x200,
                                 CREATE_NO_WINDOW=0x08000000)
    options = processOptions("win32", fake)
    assert options["startupinfo"].dwFlags & 1 and options["startupinfo"].wShowWindow == 0  # SW_HIDE
    assert options["creationflags"] == 0x200 | 0x08000000
    assert processOptions("linux") == {"start_new_session": True}


def test_cancel_runs_the_jobs_cancel_hook_before_ending_the_worker():
    """A remote job's hook ends the remote worker; it runs while the local one is still alive."""
    job = BackgroundJob([sys.executable, "-c", "import time; time.sleep(60)"], name="sleeper").start()
    seen = []
    job.onCancel = lambda: seen.append(job.process.poll())
    job.cancel()
    assert job.wait(timeout=20).status == CANCELLED and seen == [None]
