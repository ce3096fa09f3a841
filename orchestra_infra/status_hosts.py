"""The hosts of an environment, and one script run on each of them over SSH, in parallel.

``orchestra-infra status`` reads an inventory the way pyinfra does (executing
inventories/ENV.py, so ``hosts/ENV``, ``ORCHESTRA_<ENV>_HOSTS`` and the sandbox's
``ORCHESTRA_SANDBOX_HOSTS`` all apply) and connects with the same host data pyinfra
would use (``ssh_user``, ``ssh_key``, ``ssh_port``, host key checking, paramiko
options), but with plain paramiko and threads: pyinfra's API only runs hosts in
parallel under gevent's monkey-patching, which this process must not do.
A host that cannot be reached is an answer ("cannot connect: ..."), never an exception.
"""

from __future__ import annotations

import logging
import os
import runpy
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from . import config as config_module
from .errors import ConfigError

CONNECT_TIMEOUT = 10
MAX_PARALLEL = 16
# How run_script's errors start when no session was opened (the host is unreachable).
CONNECT_ERRORS = ("cannot connect", "cannot log in", "host key")


@dataclass(frozen=True)
class Target:
    name: str                  # the inventory's name for the host (usually its address)
    groups: tuple[str, ...]
    data: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def label(self) -> str:
        """What the status table calls the host: the sandbox name when there is one."""
        return self.data.get("sandbox_name") or self.name


def inventory_groups(namespace: dict[str, Any]) -> dict[str, list[tuple[str, dict]]]:
    """An executed inventory file -> {group: [(host, host data), ...]}, as pyinfra reads it:
    every public list or tuple is a group; ``(hosts, data)`` gives the group data."""
    groups: dict[str, list[tuple[str, dict]]] = {}
    for name, value in namespace.items():
        if name.startswith("_") or not isinstance(value, (list, tuple)):
            continue
        group_data: dict = {}
        if (isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], dict)
                and isinstance(value[0], (list, tuple))):
            value, group_data = value
        members = []
        for entry in value:
            if isinstance(entry, str):
                members.append((entry, dict(group_data)))
            elif (isinstance(entry, (list, tuple)) and len(entry) == 2
                  and isinstance(entry[0], str) and isinstance(entry[1], dict)):
                members.append((entry[0], {**group_data, **entry[1]}))
        groups[name] = members
    return groups


def targets(env: str, data: dict[str, Any]) -> list[Target]:
    """The environment's hosts with their groups; ``data``: the environment's group data."""
    from pyinfra.api.exceptions import InventoryError

    path = config_module.project_root() / "inventories" / f"{env}.py"
    try:
        namespace = runpy.run_path(str(path))
    except InventoryError as e:
        raise ConfigError([f"inventories/{env}.py: {e}"]) from None
    found: dict[str, tuple[list[str], dict]] = {}
    for group, members in inventory_groups(namespace).items():
        for host, host_data in members:
            groups, merged = found.setdefault(host, ([], dict(data)))
            groups.append(group)
            merged.update(host_data)
    if not found:
        raise ConfigError([f"inventories/{env}.py: no hosts"])
    return [Target(name, tuple(groups), merged) for name, (groups, merged) in found.items()]


# --- SSH ------------------------------------------------------------------------------------

_known_hosts_lock = threading.Lock()


def _connect_kwargs(target: Target) -> tuple[str, dict[str, Any]]:
    """paramiko's connect() arguments from pyinfra host data (and ~/.ssh/config)."""
    import paramiko

    data = target.data
    ssh_config: dict[str, Any] = {}
    config_file = os.path.expanduser(data.get("ssh_config_file") or "~/.ssh/config")
    if os.path.isfile(config_file):
        ssh_config = paramiko.SSHConfig.from_path(config_file).lookup(target.name)
    hostname = data.get("ssh_hostname") or ssh_config.get("hostname") or target.name
    kwargs: dict[str, Any] = {
        "port": int(data.get("ssh_port") or ssh_config.get("port") or 22),
        "username": data.get("ssh_user") or ssh_config.get("user"),
        "timeout": CONNECT_TIMEOUT,
        "banner_timeout": CONNECT_TIMEOUT,
        "auth_timeout": CONNECT_TIMEOUT,
    }
    key = data.get("ssh_key") or (ssh_config.get("identityfile") or [None])[0]
    if key:
        kwargs.update(key_filename=os.path.expanduser(key), allow_agent=False,
                      look_for_keys=False, passphrase=data.get("ssh_key_password"))
    else:
        kwargs.update(allow_agent=data.get("ssh_allow_agent", True),
                      look_for_keys=data.get("ssh_look_for_keys", True))
    if data.get("ssh_password"):
        kwargs["password"] = data["ssh_password"]
    kwargs.update(data.get("ssh_paramiko_connect_kwargs") or {})
    return hostname, kwargs


