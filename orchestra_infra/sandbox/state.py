"""hosts.json, the record of every host, and the lock under which hosts change."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
import threading
from collections.abc import Iterator, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .errors import SandboxError
from .network import namespace_for, slot_addresses, veth_name
from .paths import rootfs_path, state_dir, state_file


def new_entry(name: str, image: str, slot: int) -> dict[str, Any]:
    host_end, address = slot_addresses(slot)
    return {
        "name": name,
        "image": image,
        "address": address,
        "host_address": host_end,
        "namespace": namespace_for(name),
        "veth": veth_name(slot),
        "pid": None,
        "rootfs": str(rootfs_path(name)),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def placeholder_entry(name: str) -> dict[str, Any]:
    """What deleting a host needs to know, for one that left things behind but no entry."""
    return {
        "name": name,
        "namespace": namespace_for(name),
        "veth": None,
        "pid": None,
        "rootfs": str(rootfs_path(name)),
    }


def read_state(path: Path | None = None) -> dict[str, dict[str, Any]]:
    """Hosts by name; a missing state file means no hosts."""
    path = path or state_file()
    try:
        hosts = json.loads(path.read_text())["hosts"]
    except FileNotFoundError:
        return {}
    except (ValueError, KeyError, TypeError) as e:
        raise SandboxError(f"corrupt sandbox state file {path}: {e}; fix or delete it") from e
    return {h["name"]: h for h in hosts}


def write_state(hosts: Mapping[str, Mapping[str, Any]], path: Path | None = None) -> None:
    """Replace the state file atomically, so a crash never leaves half a file."""
    path = path or state_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    body = json.dumps({"hosts": [hosts[n] for n in sorted(hosts)]}, indent=2) + "\n"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".hosts.", suffix=".json")
    with os.fdopen(fd, "w") as f:
        f.write(body)
    os.chmod(tmp, 0o644)  # no secrets in it; status and inventories need not be root
    os.replace(tmp, path)


def known_host(hosts: Mapping[str, dict[str, Any]], name: str) -> dict[str, Any]:
    if name not in hosts:
        known = ", ".join(sorted(hosts)) or "none"
        raise SandboxError(f"no sandbox host named {name!r} (known: {known})")
    return hosts[name]


@contextlib.contextmanager
def locked_state() -> Iterator[SharedState]:
    """Lock out other commands that change hosts, then read the state.

    Two concurrent `up`s would otherwise race for the same names. Public functions take it once
    and never call each other: flock is not re-entrant across separate opens, so nesting would
    deadlock.
    """
    state_dir().mkdir(parents=True, exist_ok=True)
    with open(state_dir() / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield SharedState()


class SharedState:
    """The state file, shared by the threads that boot hosts in parallel."""

    def __init__(self) -> None:
        self.hosts = read_state()
        self._lock = threading.Lock()

    def put(self, entry: dict[str, Any]) -> None:
        with self._lock:
            self.hosts[entry["name"]] = entry
            write_state(self.hosts)

    def update(self, name: str, **fields: Any) -> None:
        with self._lock:
            self.hosts[name].update(fields)
            write_state(self.hosts)

    def remove(self, name: str) -> None:
        with self._lock:
            self.hosts.pop(name, None)
            write_state(self.hosts)
