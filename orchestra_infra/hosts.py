"""Hosts of a real environment, from ``hosts/ENV`` or ``ORCHESTRA_<ENV>_HOSTS``.

Addresses are never committed. A hosts file holds one host per line, optionally
followed by its groups (default: all of them, the single-instance layout)::

    # hosts/prod: one instance in every group (the default layout)...
    203.0.113.10
    # ...or several, joined by a WireGuard mesh (orchestra_infra/mesh.py):
    203.0.113.10  edge,app
    203.0.113.11  app
    203.0.113.12  data

An address appears once; ``orchestra-infra check ENV`` validates the layout. The group
``metrics`` holds the environment's one Prometheus and Alertmanager, which scrape every host's
exporters over the mesh: the first ``edge`` host unless a line names it. A line ending
in ``drain`` keeps the host in the mesh but takes it out of the edge's upstreams: the first
step of removing it (docs/runbook.md).

``orchestra-infra lambda launch ENV`` adds a new instance's address with ``record``.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Sequence

from pyinfra.api.exceptions import InventoryError

from . import mesh
from .paths import project_root

GROUPS = ("edge", "app", "data", "metrics")
# Where the environment's Prometheus and Alertmanager run when no line says.
METRICS_DEFAULT = "edge"


class HostsError(InventoryError):
    """pyinfra prints it as one line, no traceback."""


def hosts_path(env: str):
    return project_root() / "hosts" / env


def env_var(env: str) -> str:
    return f"ORCHESTRA_{env.upper()}_HOSTS"


def entries(text: str, source: str) -> list[tuple[int, str, list[str]]]:
    """Host lines -> (line number, address, groups), in file order; an address listed twice
    is an error naming both lines."""
    return [(number, address, groups) for number, address, groups, _ in _lines(text, source)]


def drained(text: str, source: str) -> list[str]:
    """The addresses marked ``drain``: no longer among the edge's upstreams, still in the
    mesh (the first step of removing a host)."""
    return [address for _, address, _, drain in _lines(text, source) if drain]


def _lines(text: str, source: str, default_metrics: bool = True
           ) -> list[tuple[int, str, list[str], bool]]:
    """(line number, address, groups, drain) of each host line; without a line in group
    metrics, the first edge host is in it (default_metrics)."""
    found: list[tuple[int, str, list[str], bool]] = []
    first: dict[str, int] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        address, *rest = line.split()
        drain = rest[-1:] == ["drain"]
        if drain:
            rest = rest[:-1]
        wanted = rest[0].split(",") if rest else list(GROUPS)
        unknown = [g for g in wanted if g not in GROUPS]
        if unknown or len(rest) > 1:
            raise HostsError(f"{source}:{number}: expected 'ADDRESS [edge,app,data,metrics] "
                             f"[drain]', got {raw.strip()!r}")
        if address in first:
            raise HostsError(f"{source}:{number}: {address} is already listed on line "
                             f"{first[address]}")
        first[address] = number
        found.append((number, address, [g for g in GROUPS if g in wanted], drain))
    if default_metrics and not any("metrics" in groups for _, _, groups, _ in found):
        chosen = next((line for line in found if METRICS_DEFAULT in line[2]), None)
        if chosen:
            chosen[2].append("metrics")
    return found


def parse(text: str, source: str) -> dict[str, list[str]]:
    """Host lines -> {group: [address, ...]} for every group in GROUPS."""
    groups: dict[str, list[str]] = {group: [] for group in GROUPS}
    for _, address, wanted in entries(text, source):
        for group in wanted:
            groups[group].append(address)
    return groups


def layout_problems(text: str, source: str, mesh_network: str) -> list[str]:
    """What `check` reports about a hosts file's layout: exactly one data host, at least
    one edge and one app host; with more than one host, IP addresses only (the firewall
    names the peers) and private addresses that do not collide."""
    found = entries(text, source)
    if not found:
        return [f"{source}: no host listed"]
    groups = {group: [a for _, a, g in found if group in g] for group in GROUPS}
    where = {address: f"{source}:{number}" for number, address, _ in found}
    problems = [f"{source}: {p}" for p in mesh.layout_problems(groups, where)]
    drain = set(drained(text, source))
    if groups["app"] and drain >= set(groups["app"]):
        problems.append(f"{source}: every app host is marked drain: the edge would have no "
                        "upstream")
    if len(found) > 1:
        for number, address, _ in found:
            try:
                ipaddress.ip_address(address)
            except ValueError:
                problems.append(f"{source}:{number}: {address} is not an IP address (a "
                                "multi-host layout's firewall names its peers by address)")
        problems += mesh.address_problems(mesh_network, [a for _, a, _ in found])
    return problems


def check(env: str, mesh_network: str, secret_names) -> list[str]:
    """`orchestra-infra check ENV`'s word on the environment's hosts, when it lists any:
    the layout, and the secret a multi-host layout needs."""
    try:
        found = read(env)
        if found is None:
            return []
        problems = layout_problems(*found, mesh_network)
        if len(entries(*found)) > 1 and "wireguard_mesh_seed" not in secret_names:
            problems.append(f"secrets.wireguard_mesh_seed: missing; a multi-host layout "
                            f"needs it (run `orchestra-infra secrets init {env}`)")
        return problems
    except HostsError as e:
        return [str(e)]


def read(env: str) -> tuple[str, str] | None:
    """(text, source) of the environment's hosts, or None when it has none."""
    value = os.environ.get(env_var(env))
    if value:
        return value.replace(",", "\n"), env_var(env)
    path = hosts_path(env)
    return (path.read_text(), str(path)) if path.exists() else None


