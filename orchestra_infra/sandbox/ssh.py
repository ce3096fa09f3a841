"""SSH from this machine to the hosts: one key pair logs in as ubuntu on every host."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

from .commands import run_command
from .paths import USER, ssh_key_path


def ensure_keypair() -> Path:
    key = ssh_key_path()
    if not key.exists():
        key.parent.mkdir(parents=True, exist_ok=True)
        comment = "orchestra-sandbox"
        run_command(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(key)])
    key.chmod(0o600)
    return key


def ssh_base(address: str, batch: bool = False) -> list[str]:
    """ssh argv up to the destination; batch: never prompt, give up on a silent host."""
    # Every host is new and rebuilt often: remembering host keys would only raise alarms.
    options = ["StrictHostKeyChecking=no", "UserKnownHostsFile=/dev/null", "LogLevel=ERROR"]
    if batch:
        options += ["BatchMode=yes", "ConnectTimeout=10"]
    flags = [arg for option in options for arg in ("-o", option)]
    return ["ssh", "-i", str(ssh_key_path()), *flags, f"{USER}@{address}"]


def ssh_banner(address: str, timeout: float = 2.0) -> bool:
    try:
        with socket.create_connection((address, 22), timeout=timeout) as conn:
            return conn.recv(64).startswith(b"SSH-")
    except OSError:
        return False


def system_state(address: str) -> str:
    """`systemctl is-system-running` on the host over SSH ('' when SSH does not answer yet).

    Through sudo, so a host counts as ready only when a deploy could use it: key, user, sudoers.
    """
    argv = [*ssh_base(address, batch=True), "sudo -n systemctl is-system-running"]
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        return ""
    return result.stdout.strip()
