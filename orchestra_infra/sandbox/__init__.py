"""Local disposable sandbox hosts that behave like a bare cloud instance.

Each sandbox host is a Debian 12 (or Ubuntu 22.04) root file system booted with systemd as PID 1
by systemd-nspawn, inside its own network namespace with its own IPv4 address, NAT to the outside,
sshd running and a user ``ubuntu`` with passwordless sudo and our SSH key: what a fresh Lambda
Labs instance offers, and nothing more. Deploys and tests reach them over real SSH.

Everything here needs root: network namespaces, nftables and systemd-nspawn do.

This module is the public API. Each step has a module of its own: image.py builds the root file
system once, disk.py gives each host a copy, network.py its namespace and address, container.py
boots it with systemd-nspawn, ssh.py logs in. lifecycle.py strings these together for one host,
state.py records the hosts, paths.py says where everything lives.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The module, not its names: it imports from this package too.
from standins import nodesource as nodesource_standin
from standins import weaviate_release

from .container import is_running, kill_container, nspawn_command, stop_container
from .errors import SandboxError
from .image import (
    DEFAULT_IMAGE,
    IMAGE_RECIPE_VERSION,
    IMAGE_SUITES,
    debootstrap_command,
    ensure_image,
    image_tarball,
    ubuntu_sources_list,
)
from .lifecycle import boot, boot_all, destroy, orphan_names
from .network import (
    NAT_TABLE,
    NETNS_DIR,
    allocate_slot,
    ensure_nat,
    remove_nat,
    remove_veth,
    sandbox_veths,
    slot_addresses,
    slot_of,
    veth_name,
)
from .paths import (
    USER,
    cache_dir,
    default_names,
    host_dir,
    ssh_key_path,
    state_dir,
    validate_name,
    weaviate_build_dir,
)
from .prerequisites import check_tools, missing_tools, require_root
from .ssh import ensure_keypair, ssh_base
from .state import known_host, locked_state, new_entry, placeholder_entry, read_state, write_state

__all__ = [
    # The public API.
    "SandboxError",
    "SandboxHost",
    "check_tools",
    "down",
    "inventory_hosts",
    "kill",
    "missing_tools",
    "reboot",
    "require_root",
    "run",
    "ssh_command",
    "ssh_key_path",
    "status",
    "stop",
    "up",
    # Used by the command line and by the tests.
    "DEFAULT_IMAGE",
    "IMAGE_RECIPE_VERSION",
    "IMAGE_SUITES",
    "NAT_TABLE",
    "NETNS_DIR",
    "allocate_slot",
    "debootstrap_command",
    "default_names",
    "host_dir",
    "image_tarball",
    "new_entry",
    "nspawn_command",
    "read_state",
    "slot_addresses",
    "slot_of",
    "ubuntu_sources_list",
    "validate_bind",
    "validate_name",
    "veth_name",
    "write_state",
]


@dataclass(frozen=True)
class SandboxHost:
    name: str
    address: str
    image: str
    ssh_key: str
    user: str = USER


def up(
    count: int = 1, names: list[str] | None = None, image: str = DEFAULT_IMAGE,
    binds: list[str] | None = None,
) -> list[SandboxHost]:
    """Make the named hosts (default orch-1..orch-COUNT) run; running ones are left alone.

    A host whose process died (crash, machine restart) boots again from its disk if it has one.
    ``binds`` ("/dir/here:/path/there"): directories of this machine a new host mounts, kept
    for its life (a persistent filesystem several hosts share, surviving each of them).
    """
    require_root()
    check_tools()
    names = default_names(count) if names is None else list(dict.fromkeys(names))
    for name in names:
        validate_name(name)
    binds = [validate_bind(b) for b in binds or []]
    image_tarball(image)  # rejects an unknown image up front
    with locked_state() as state:
        for name in names:
            known = state.hosts.get(name)
            if known and known["image"] != image:
                raise SandboxError(
                    f"{name} exists with image {known['image']}, not {image}: "
                    f"run `orchestra-infra sandbox down {name}` first"
                )
        ensure_keypair()
        ensure_nat()
        jobs = []
        for name in names:
            known = state.hosts.get(name)
            if known and is_running(known):
                continue
            if known:
                stop_container(known)  # whatever a crashed run left in its namespace
                has_disk = Path(known["rootfs"]).is_dir()
                jobs.append((known, None if has_disk else ensure_image(image)))
            else:
                others = (h["address"] for h in state.hosts.values())
                entry = new_entry(name, image, allocate_slot(others))
                if binds:
                    entry["binds"] = binds
                stop_container(entry)
                state.put(entry)  # recorded before anything exists, so `down` can find it
                jobs.append((entry, ensure_image(image)))
        boot_all(jobs, state)
        # NodeSource's stand-in, which the hosts reach at their veth's end on this machine.
        nodesource_standin.ensure_server(cache_dir(), state_dir())
        # Weaviate's, which the deploy uploads (group_data/sandbox.py reads what was built).
        weaviate_release.build_for_sandbox(weaviate_build_dir())
        return [_to_host(state.hosts[name]) for name in names]


def status() -> list[dict[str, Any]]:
    return [
        {
            "name": e["name"],
            "address": e["address"],
            "image": e["image"],
            "running": is_running(e),
            "pid": e.get("pid"),
        }
        for e in read_state().values()
    ]


def ssh_command(name: str) -> list[str]:
    """argv for an interactive SSH session as ubuntu on the host."""
    return ssh_base(_address(name))


def run(
    name: str, command: str, sudo: bool = True, timeout: float = 600
) -> subprocess.CompletedProcess:
    """Run a shell command on the host over SSH (as root through sudo by default)."""
    remote = f"sudo -n sh -c {shlex.quote(command)}" if sudo else command
    argv = [*ssh_base(_address(name), batch=True), remote]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)


def inventory_hosts() -> list[tuple[str, dict[str, Any]]]:
    """(address, host data) of each running host, in the form pyinfra inventories take."""
    key = str(ssh_key_path())
    return [
        (
            e["address"],
            {
                "ssh_user": USER,
                "ssh_key": key,
                "ssh_strict_host_key_checking": "off",
                "ssh_known_hosts_file": "/dev/null",
                "sandbox_name": e["name"],
                # Node.js from the NodeSource stand-in this machine serves (see up()).
                "node_apt_repository": nodesource_standin.repository_url(e["host_address"]),
                "node_apt_key_url": nodesource_standin.key_url(e["host_address"]),
            },
        )
        for e in read_state().values()
        if is_running(e)
    ]


def reboot(name: str) -> SandboxHost:
    """Shut the host down cleanly and boot it again from the same disk."""
    require_root()
    with locked_state() as state:
        entry = known_host(state.hosts, name)
        if not Path(entry["rootfs"]).is_dir():
            raise SandboxError(f"{name} has no disk left: run `orchestra-infra sandbox up` again")
        stop_container(entry)
        ensure_nat()  # gone if this machine restarted since the host was created
        boot(entry, state, tarball=None)
        return _to_host(state.hosts[name])


def stop(name: str) -> None:
    """Shut the host's machine down (SIGTERM to nspawn), keeping its disk and address: a
    lost instance. ``up`` boots it again from the same disk."""
    require_root()
    with locked_state() as state:
        stop_container(known_host(state.hosts, name))


def validate_bind(bind: str) -> str:
    """``/source:/destination``, both absolute and plain; the source must exist."""
    source, _, destination = bind.partition(":")
    for path in (source, destination):
        if not re.fullmatch(r"/[A-Za-z0-9._/-]*", path) or "/../" in f"{path}/":
            raise SandboxError(f"bind {bind!r}: expected /source:/destination, plain paths")
    if not Path(source).is_dir():
        raise SandboxError(f"bind {bind!r}: {source} is not a directory")
    return bind


def kill(names: list[str]) -> None:
    """The hosts' machines die at once (SIGKILL, no shutdown); their disks and entries stay
    until `down`, which then has nothing left to stop."""
    require_root()
    with locked_state() as state:
        for name in names:
            kill_container(known_host(state.hosts, name))


def down(names: list[str] | None = None) -> None:
    """Stop and delete hosts (all of them when names is None), leaving nothing behind.

    Also cleans what a crashed run left: namespaces, veths and folders without a state entry.
    One host that cannot be cleaned does not stop the others from being cleaned.
    """
    require_root()
    for name in names or []:
        validate_name(name)
    with locked_state() as state:
        targets = sorted(set(state.hosts) | orphan_names()) if names is None else names
        errors = []
        for name in targets:
            try:
                destroy(state.hosts.get(name) or placeholder_entry(name))
            except SandboxError as e:
                errors.append(f"{name}: {e}")
                continue
            state.remove(name)
        if names is None:
            for veth in sandbox_veths():
                remove_veth(veth)
        if not state.hosts and not errors:
            remove_nat()
            nodesource_standin.stop_server(state_dir())
        if errors:
            raise SandboxError("\n".join(errors))


def _address(name: str) -> str:
    return known_host(read_state(), name)["address"]


def _to_host(entry: Mapping[str, Any]) -> SandboxHost:
    return SandboxHost(
        name=entry["name"],
        address=entry["address"],
        image=entry["image"],
        ssh_key=str(ssh_key_path()),
    )
