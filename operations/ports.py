"""Preflight: every port of the port table is free, or held by what the stack runs there.

A port held by a foreign process stops the deploy before any change, naming the port and
the process. With ``ports_auto_reassign``, an internal-only service (an MCP server, the
API instances as a block) moves to the first free port of ``ports_reassign_range``
instead; the move is recorded on the host, so later runs keep it, and every config
(Supervisor, nginx, the app's env files, the health checks) reads the moved port.
"""

from __future__ import annotations

import json

from pyinfra import host, logger
from pyinfra.api import DeployError

from operations import render
from operations.facts import ListeningSockets, PortAssignments
from orchestra_infra import catalog, schema


def record_path(config) -> str:
    return f"{config.state_root}/ports.json"


# Keys whose service only the stack itself reaches (never a client, never the firewall).
_MOVABLE = ("api_port", "mcp_servers.")




def record_problems(config, recorded, path: str) -> list[str]:
    """What is wrong with a host's record of moved ports, each line naming the file and the
    key: it is read from the host, so it is checked like the data before any use."""
    if isinstance(recorded, str):
        return [f"{path}: {recorded}"]
    if not isinstance(recorded, dict):
        return [f"{path}: expected a JSON object of port table keys and ports, got "
                f"{type(recorded).__name__}"]
    problems = []
    for key, port in recorded.items():
        name = key.split(".", 1)[1] if key.startswith("mcp_servers.") else None
        if key != "api_port" and not (name and schema.MCP_NAME.fullmatch(name)):
            problems.append(f"{path}: {key!r}: not a port this deploy moves (api_port, "
                            "mcp_servers.NAME)")
        elif isinstance(port, bool) or not isinstance(port, int):
            problems.append(f"{path}: {key}: {port!r} is not a port number")
        else:
            last = port + max(_offsets(config, key))
            if port < 1024 or last > 65535:
                problems.append(f"{path}: {key}: {port} is not a port an internal service "
                                "may use (1024-65535)")
    if not problems:
        applied = apply(config, {k: v for k, v in recorded.items()
                                 if k == "api_port" or k in config.port_table()})
        problems = [f"{path}: {line}" for line in schema.port_conflicts(applied)]
    return problems


def _recorded(config, on_host) -> dict[str, int]:
    """The host's record of moved ports, validated: a bad one stops the deploy before any
    change, naming the file and the key."""
    path = record_path(config)
    recorded = on_host.get_fact(PortAssignments, record=path)
    problems = record_problems(config, recorded, path)
    if problems:
        raise DeployError(f"{on_host.name}: nothing was changed: the record of moved ports is "
                          "not valid (fix or remove it):\n  " + "\n  ".join(problems))
    return recorded


def foreign_holders(config, listening: dict[int, list[dict]]) -> dict[str, str]:
    """Port table key -> a line naming the process that holds its port, for every port
    held by a process the stack does not run there."""
    problems = {}
    owners = catalog.port_owners(config)
    for key, port in config.port_table().items():
        allowed = owners.get(key, ())
        for holder in listening.get(port, []):
            if not any(holder["process"].startswith(name) and user in (None, holder["user"])
                       for name, user in allowed):
                problems.setdefault(key, f"port {port} ({key}) is held by {holder['process']} "
                                         f"(pid {holder['pid']}, user {holder['user']}), which "
                                         "this stack does not manage")
    return problems


def _base_key(key: str) -> str:
    """Instances move as one block: ``api_port+1`` moves ``api_port``, ``mcp_servers.task+1``
    moves ``mcp_servers.task``."""
    return key.partition("+")[0]


def _offsets(config, key: str) -> list[int]:
    """The ports a moved key takes, from its first."""
    return list(range(config.api_instances)) if key == "api_port" else config.mcp_offsets()


def apply(config, assignments: dict[str, int]):
    """``config`` with the recorded ports in place of the data's."""
    servers = dict(config.mcp_servers)
    update = {}
    for key, port in assignments.items():
        if key == "api_port":
            update["api_port"] = port
        elif key.startswith("mcp_servers.") and key.split(".", 1)[1] in servers:
            name = key.split(".", 1)[1]
            servers[name] = servers[name].model_copy(update={"port": port})
    return config.model_copy(update={**update, "mcp_servers": servers})


def _free_block(config, taken: set[int], offsets: list[int]) -> int | None:
    low, high = config.ports_reassign_range
    for start in range(low, high - max(offsets) + 1):
        if not taken.intersection(start + offset for offset in offsets):
            return start
    return None


def plan(config, listening: dict[int, list[dict]],
         recorded: dict[str, int]) -> tuple[dict[str, int], list[str]]:
    """The ports to use on a host: (assignments to record, problems that stop the deploy).

    Pure, so the edge can compute an app host's ports from that host's facts.
    """
    table = config.port_table()
    assignments = {k: v for k, v in recorded.items()
                   if k == "api_port" or k in table}  # a removed MCP server drops out
    problems = foreign_holders(apply(config, assignments), listening)
    if not config.ports_auto_reassign:
        return assignments, list(problems.values())
    taken = set(listening) | set(apply(config, assignments).port_table().values())
    lines = []
    for key in dict.fromkeys(_base_key(k) for k in problems):
        if not key.startswith(_MOVABLE):
            lines.append(problems[key])
            continue
        offsets = _offsets(config, key)
        port = _free_block(config, taken, offsets)
        if port is None:
            first = next(line for k, line in problems.items() if _base_key(k) == key)
            lines.append(f"{first}; no free port left in ports_reassign_range "
                         f"{config.ports_reassign_range}")
            continue
        taken.update(port + offset for offset in offsets)
        assignments[key] = port
    return assignments, lines


def check(config):
    """Stop before any change when a foreign process holds one of the stack's ports;
    return the config with moved ports, and what to record."""
    assignments, problems = plan(config, host.get_fact(ListeningSockets),
                                 _recorded(config, host))
    if problems:
        raise DeployError(f"{host.name}: nothing was changed:\n  " + "\n  ".join(problems))
    for key, port in sorted(assignments.items()):
        logger.info(f"{host.name}: {key} is on port {port} (recorded in {record_path(config)})")
    return apply(config, assignments), assignments


def for_host(config, other_host):
    """Another host's effective config (its recorded and planned moves), for the edge."""
    assignments, _ = plan(config, other_host.get_fact(ListeningSockets),
                          _recorded(config, other_host))
    return apply(config, assignments)


def record(config, assignments: dict[str, int]):
    """Keep moved ports on the host (removed again when nothing is moved)."""
    path = record_path(config)
    if assignments or host.get_fact(PortAssignments, record=path):
        return render.template(name=f"Record moved ports in {path}", src=None, dest=path,
                               text=json.dumps(assignments, indent=2, sort_keys=True) + "\n",
                               mode="644")
    return None
