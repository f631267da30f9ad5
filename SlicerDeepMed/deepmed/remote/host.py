"""A remote machine reached with the user's own ``ssh`` (keys, agent, ``~/.ssh/config``); no password is stored.

Every command runs with ``BatchMode=yes``, so nothing ever waits for a password prompt: a host that needs
one fails on one line instead.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

from deepmed.errors import DeepMedError

SSH_OPTIONS = ("-o", "BatchMode=yes", "-o", "ConnectTimeout=15", "-o", "ServerAliveInterval=5",
               "-o", "ServerAliveCountMax=3")
DEFAULT_WORKDIR = "~/deepmed-remote"


class RemoteError(DeepMedError):
    """The remote machine cannot be reached or used (one line, naming the host)."""


@dataclass(frozen=True)
class RemoteHost:
    """Where and how the worker runs. ``python``: the remote command that starts Python with deepmed
    (e.g. ``/opt/venv/bin/python``, ``conda run -n deepmed python``); ``workdir``: the remote folder that
    receives each job's inputs, log and results; ``ssh_config`` / ``identity``: passed to ssh only when set."""

    host: str
    user: str = ""
    port: int = 0
    python: str = "python3"
    workdir: str = DEFAULT_WORKDIR
    ssh_config: str = ""
    identity: str = ""

    def __post_init__(self):
        if not self.host.strip() or any(c.isspace() for c in self.host):
            raise RemoteError(f"remote host: expected a host name or ~/.ssh/config alias, got {self.host!r}")
        if not 0 <= int(self.port) <= 65535:
            raise RemoteError(f"remote port: expected 1-65535 (0: ssh's default), got {self.port}")
        if not self.python.strip():
            raise RemoteError("remote python: expected the command that starts Python with deepmed, got nothing")

    @property
    def destination(self) -> str:
        return f"{self.user}@{self.host}" if self.user else self.host

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> RemoteHost:
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)

    # ---- command lines ---------------------------------------------------------------------------
    def _options(self, port_flag: str) -> list[str]:
        options = list(SSH_OPTIONS)
        if self.ssh_config:
            options += ["-F", str(Path(self.ssh_config).expanduser())]
        if self.identity:
            options += ["-i", str(Path(self.identity).expanduser())]
        if self.port:
            options += [port_flag, str(self.port)]
        return options

    def ssh_command(self, remote_command: str) -> list[str]:
        """``ssh ... destination remote_command`` (the remote command is one shell string)."""
        return [ssh_program("ssh"), *self._options("-p"), self.destination, remote_command]

    def engine_command(self, *arguments) -> str:
        """The remote shell command running ``deepmed remote worker ARGUMENTS`` with the remote Python."""
        return f"{self.python} -m deepmed remote worker " + " ".join(shlex.quote(str(a)) for a in arguments)

    def copy_command(self, sources: list[str], target: str, rsync: bool = True) -> list[str]:
        """rsync when asked for and installed here (only what changed), else scp; remote paths as ``host:path``
        (use ``remote_path``). Symbolic links are copied as the files they point to."""
        if rsync and shutil.which("rsync"):
            shell = " ".join(shlex.quote(part) for part in [ssh_program("ssh"), *self._options("-p")])
            return ["rsync", "-rLt", "--partial", "-e", shell, *sources, target]
        return [ssh_program("scp"), "-r", "-p", *self._options("-P"), *sources, target]

    def remote_path(self, path: str) -> str:
        return f"{self.destination}:{path}"

    # ---- running ---------------------------------------------------------------------------------
    def run(self, *worker_arguments, timeout: float = 120) -> str:
        """Run one short ``deepmed remote worker`` command there; its stdout, or RemoteError on one line."""
        return self.check_call(self.ssh_command(self.engine_command(*worker_arguments)), timeout=timeout)

    def check_call(self, command: list[str], timeout: float = 120) -> str:
        try:
            done = subprocess.run(command, capture_output=True, text=True, encoding="utf-8", errors="replace",
                                  stdin=subprocess.DEVNULL, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise RemoteError(f"{self.destination}: no answer within {timeout:.0f} s ({command[0]})") from None
        if done.returncode != 0:
            raise RemoteError(self.explain(done.returncode, done.stderr))
        return done.stdout

    def explain(self, code: int, stderr: str) -> str:
        """One line saying why a command on the remote machine failed."""
        lines = [line.strip() for line in (stderr or "").splitlines() if line.strip()]
        errors = [line.split("deepmed: error:", 1)[1].strip() for line in lines if "deepmed: error:" in line]
        if errors:
            return f"{self.destination}: {errors[-1]}"
        if any("No module named deepmed" in line for line in lines):
            return (f"{self.destination}: the remote Python ({self.python}) has no deepmed engine; install it there "
                    "(pip install deepmed) or set the remote Python command")
        if code == 127:
            return f"{self.destination}: remote Python command not found: {self.python}"
        last = lines[-1] if lines else f"exit code {code}"
        if code == 255:
            return f"cannot connect to {self.destination}: {last}"
        return f"{self.destination}: {last}"

    def hello(self) -> dict:
        """The remote engine's version and platform (the connection check)."""
        answer = self.run("hello", timeout=60)
        try:
            return json.loads(answer.strip().splitlines()[-1])
        except (json.JSONDecodeError, IndexError):
            raise RemoteError(f"{self.destination}: unexpected answer from the remote engine: "
                              f"{answer[:200]!r}") from None

    def check_version(self, local_version: str) -> dict:
        """Connect and compare versions: RemoteError (one line) when they differ."""
        info = self.hello()
        if info.get("version") != local_version:
            raise RemoteError(f"{self.destination} runs deepmed {info.get('version')}, this computer deepmed "
                              f"{local_version}: install the same version on both")
        return info


def ssh_program(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise RemoteError(f"'{name}' not found on this computer: install OpenSSH's client to run on a remote machine")
    return found