def _host_key_policy(client, data: dict[str, Any]):
    """pyinfra's ``ssh_strict_host_key_checking`` (default accept-new); status never asks."""
    import paramiko

    known_hosts = os.path.expanduser(data.get("ssh_known_hosts_file") or "~/.ssh/known_hosts")
    if known_hosts != os.devnull and os.path.isfile(known_hosts):
        client.load_host_keys(known_hosts)
    mode = str(data.get("ssh_strict_host_key_checking", "accept-new")).lower()

    class AcceptNew(paramiko.MissingHostKeyPolicy):
        def missing_host_key(self, client, hostname, key):
            if known_hosts == os.devnull:
                return
            line = paramiko.hostkeys.HostKeyEntry([hostname], key).to_line()
            try:
                with _known_hosts_lock, open(known_hosts, "a") as f:
                    f.write(line)
            except OSError:
                pass  # the key is still accepted for this run, as ssh does

    class Accept(paramiko.MissingHostKeyPolicy):
        def missing_host_key(self, client, hostname, key):
            return

    if mode in ("off", "no"):
        return Accept()
    if mode == "accept-new":
        return AcceptNew()
    return paramiko.RejectPolicy()  # "yes", and "ask": a status run has no one to ask


def run_script(target: Target, script: str, timeout: float = 30) -> tuple[str | None, str | None]:
    """Run ``script`` with ``sh -s`` as root (sudo -n) on the host: (stdout, error)."""
    import paramiko

    # paramiko's transport thread logs its errors; the row already says what failed.
    logging.getLogger("paramiko").addHandler(logging.NullHandler())
    client = paramiko.SSHClient()
    try:
        hostname, kwargs = _connect_kwargs(target)
    except (OSError, ValueError, KeyError) as e:
        return None, f"cannot connect: unusable connection settings: {e}"
    try:
        client.set_missing_host_key_policy(_host_key_policy(client, target.data))
        client.connect(hostname, **kwargs)
    except paramiko.AuthenticationException as e:
        return None, f"cannot log in as {kwargs.get('username')}: {e}"
    except paramiko.BadHostKeyException:
        return None, "host key does not match known_hosts"
    except (OSError, paramiko.SSHException, EOFError) as e:
        why = str(e) or type(e).__name__
        if why == "No existing session":  # what paramiko says when the handshake stalled
            why = f"no SSH handshake within {CONNECT_TIMEOUT} s"
        return None, f"cannot connect to {hostname}:{kwargs['port']}: {why}"
    try:
        command = "sh -s" if kwargs.get("username") == "root" else "sudo -n sh -s"
        stdin, stdout, stderr = client.exec_command(command, timeout=timeout)
        stdin.write(script)
        stdin.channel.shutdown_write()
        out = stdout.read().decode(errors="replace")
        err = stderr.read().decode(errors="replace").strip()
        code = stdout.channel.recv_exit_status()
    except (OSError, paramiko.SSHException, EOFError) as e:
        return None, f"no answer: {e or type(e).__name__}"
    finally:
        client.close()
    if code != 0:
        return None, (err.splitlines() or [f"exit status {code}"])[-1]
    return out, None


def run_everywhere(targets: list[Target], script_for: Callable[[Target], str]
                   ) -> dict[str, tuple[str | None, str | None]]:
    """``run_script`` on every target at once (threads); {target name: (stdout, error)}."""
    if not targets:
        return {}
    def one(target: Target) -> tuple[str | None, str | None]:
        try:
            return run_script(target, script_for(target))
        except Exception as e:  # one host's surprise must not hide the others' status
            return None, f"status failed: {type(e).__name__}: {e}"

    with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL, len(targets))) as pool:
        futures = {t.name: pool.submit(one, t) for t in targets}
        return {name: future.result() for name, future in futures.items()}