def load(env: str) -> dict[str, list]:
    """The environment's hosts by group, as pyinfra inventories take them (a drained host
    with the data ``drain``); the environment variable wins over the file."""
    found = read(env)
    if found is None:
        raise HostsError(f"no hosts for {env}: write {hosts_path(env)} (one address per "
                         f"line) or set {env_var(env)}")
    drain = set(drained(*found))
    return {group: [(a, {"drain": True}) if a in drain else a for a in addresses]
            for group, addresses in parse(*found).items()}


def record(env: str, address: str, groups: Sequence[str] = (), replace: bool = False) -> bool:
    """Put address into ``hosts/ENV`` (in groups; none given means all); returns whether the
    file changed. With replace, every other host line is commented out (``# replaced by
    ADDRESS: ...``): a new instance taking a lost one's place. Comments are kept; the file is
    checked before and after, and replaced atomically."""
    if not address or any(c.isspace() or c in "#," for c in address):
        raise HostsError(f"not a host address: {address!r}")
    unknown = [g for g in groups if g not in GROUPS]
    if unknown:
        raise HostsError(f"unknown group {', '.join(unknown)}: expected some of "
                         f"{','.join(GROUPS)}")
    path = hosts_path(env)
    old = path.read_text() if path.exists() else ""
    parse(old, str(path))
    chosen = [g for g in GROUPS if g in groups] if groups else list(GROUPS)
    wanted = address if chosen == list(GROUPS) else f"{address}  {','.join(chosen)}"
    lines = [] if old else [f"# {env} hosts: ADDRESS [edge,app,data,metrics] per line "
                            "(orchestra_infra/hosts.py)"]
    found = False
    for raw in old.splitlines():
        content = raw.split("#", 1)[0].strip()
        if not content:
            lines.append(raw)
        elif content.split()[0] == address:
            same = _lines(content, str(path), default_metrics=False)[0][2] == chosen
            lines.append(raw if found or not groups or same else wanted)
            found = True
        elif replace:
            lines.append(f"# replaced by {address}: {raw.strip()}")
        else:
            lines.append(raw)
    if not found:
        lines.append(wanted)
    text = "\n".join(lines) + "\n"
    if text == old:
        return False
    parse(text, str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return True
