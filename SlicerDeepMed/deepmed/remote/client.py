"""The local side of a remote job: send inputs, start the detached worker, stream its progress, forward Stop,
bring the results back. A job file (JSON) keeps what ``attach`` / ``stop`` / ``cancel`` need later.

Progress lines are passed through on stdout unchanged (paths of the remote job folder turned into the local
paths they are brought back to), so a caller sees exactly a local run's JSON-lines stream. When the
connection drops, a ``remote_disconnected`` event says so and the command ends with EXIT_DISCONNECTED: the
remote worker goes on, ``deepmed remote attach JOB_FILE`` picks the stream up where it left.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

from deepmed import __version__
from deepmed.remote.host import RemoteError, RemoteHost
from deepmed.remote.staging import plan
from deepmed.remote.worker import END_MARKER
from deepmed.utils.atomic import write_text_atomic

EXIT_DISCONNECTED = 75  # EX_TEMPFAIL: try again (attach)


@dataclass
class RemoteJob:
    """What the local side remembers of a remote job (saved as JSON in ``job_file``)."""

    host: RemoteHost
    job_id: str
    folder: str                                                   # the remote job folder (absolute)
    outputs: list[tuple[str, str]] = field(default_factory=list)  # (path in the job folder, local path)
    stop_file: str | None = None
    lines_seen: int = 0
    job_file: str = ""

    def save(self) -> None:
        data = {**asdict(self), "host": self.host.to_json()}
        write_text_atomic(Path(self.job_file), json.dumps(data, indent=2))

    @classmethod
    def load(cls, path) -> RemoteJob:
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            data["host"] = RemoteHost.from_json(data["host"])
            data["outputs"] = [tuple(pair) for pair in data.get("outputs", [])]
            data["job_file"] = str(path)
            return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})
        except FileNotFoundError:
            raise RemoteError(f"{path}: no such remote job file") from None
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise RemoteError(f"{path}: not a remote job file ({type(exc).__name__}: {exc})") from None


def default_job_file(job_id: str) -> Path:
    return Path.home() / ".deepmed" / "remote-jobs" / f"{job_id}.json"


def submit(host: RemoteHost, arguments: list[str], job_file: Path | None = None) -> RemoteJob:
    """Check the remote engine's version, send the inputs and start the worker there (detached)."""
    host.check_version(__version__)
    job_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:8]
    job_file = Path(job_file) if job_file else default_job_file(job_id)
    job_file.parent.mkdir(parents=True, exist_ok=True)
    folder = json.loads(host.run("prepare", host.workdir, job_id).strip().splitlines()[-1])["folder"]
    with tempfile.TemporaryDirectory(prefix="deepmed-stage-") as stage:
        staged = plan([str(a) for a in arguments], Path(stage).resolve())
        entries = [str(p) for p in sorted(staged.stage.iterdir())]
        copy(host, entries, host.remote_path(folder + "/"), "send the inputs")
    job = RemoteJob(host=host, job_id=job_id, folder=folder, outputs=staged.outputs, stop_file=staged.stop_file,
                    job_file=str(job_file))
    job.save()
    host.run("launch", folder, "--", *staged.arguments)
    return job


