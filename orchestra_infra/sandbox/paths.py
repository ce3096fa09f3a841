"""Where the sandbox keeps things on this machine, and what hosts and their user are called.

Both folders can be moved with environment variables:

- ``$ORCHESTRA_SANDBOX_CACHE/rootfs-IMAGE-STAMP.tar``: the pristine root file system, built once.
- ``$ORCHESTRA_SANDBOX_STATE/hosts.json``: one entry per host (address, PID, ...).
- ``$ORCHESTRA_SANDBOX_STATE/NAME/rootfs``: the host's disk; ``NAME/console.log``: its console.
- ``$ORCHESTRA_SANDBOX_STATE/id_ed25519``: the key that logs in as ``ubuntu`` on every host.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from .errors import SandboxError

DEFAULT_CACHE_DIR = "/var/cache/orchestra-infra"
DEFAULT_STATE_DIR = "/var/lib/orchestra-infra/sandbox"

# The user a fresh cloud instance offers: SSH key login, passwordless sudo.
USER = "ubuntu"

NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$")


def cache_dir() -> Path:
    return Path(os.environ.get("ORCHESTRA_SANDBOX_CACHE", DEFAULT_CACHE_DIR))


def weaviate_build_dir() -> Path:
    """Where `sandbox up` builds the Weaviate stand-in's release, which every checkout on
    this machine deploys to the sandbox hosts (the hosts belong to the machine, not to a
    checkout)."""
    return cache_dir() / "weaviate-standin"


def state_dir() -> Path:
    return Path(os.environ.get("ORCHESTRA_SANDBOX_STATE", DEFAULT_STATE_DIR))


def state_file() -> Path:
    return state_dir() / "hosts.json"


def ssh_key_path() -> Path:
    return state_dir() / "id_ed25519"


def host_dir(name: str) -> Path:
    return state_dir() / name


def rootfs_path(name: str) -> Path:
    return host_dir(name) / "rootfs"


def console_log(name: str) -> Path:
    return host_dir(name) / "console.log"


def validate_name(name: str) -> None:
    # The name becomes a hostname, a machine name and part of a network namespace name.
    if not NAME_RE.match(name):
        raise SandboxError(
            f"invalid sandbox host name {name!r}: use 1-32 lowercase letters, digits and '-', "
            "not starting or ending with '-'"
        )


def default_names(count: int) -> list[str]:
    if count < 1:
        raise SandboxError(f"--hosts must be at least 1, got {count}")
    return [f"orch-{i}" for i in range(1, count + 1)]
