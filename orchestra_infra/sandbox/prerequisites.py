"""What this machine needs before it can run sandbox hosts: root, and a few commands."""

from __future__ import annotations

import os
import shutil

from .errors import SandboxError

# Debian package providing each command the sandbox runs on this machine.
REQUIRED_TOOLS = {
    "debootstrap": "debootstrap",
    "systemd-nspawn": "systemd-container",
    "nft": "nftables",
    "ip": "iproute2",
    "ssh-keygen": "openssh-client",
    "ssh": "openssh-client",
    "tar": "tar",
}


def require_root() -> None:
    if os.geteuid() != 0:
        raise SandboxError(
            "sandbox hosts need root (network namespaces, nftables, systemd-nspawn): "
            "run this command as root"
        )


def missing_tools() -> dict[str, str]:
    """Each required command that is not on PATH, with the Debian package that provides it."""
    return {tool: pkg for tool, pkg in REQUIRED_TOOLS.items() if shutil.which(tool) is None}


def check_tools() -> None:
    missing = missing_tools()
    if missing:
        listed = ", ".join(f"{tool} (package {pkg})" for tool, pkg in missing.items())
        packages = " ".join(sorted(set(missing.values())))
        raise SandboxError(f"missing tools: {listed}; install with: apt-get install {packages}")
