"""The remote side of a remote job (``deepmed remote worker ...``, run over ssh by the local side).

A job folder holds ``command.json`` (the deepmed arguments), ``in/`` (inputs sent), ``out/`` (results),
``progress.jsonl`` (the worker's stdout: JSON-lines events), ``stderr.log``, ``pid`` and, once the worker has
ended, ``exit_code``. The worker runs detached (its own session, no terminal, output to files), so a dropped
connection never ends it; ``follow`` streams the log from any line on, as often as asked.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from deepmed import __version__
from deepmed.errors import DeepMedError
from deepmed.utils.atomic import write_text_atomic

END_MARKER = "remote_exit"  # the last line ``follow`` writes: {"remote_exit": CODE}
STOP_FILE = "stop"


def hello() -> dict:
    import platform

    return {"version": __version__, "python": sys.version.split()[0], "platform": platform.platform(),
            "executable": sys.executable}


def prepare(workdir: str, job_id: str) -> Path:
    """Make the job's folder (``in/``, ``out/``) under the work folder; its absolute path."""
    folder = Path(workdir).expanduser().resolve() / "jobs" / job_id
    for sub in ("in", "out"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    return folder


def launch(folder: Path, arguments: list[str]) -> int:
    """Start the supervisor detached from this ssh session; its pid."""
    folder = _job_folder(folder)
    if (folder / "command.json").exists():
        raise DeepMedError(f"{folder}: this job was already started")
    write_text_atomic(folder / "command.json", json.dumps(arguments))
    with open(folder / "supervisor.log", "ab") as log:
        process = subprocess.Popen([sys.executable, "-m", "deepmed", "remote", "worker", "supervise", str(folder)],
                                   stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=folder,
                                   start_new_session=True, close_fds=True)
    return process.pid


def supervise(folder: Path) -> int:
    """Run the worker (its own process group), wait for it and record its exit code."""
    folder = _job_folder(folder)
    arguments = json.loads((folder / "command.json").read_text(encoding="utf-8"))
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONIOENCODING="utf-8")
    with open(folder / "progress.jsonl", "ab") as out, open(folder / "stderr.log", "ab") as err:
        process = subprocess.Popen([sys.executable, "-m", "deepmed", *arguments], stdin=subprocess.DEVNULL,
                                   stdout=out, stderr=err, cwd=folder, env=env, start_new_session=True)
        write_text_atomic(folder / "pid", str(process.pid))
        code = process.wait()
    write_text_atomic(folder / "exit_code", str(code))
    return 0


def follow(folder: Path, from_line: int = 0, poll_seconds: float = 0.2) -> int:
    """Write the progress log's complete lines from ``from_line`` on, following it until the worker ended;
    then its stderr and the end marker line."""
    folder = _job_folder(folder)
    log, done = folder / "progress.jsonl", folder / "exit_code"
    seen, pending = 0, b""
    position = 0
    while True:
        ended = done.exists()  # read before the log: nothing written after the exit code is missed
        if log.exists():
            with open(log, "rb") as stream:
                stream.seek(position)
                chunk = stream.read()
            position += len(chunk)
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                if seen >= from_line:
                    sys.stdout.write(line.decode("utf-8", "replace") + "\n")
                seen += 1
            sys.stdout.flush()
        if ended:
            break
        time.sleep(poll_seconds)
    if pending.strip() and seen >= from_line:
        sys.stdout.write(pending.decode("utf-8", "replace") + "\n")
    stderr = folder / "stderr.log"
    if stderr.exists():
        sys.stderr.write(stderr.read_text(encoding="utf-8", errors="replace"))
        sys.stderr.flush()
    sys.stdout.write(json.dumps({END_MARKER: int(done.read_text().strip())}) + "\n")
    sys.stdout.flush()
    return 0


def stop(folder: Path) -> None:
    """Ask the worker to checkpoint and end (its ``--stop-file``)."""
    folder = _job_folder(folder)
    (folder / STOP_FILE).write_text("stop\n")


def cancel(folder: Path) -> bool:
    """End the worker and everything it started at once; False when it had already ended."""
    folder = _job_folder(folder)
    if (folder / "exit_code").exists() or not (folder / "pid").exists():
        return False
    try:
        os.killpg(int((folder / "pid").read_text()), signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _job_folder(folder) -> Path:
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise DeepMedError(f"{folder}: no such remote job folder")
    return folder


def outputs(folder: Path, candidates: list[str]) -> list[str]:
    """Those of ``candidates`` (paths in the job folder) that exist."""
    folder = _job_folder(folder)
    return [name for name in candidates if (folder / name).exists()]
