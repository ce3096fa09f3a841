"""Hosts of a real environment, from ``hosts/ENV`` or ``ORCHESTRA_<ENV>_HOSTS``.

Addresses are never committed. A hosts file holds one host per line, optionally
followed by its groups (default: all of them, the single-instance layout)::

    # hosts/prod
    203.0.113.10                # edge, app and data on one GPU instance
    203.0.113.11  app,data
"""

from __future__ import annotations

import os

from pyinfra.api.exceptions import InventoryError

from .config import project_root

GROUPS = ("edge", "app", "data")


class HostsError(InventoryError):
    """pyinfra prints it as one line, no traceback."""


def hosts_path(env: str):
    return project_root() / "hosts" / env


def env_var(env: str) -> str:
    return f"ORCHESTRA_{env.upper()}_HOSTS"


def parse(text: str, source: str) -> dict[str, list[str]]:
    """Host lines -> {group: [address, ...]} for every group in GROUPS."""
    groups: dict[str, list[str]] = {group: [] for group in GROUPS}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        address, *rest = line.split()
        wanted = rest[0].split(",") if rest else list(GROUPS)
        unknown = [g for g in wanted if g not in GROUPS]
        if unknown or len(rest) > 1:
            raise HostsError(f"{source}:{number}: expected 'ADDRESS [edge,app,data]', "
                             f"got {raw.strip()!r}")
        for group in wanted:
            groups[group].append(address)
    return groups


def load(env: str) -> dict[str, list[str]]:
    """The environment's hosts by group; the environment variable wins over the file."""
    value = os.environ.get(env_var(env))
    if value:
        return parse(value.replace(",", "\n"), env_var(env))
    path = hosts_path(env)
    if not path.exists():
        raise HostsError(f"no hosts for {env}: write {path} (one address per line) "
                         f"or set {env_var(env)}")
    return parse(path.read_text(), str(path))
