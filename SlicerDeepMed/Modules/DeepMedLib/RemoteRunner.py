"""Workers on a remote machine: the same BackgroundJob and JSON-lines protocol, through ``deepmed remote``.

``RemoteEngineRunner(host).job(name, "train", ...)`` runs ``deepmed remote run HOST -- train ...`` locally;
that process sends the inputs over ssh, starts the worker there (detached), streams its progress, forwards
the stop file and brings the results back to the paths given. Cancel also ends the remote worker. After a
dropped connection (a ``remote_disconnected`` event) ``attachJob(jobFile)`` follows the same run again.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from DeepMedLib.BackgroundJob import BackgroundJob, processOptions
from DeepMedLib.EngineCommand import engineCommand, engineEnvironment

DISCONNECTED = "remote_disconnected"
HOST_FIELDS = ("host", "user", "port", "python", "workdir", "ssh_config", "identity")


def hostArguments(host: dict) -> list[str]:
    """``deepmed remote`` options of a host (a RemoteHost as a dict); empty values are left to ssh."""
    arguments = []
    for key in HOST_FIELDS:
        value = host.get(key)
        if value not in (None, "", 0):
            arguments += ["--" + key.replace("_", "-"), str(value)]
    return arguments


def disconnection(result) -> dict | None:
    """The ``remote_disconnected`` event of a finished job (its ``job_file`` reattaches), or None."""
    found = [e for e in getattr(result, "events", []) if e.get("event") == DISCONNECTED]
    return found[-1] if found else None


class RemoteEngineRunner:
    """Makes workers that run on ``host`` (``{"host": ..., "user": ..., "python": ..., "workdir": ...}``)."""

    def __init__(self, host: dict, command=None, environment=None):
        self.host = dict(host)
        self.command = command or engineCommand
        self.environment = environment or engineEnvironment

    def job(self, name: str, *arguments, stopFile=None, env: dict | None = None) -> BackgroundJob:
        jobFile = Path(tempfile.mkdtemp(prefix="deepmed-remote-")) / "job.json"
        command = self.command("remote", "run", *hostArguments(self.host), "--job-file", jobFile, "--", *arguments)
        return self._job(command, name, jobFile, stopFile, env)

    def start(self, name: str, *arguments, stopFile=None, env: dict | None = None) -> BackgroundJob:
        return self.job(name, *arguments, stopFile=stopFile, env=env).start()

    def attachJob(self, jobFile, name: str, stopFile=None) -> BackgroundJob:
        """Follow a remote run again from its first progress line (the panel rebuilds its state from them)."""
        command = self.command("remote", "attach", jobFile, "--from-line", 0)
        return self._job(command, name, Path(jobFile), stopFile, None)

    def _job(self, command, name, jobFile: Path, stopFile, env) -> BackgroundJob:
        job = BackgroundJob(command, env=self.environment(env), stopFile=stopFile,
                            name=f"{name} on {self.host['host']}")
        job.remoteJobFile = jobFile
        cancelCommand = self.command("remote", "cancel", jobFile)
        environment = self.environment(env)
        job.onCancel = lambda: subprocess.Popen(cancelCommand, env=environment, stdin=subprocess.DEVNULL,
                                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                                **processOptions())
        return job
