"""``orchestra-infra reprovision ENV``: a lost instance replaced, its data back, in one command.

The stages an operator would otherwise type one by one (docs/runbook.md), each timed:

1. instance: a new one launched through the Lambda Cloud API (``--launch``), or the address
   of one the operator made (``--address``);
2. ssh: wait until it answers on port 22;
   environment: a host that records another environment is refused; ENV's hosts file then
   names only it;
3. deploy: ``pyinfra -y inventories/ENV.py deploy.py``, the same deploy as always;
4. restore: ``restore.py`` with the latest (or a named) backup snapshot, PostgreSQL from its
   continuous archive to the last archived WAL when that holds a base backup; the new host's
   backup timers start only once it succeeded (the deploy leaves them off on a host that was
   neither restored nor declared empty, so a failed restore never backs up an empty host);
5. status: ``orchestra-infra status ENV``, which must be all healthy.

Every stage runs against the new address only (``ORCHESTRA_<ENV>_HOSTS``): the lost host
is never contacted. A stage that fails stops the chain and names itself.
"""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from . import config as config_module
from . import hosts, preflight
from . import lambda_cloud as lc
from .errors import ConfigError
from .pyinfra_run import run_pyinfra


@dataclass
class Launch:
    """What to launch on Lambda Cloud."""

    instance_type: str
    region: str
    ssh_key: str
    filesystem: str | None = None
    name: str | None = None
    timeout: float = 900.0
    interval: float = 10.0


@dataclass
class Stages:
    """Each stage's seconds, in order; printed as the command goes."""

    echo: Callable[[str], None]
    seconds: dict[str, float] = field(default_factory=dict)

    def run(self, name: str, action: Callable[[], object]) -> object:
        self.echo(f"--> {name}")
        started = time.monotonic()
        try:
            return action()
        finally:
            self.seconds[name] = time.monotonic() - started
            self.echo(f"    {name}: {self.seconds[name]:.1f} s")

    def report(self) -> str:
        lines = [f"  {name:10} {seconds:7.1f} s" for name, seconds in self.seconds.items()]
        lines.append(f"  {'total':10} {sum(self.seconds.values()):7.1f} s")
        return "\n".join(lines)


class StageFailed(Exception):
    """A stage did not succeed; its name and why."""


def _launch(env: str, launch: Launch, echo: Callable[[str], None]) -> str:
    key, _ = lc.api_key(env)
    client = lc.Client(key, lc.base_url(), notice=echo)
    instance_id = client.launch(launch.instance_type, launch.region, launch.ssh_key,
                                launch.filesystem, launch.name or f"orchestra-{env}")
    echo(f"    launched instance {instance_id} ({launch.instance_type} in {launch.region})")
    instance = client.wait_active(instance_id, launch.timeout, launch.interval)
    added = client.open_ports((80, 443))
    if added:
        echo("    opened tcp 80 and 443 in the account's firewall")
    return instance.ip


def _wait_for_ssh(address: str, timeout: float = 600.0, port: int = 22) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((address, port), timeout=5) as conn:
                if conn.recv(8).startswith(b"SSH-"):
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise StageFailed(f"ssh: {address}:{port} did not answer within {timeout:.0f} s")
        time.sleep(2)


def check_environment(env: str, address: str, overrides: dict,
                      read: Callable | None = None) -> None:
    """Before hosts/ENV or the host changes: a host that records another environment is
    refused (the deploy checks again while planning). ``read(target, script)`` runs a script
    on the host: (stdout, error), status_hosts.run_script by default."""
    from . import status_hosts

    data = config_module.environment_data(env, overrides)
    record = preflight.environment_record(data["state_root"])
    found = [t for t in status_hosts.targets(env, data)
             if address in (t.name, t.data.get("sandbox_name"))]
    if not found:
        raise StageFailed(f"environment: {address} is not a host of inventories/{env}.py")
    out, error = (read or status_hosts.run_script)(
        found[0], f"cat {shlex.quote(record)} 2>/dev/null || true\n")
    if error is not None:
        raise StageFailed(f"environment: cannot read {record} on {address}: {error}")
    problem = preflight.recorded_environment_problem(address, record, env, out.splitlines())
    if problem:
        raise StageFailed(problem)


