"""One host from nothing to running and back to nothing, including what a crash left behind."""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from .container import start_container, stop_container, wait_until_ready
from .disk import create_rootfs
from .errors import SandboxError
from .files import remove_tree
from .network import create_network, namespace_owners, remove_network
from .paths import NAME_RE, host_dir, state_dir
from .state import SharedState


def boot(entry: Mapping[str, Any], state: SharedState, tarball: Path | None) -> None:
    """Bring a stopped host up: a fresh disk when tarball is given, network, nspawn, wait."""
    name = entry["name"]
    host_dir(name).mkdir(parents=True, exist_ok=True)
    if tarball is not None:
        create_rootfs(entry, tarball)
    # A booting host gets a fresh network, as after a real power cycle.
    remove_network(entry["namespace"], entry["veth"])
    create_network(entry)
    state.update(name, pid=start_container(entry))
    wait_until_ready(state.hosts[name])


def boot_all(jobs: list[tuple[dict[str, Any], Path | None]], state: SharedState) -> None:
    """Boot hosts in parallel; every failure is reported, not just the first."""
    if not jobs:
        return
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        futures = {entry["name"]: pool.submit(boot, entry, state, tb) for entry, tb in jobs}
    errors = [f"{name}: {f.exception()}" for name, f in futures.items() if f.exception()]
    if errors:
        raise SandboxError("\n".join(errors))


def destroy(entry: Mapping[str, Any]) -> None:
    stop_container(entry)
    remove_network(entry["namespace"], entry.get("veth"))
    remove_tree(host_dir(entry["name"]))


def orphan_names() -> set[str]:
    """Hosts that left a namespace or a folder but no state entry."""
    names = namespace_owners()
    if state_dir().is_dir():
        names |= {p.name for p in state_dir().iterdir() if p.is_dir()}
    return {n for n in names if NAME_RE.match(n)}
