"""Supervisor runs the API instances and MCP servers; restarts roll, one instance at a time."""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import QuoteString, StringCommand, deploy, operation
from pyinfra.operations import server
from pyinfra.operations.util import any_changed

from operations import app, render, system, wireguard
from operations.facts import SupervisorStatus
from orchestra_infra import catalog
from orchestra_infra.status_probe import SUPERVISOR_SOCKET as SOCKET

CONF = "/etc/supervisor/conf.d/orchestra.conf"


def packages(config, groups) -> list[str]:
    return ["supervisor"]


@deploy("Supervisor")
def configure(config, restart_when: list, after_units: list[str]):
    """Programs from the port table; ``restart_when``: operations (release, env files)
    whose change restarts them, rolling."""
    after = " ".join(after_units)
    dropin = system.restart_always_dropin(
        "supervisor", name="Start supervisord after the data services",
        why="the apps start after the data services they use, and\n"
            "supervisord itself comes back if it dies.",
        unit_settings=[f"After={after}", f"Wants={after}"],
        sandbox=system.process_manager_sandbox(
            ["-/var/log/supervisor", "-/run", config.log_root]),
    )
    programs = app.programs(config)
    # Each MCP instance's sessions' ids begin with its route, the edge's map to it.
    routes = {p["name"]: catalog.session_route(host.name, p["port"]) for p in programs
              if "mcp" in p}
    conf = render.template(
        name="Configure the Supervisor programs",
        src="supervisor/etc/supervisor/conf.d/orchestra.conf.j2",
        dest=CONF,
        context={"config": config, "programs": programs, "routes": routes,
                 "launcher": app.launcher(config),
                 "current": app.current_link(config)},
    )
    # supervisord's only control interface is its unix socket (0700, root): the distro
    # default, which this deploy never changes.
    system.service(name="Run supervisord", unit="supervisor", daemon_reload_when=[dropin])
    server.shell(
        name="Apply changed Supervisor programs",
        commands=["supervisorctl reread >/dev/null && supervisorctl update"],
        _if=conf.did_change,
    )
    running(name="Keep every program running", programs=[p["name"] for p in programs])
    rolling_restart(
        name="Restart the programs one at a time",
        programs=programs,
        timeout=config.app_health_timeout,
        _if=any_changed(*restart_when),
        # Several app hosts: one host at a time, each healthy again before the next, so
        # the edge always has healthy upstreams while a release rolls.
        _serial=wireguard.enabled(),
    )


@operation()
def running(programs: list[str]):
    """
    Start programs that are stopped, exited or FATAL (a manual stop, a crash loop that
    ran out of retries); supervisord itself restarts the ones that crash.

    + programs: program names in the ``orchestra`` group
    """
    status = host.get_fact(SupervisorStatus, socket=SOCKET)
    stopped = [name for name in programs
               if status and status.get(f"orchestra:{name}", "RUNNING") not in
               ("RUNNING", "STARTING")]
    if not stopped:
        host.noop("every program is running")
        return
    yield StringCommand("supervisorctl", "start", *(f"orchestra:{name}" for name in stopped))


@operation(is_idempotent=False)
def rolling_restart(programs: list[dict], timeout: int = 60):
    """
    Restart Supervisor programs one by one, each healthy again before the next goes down,
    so the API keeps an instance to serve from (nginx retries the others).

    + programs: as built by ``app.programs`` (name, port, health path, log)
    + timeout: seconds each one has to report healthy
    """
    for program in programs:
        yield StringCommand("supervisorctl", "restart", f"orchestra:{program['name']}")
        yield StringCommand("sh", "-c", QuoteString(system.wait_healthy(
            program["name"], program["port"], program["health"], timeout,
            on_failure=f"tail -n 30 {program['log']} >&2; ")))