def plan(env: str, address: str | None, launch: Launch | None, snapshot: str,
         price_cents: int | None = None) -> list[str]:
    """What ``run`` would do, in the operator's words: shown before it asks."""
    if launch is not None:
        price = (f"${price_cents / 100:.2f}/h" if price_cents
                 else "at its hourly price (unknown here)")
        instance = (f"launch a {launch.instance_type} instance in {launch.region} on Lambda "
                    f"Cloud (SSH key {launch.ssh_key}"
                    + (f", file system {launch.filesystem}" if launch.filesystem else "")
                    + f"): BILLED {price} from launch until terminated")
    else:
        instance = f"use the instance at {address} (its environment record is checked)"
    wanted = ("the latest snapshot of this environment's backup host" if snapshot == "latest"
              else f"snapshot {snapshot}")
    return [f"Reprovision {env}:",
            f"  1. instance: {instance}",
            f"  2. hosts/{env}: it replaces every host listed" if env != "sandbox"
            else "  2. hosts: the sandbox inventory lists it",
            "  3. deploy: deploy.py onto it (the whole stack, from bare)",
            f"  4. restore: {wanted}, onto its empty data services (nothing there is replaced)",
            "  5. status: every service must be healthy"]


def price_cents(env: str, instance_type: str) -> int | None:
    """The type's price from the Lambda Cloud API, or None when it cannot be read."""
    try:
        key, _ = lc.api_key(env)
        found = lc.Client(key, lc.base_url()).instance_types()
    except (lc.LambdaError, ConfigError, OSError, ValueError):
        return None
    return next((t.price_cents_per_hour for t in found if t.name == instance_type), None)


def _pyinfra(env: str, deploy: str, data: list[str], extra_env: dict[str, str],
             flags: tuple[str, ...] = ()) -> None:
    data_args = [arg for pair in data for arg in ("--data", pair)]
    result = run_pyinfra(env, *flags, deploy, *data_args, extra_env=extra_env,
                         stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        raise StageFailed(f"{deploy} failed (exit {result.returncode}): see its output above")


def run(env: str, address: str | None = None, launch: Launch | None = None,
        snapshot: str = "latest", data: tuple[str, ...] = (),
        echo: Callable[[str], None] = print, flags: tuple[str, ...] = (),
        extra_env: dict[str, str] | None = None) -> int:
    """Replace ENV's instance and bring its data back; 0 when the new host is all healthy."""
    if env not in config_module.environments():
        raise StageFailed(f"unknown environment {env!r}")
    if (address is None) == (launch is None):
        raise StageFailed("give either an address or what to launch")
    config_module.check(env, config_module.parse_overrides(list(data)))  # before any cost
    stages = Stages(echo)
    if launch is not None:
        address = stages.run("instance", lambda: _launch(env, launch, echo))
    else:
        stages.seconds["instance"] = 0.0
    assert address is not None
    only_new = {hosts.env_var(env): address}
    command = {"ORCHESTRA_COMMAND": f"orchestra-infra reprovision {env}", **(extra_env or {})}
    os.environ.update(only_new)  # the status stage reads the inventory in this process
    stages.run("ssh", lambda: _wait_for_ssh(address))
    overrides = config_module.parse_overrides(list(data))
    stages.run("environment", lambda: check_environment(env, address, overrides))
    if env != "sandbox":  # the sandbox inventory lists the running sandbox hosts itself
        hosts.record(env, address, replace=True)
    stages.run("deploy", lambda: _pyinfra(env, "deploy.py", list(data), {**command, **only_new},
                                          flags))
    stages.run("restore", lambda: _pyinfra(env, "restore.py", list(data), {
        **command, **only_new, "ORCHESTRA_RESTORE_SNAPSHOT": snapshot,
        "ORCHESTRA_RESTORE_FORCE": "",
        # PostgreSQL to its last archived WAL when the archive holds a base backup.
        "ORCHESTRA_RESTORE_TO": "auto"}, flags))

    from . import status

    code = stages.run("status", lambda: status.run(env, False, echo, overrides))
    echo(f"{env}: reprovisioned onto {address}" + ("" if code == 0 else ", NOT all healthy"))
    echo(stages.report())
    return int(code)