def follow(job: RemoteJob, out=None, from_line: int | None = None) -> int:
    """Stream the job's progress to ``out`` until the worker ends, forward Stop, fetch the results; the
    worker's exit code, or EXIT_DISCONNECTED when the connection dropped first."""
    out = out or sys.stdout
    start = job.lines_seen if from_line is None else from_line
    command = job.host.ssh_command(job.host.engine_command("follow", job.folder, "--from-line", start))
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                               text=True, encoding="utf-8", errors="replace", bufsize=1)
    stderr: list[str] = []
    threading.Thread(target=lambda: stderr.extend(process.stderr), daemon=True).start()
    watcher = _StopWatcher(job, process)
    watcher.start()
    code, seen = None, start
    try:
        for line in process.stdout:
            record = _json(line)
            if isinstance(record, dict) and END_MARKER in record:
                code = int(record[END_MARKER])
                continue
            out.write(json.dumps(_local_paths(record, job)) + "\n" if isinstance(record, dict) else line)
            out.flush()
            seen += 1
        process.wait()
    finally:
        watcher.done = True
        job.lines_seen = seen
        job.save()
    sys.stderr.write("".join(stderr))
    if code is None:  # the connection ended before the worker did
        reason = job.host.explain(process.returncode, "".join(stderr)) if process.returncode else "connection closed"
        out.write(json.dumps({"event": "remote_disconnected", "time": round(time.time(), 3), "host":
                              job.host.destination, "job_file": job.job_file, "lines": seen, "message": reason}) + "\n")
        out.flush()
        sys.stderr.write(f"deepmed: error: connection to {job.host.destination} lost ({reason}); the remote run goes "
                         f"on: deepmed remote attach {job.job_file}\n")
        return EXIT_DISCONNECTED
    fetch_results(job)
    return code if 0 <= code < 256 else 1


def fetch_results(job: RemoteJob) -> None:
    """Bring each output that exists remotely to its local path (a folder's files merged into the local one)."""
    listing = json.loads(job.host.run("outputs", job.folder, *[remote for remote, _ in job.outputs]).strip() or "[]")
    for remote, local in job.outputs:
        if remote not in listing:
            continue
        local = Path(local)
        local.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".deepmed-fetch-", dir=local.parent) as landing:
            copy(job.host, [job.host.remote_path(f"{job.folder}/{remote}")], landing + "/", "bring the results back")
            _merge(Path(landing) / Path(remote).name, local)


def request_stop(job: RemoteJob) -> None:
    job.host.run("stop", job.folder, timeout=60)


def cancel(job: RemoteJob) -> bool:
    return json.loads(job.host.run("cancel", job.folder, timeout=60).strip() or "false")


def copy(host: RemoteHost, sources: list[str], target: str, what: str) -> None:
    """Copy with rsync, falling back to scp when rsync fails (e.g. not installed on the remote machine)."""
    if not sources:
        return
    commands = [host.copy_command(sources, target, rsync=True), host.copy_command(sources, target, rsync=False)]
    for command in commands if commands[0][0] == "rsync" else commands[1:]:
        try:
            host.check_call(command, timeout=24 * 3600)
            return
        except RemoteError as error:
            if command[0] != "rsync":
                raise RemoteError(f"could not {what}: {error}") from None


def _merge(source: Path, target: Path) -> None:
    if source.is_dir() and target.is_dir():
        for entry in source.iterdir():
            _merge(entry, target / entry.name)
        return
    if target.is_dir() and not target.is_symlink():
        shutil.rmtree(target)
    elif target.exists() or target.is_symlink():
        target.unlink()
    shutil.move(str(source), str(target))


def _local_paths(record, job: RemoteJob):
    """Remote job-folder paths in an event's values turned into the local paths they are brought back to."""
    if isinstance(record, dict):
        return {key: _local_paths(value, job) for key, value in record.items()}
    if isinstance(record, list):
        return [_local_paths(value, job) for value in record]
    if isinstance(record, str):
        for remote, local in job.outputs:
            for prefix in (f"{job.folder}/{remote}", remote):
                if record == prefix or record.startswith(prefix + "/"):
                    return local + record[len(prefix):]
    return record


def _json(line: str):
    text = line.strip()
    if not text.startswith("{"):
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return None


class _StopWatcher(threading.Thread):
    """Forward the local stop file (the panel's Stop) to the remote worker, once."""

    def __init__(self, job: RemoteJob, process):
        super().__init__(daemon=True)
        self.job, self.process, self.done = job, process, False

    def run(self):
        if not self.job.stop_file:
            return
        while not self.done and self.process.poll() is None:
            if Path(self.job.stop_file).exists():
                try:
                    request_stop(self.job)
                except RemoteError as error:
                    sys.stderr.write(f"deepmed: could not forward Stop: {error}\n")
                return
            time.sleep(0.3)
