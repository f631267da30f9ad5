"""How the modules start the engine: ``PythonSlicer -m deepmed ...`` with the engine on its path.

The engine package ``deepmed`` ships beside the modules (Slicer's qt-scripted-modules folder). Outside
Slicer (tests, a developer's checkout) the current interpreter runs it the same way.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path


class EngineNotFound(RuntimeError):
    pass


def pythonExecutable() -> str:
    """Slicer's ``PythonSlicer`` launcher when running inside Slicer, else this interpreter."""
    executableDir = Path(sys.executable).parent
    for candidate in (executableDir / "PythonSlicer", executableDir / "PythonSlicer.exe"):
        if candidate.is_file():
            return str(candidate)
    return shutil.which("PythonSlicer") or sys.executable


def engineRoot() -> Path:
    """The folder holding the ``deepmed`` package (found without importing torch)."""
    spec = importlib.util.find_spec("deepmed")
    if spec is None or not spec.submodule_search_locations:
        raise EngineNotFound("the deepmed engine package is not installed beside the DeepMed modules; "
                             "reinstall the DeepMed extension (or 'pip install -e .' in a checkout)")
    return Path(next(iter(spec.submodule_search_locations))).parent


def engineCommand(*arguments) -> list[str]:
    return [pythonExecutable(), "-m", "deepmed", *[str(a) for a in arguments]]


class EngineRunner:
    """Makes engine workers: ``runner.job("dataset check", "dataset", "check", path)`` -> a BackgroundJob
    (not started). Logics receive one, so tests can give them another command or record what they run."""

    def __init__(self, command=None, environment=None, jobClass=None):
        from DeepMedLib.BackgroundJob import BackgroundJob

        self.command = command or engineCommand
        self.environment = environment or engineEnvironment
        self.jobClass = jobClass or BackgroundJob

    def job(self, name: str, *arguments, stopFile=None, env: dict | None = None):
        return self.jobClass(self.command(*arguments), env=self.environment(env), stopFile=stopFile, name=name)

    def start(self, name: str, *arguments, stopFile=None, env: dict | None = None):
        return self.job(name, *arguments, stopFile=stopFile, env=env).start()


def engineEnvironment(extra: dict | None = None) -> dict:
    """This process's environment plus the engine on ``PYTHONPATH`` and unbuffered UTF-8 output."""
    env = dict(os.environ)
    paths = [str(engineRoot())] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONIOENCODING"] = "utf-8"
    env.update({key: str(value) for key, value in (extra or {}).items()})
    return env
