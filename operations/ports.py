"""Preflight: every port of the port table is free, or held by what the stack runs there."""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import DeployError

from operations.facts import ListeningSockets

# Port table key (or its prefix) -> (process name prefix, user) pairs allowed to hold it;
# None: any user.
_OWNERS = {
    "sshd_port": [("sshd", None)],
    "nginx_": [("nginx", None)],
    "api_port": [("python", "{service_user}")],
    "mcp_servers.": [("python", "{service_user}")],
    "app_preflight_port": [("python", "{service_user}")],
    "admin_port": [("node", "{service_user}"), ("PM2", "{service_user}")],
    "postgres_port": [("postgres", "postgres")],
    "redis_port": [("redis-server", "redis")],
    # The sandbox's weaviate-standin is a Python script run by the weaviate user.
    "weaviate_": [("weaviate", "weaviate"), ("python", "weaviate")],
    "monit_port": [("monit", None)],
}


def _allowed(key: str, service_user: str) -> list[tuple[str, str | None]]:
    for prefix, owners in _OWNERS.items():
        if key.startswith(prefix):
            return [(name, user.format(service_user=service_user) if user else None)
                    for name, user in owners]
    return []


def foreign_holders(config, listening: dict[int, list[dict]]) -> list[str]:
    """One line per port of the table held by a process the stack does not run there."""
    problems = []
    for key, port in config.port_table().items():
        allowed = _allowed(key, config.service_user)
        for holder in listening.get(port, []):
            if not any(holder["process"].startswith(name) and user in (None, holder["user"])
                       for name, user in allowed):
                problems.append(f"port {port} ({key}) is held by {holder['process']} "
                                f"(pid {holder['pid']}, user {holder['user']}), which this "
                                "stack does not manage")
    return problems


def check(config) -> None:
    """Stop before any change when a foreign process holds one of the stack's ports."""
    problems = foreign_holders(config, host.get_fact(ListeningSockets))
    if problems:
        raise DeployError(f"{host.name}: nothing was changed:\n  " + "\n  ".join(problems))
