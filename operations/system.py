"""Directories and systemd units, answered from the run's snapshot (see snapshot.py)."""

from __future__ import annotations

from pyinfra import host, state
from pyinfra.api import StringCommand, operation

from operations import snapshot


@snapshot.registers("dirs", "path")
@operation()
def directory(path: str, user: str = "root", group: str = "root", mode: str = "755"):
    """
    Ensure a directory exists with an owner and mode.

    + path: the directory
    + user, group, mode: its owner and permissions

    **Example:**

    .. code:: python

        system.directory(name="Create /etc/weaviate", path="/etc/weaviate", mode="750")
    """
    current = snapshot.lookup("dirs", path)
    if current is None:
        yield StringCommand("install", "-d", "-m", mode, "-o", user, "-g", group, path)
        return
    if (current["user"], current["group"]) != (user, group):
        yield StringCommand("chown", f"{user}:{group}", path)
    if current["mode"] != int(mode):
        yield StringCommand("chmod", mode, path)
    if (current["user"], current["group"], current["mode"]) == (user, group, int(mode)):
        host.noop(f"directory {path} exists")


def changed(ops) -> bool:
    """Whether any of these operations changes the host: known for certain once they ran
    (execution), predicted while planning (pyinfra's change detection)."""
    if state.is_executing:
        return any(op.did_change() for op in ops)
    return any(op.will_change for op in ops)


@snapshot.registers("units", "unit")
@operation()
def service(unit: str, running: bool = True, enabled: bool = True, restart_when=(),
            reload_when=(), daemon_reload_when=()):
    """
    Keep a systemd unit running (or stopped) and enabled; restart or reload it when the
    operations it depends on changed something.

    + unit: the unit name (``redis-server``, ``postgresql@15-main``)
    + running: whether it should be running
    + enabled: whether it should start at boot
    + restart_when: operations (config files, binaries) whose change needs a restart
    + reload_when: operations whose change needs only a reload (when no restart is due)
    + daemon_reload_when: operations writing unit files or drop-ins

    Unlike ``restarted=op.will_change``, passing the operations themselves defers the
    question to execution, so planning with ``-y`` runs no extra fact commands.

    **Example:**

    .. code:: python

        system.service(name="Run Redis", unit="redis-server", restart_when=[conf])
    """
    current = snapshot.lookup("units", unit)
    daemon_reload = changed(daemon_reload_when)
    restarted = changed(restart_when)
    reloaded = not restarted and changed(reload_when)
    if daemon_reload:
        yield "systemctl daemon-reload"
    # restart and reload-or-restart also start a stopped unit; a unit seen stopped may have
    # been started since the snapshot (a package's postinst), so what was asked for wins.
    if running and restarted:
        yield StringCommand("systemctl", "restart", unit)
    elif running and reloaded:
        yield StringCommand("systemctl", "reload-or-restart", unit)
    elif running and not current["active"]:
        yield StringCommand("systemctl", "start", unit)
    elif not running and current["active"]:
        yield StringCommand("systemctl", "stop", unit)
    if enabled and not current["enabled"]:
        yield StringCommand("systemctl", "enable", unit)
    elif not enabled and current["enabled"] and current["exists"]:
        yield StringCommand("systemctl", "disable", unit)
    if not (daemon_reload or restarted or reloaded) and current["active"] == running and \
            current["enabled"] == enabled:
        host.noop(f"unit {unit} is {'running' if running else 'stopped'}")
