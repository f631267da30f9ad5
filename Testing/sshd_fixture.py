"""A real OpenSSH server on 127.0.0.1 for the remote-worker tests: a free port, a throw-away host key, a key
pair and authorized_keys made for the test, a private sshd and ssh configuration; nothing of the system's
configuration is read or changed (beyond /run/sshd, which sshd needs when started as root).

Tests import ``ssh_server_fixture`` (the fixture ``sshServer``); it skips, saying why, where no ``sshd`` is installed
(``make test`` installs openssh-server and rsync when it can).
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ALIAS = "deepmed-test-host"


@dataclass
class SshServer:
    alias: str
    port: int
    ssh_config: Path
    python: str            # the remote Python command: this interpreter with this checkout's engine
    workdir: Path          # the remote work folder
    process: subprocess.Popen

    def host_options(self) -> list[str]:
        return ["--host", self.alias, "--ssh-config", str(self.ssh_config), "--python", self.python,
                "--workdir", str(self.workdir)]


def find_sshd() -> str | None:
    return shutil.which("sshd") or next((p for p in ("/usr/sbin/sshd", "/usr/local/sbin/sshd") if Path(p).exists()),
                                        None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(name="sshServer")
def ssh_server_fixture(tmp_path):
    sshd = find_sshd()
    if sshd is None or shutil.which("ssh") is None or shutil.which("ssh-keygen") is None:
        pytest.skip("no OpenSSH server/client here (apt-get install openssh-server; 'make test' does it as root)")
    folder = tmp_path / "sshd"
    folder.mkdir()
    for name in ("host_key", "client_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(folder / name)], check=True)
    (folder / "authorized_keys").write_text((folder / "client_key.pub").read_text())
    os.chmod(folder / "authorized_keys", 0o600)
    port = free_port()
    (folder / "sshd_config").write_text("\n".join([
        f"Port {port}", "ListenAddress 127.0.0.1", f"HostKey {folder / 'host_key'}",
        f"AuthorizedKeysFile {folder / 'authorized_keys'}", f"PidFile {folder / 'sshd.pid'}", "StrictModes no",
        "PasswordAuthentication no", "KbdInteractiveAuthentication no", "UsePAM no",
        "PermitRootLogin prohibit-password", "Subsystem sftp internal-sftp", "LogLevel ERROR", ""]))
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    with open(folder / "sshd.log", "wb") as log:
        process = subprocess.Popen([sshd, "-D", "-e", "-f", str(folder / "sshd_config")], stdin=subprocess.DEVNULL,
                                   stdout=subprocess.DEVNULL, stderr=log)
    (folder / "ssh_config").write_text("\n".join([
        f"Host {ALIAS}", "  HostName 127.0.0.1", f"  Port {port}", f"  User {getpass.getuser()}",
        f"  IdentityFile {folder / 'client_key'}", "  IdentitiesOnly yes", "  StrictHostKeyChecking no",
        "  UserKnownHostsFile /dev/null", "  LogLevel ERROR", ""]))
    _wait_for_port(port, process, folder / "sshd.log")
    python = f"env PYTHONPATH={REPO / 'SlicerDeepMed'} OMP_NUM_THREADS=2 {sys.executable}"
    server = SshServer(ALIAS, port, folder / "ssh_config", python, tmp_path / "remote-work", process)
    yield server
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()


def _wait_for_port(port: int, process: subprocess.Popen, log: Path, seconds: float = 15) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if process.poll() is not None:
            pytest.fail(f"sshd did not start: {log.read_text(errors='replace').strip()[-500:]}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    process.kill()
    pytest.fail(f"sshd did not listen on 127.0.0.1:{port} within {seconds} s")


def ssh_children(pid: int) -> list[int]:
    """Process ids of the ``ssh`` clients started by process ``pid`` (to drop a connection on purpose)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        parent = int(stat[stat.rindex(")") + 2:].split()[1])
        if parent == pid and name == "ssh":
            found.append(int(entry.name))
    return found
