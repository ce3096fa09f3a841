"""Monit: health checks that restart what fails, through the manager that owns it, and alert.

The distro's Monit checks every 120 s after a 240 s delay, and only what an operator writes
down. Here every service of the host's groups gets its process, its HTTP or protocol health
check (a timeout, a number of failed rounds) and a restart through its own manager
(supervisorctl, pm2, systemctl); volumes, memory, CPU and load are checked too. A service
that keeps failing is left alone after a few restarts, with an alert: never a silent loop.

Alerts: an `exec` of monit-alert beside each rule (Monit has no webhook of its own, and
its own email would send one message per rule, two per event) posts the event to the
Slack-compatible webhook and mails it through the relay; the script reads the webhook's URL
from a root-only file, never from its command line.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.operations import files, server

from operations import app, pm2, postgres, render, system, weaviate
from operations.facts import MonitStates, MountPoints

PACKAGES = ["monit"]
MONIT = "/usr/bin/monit"
CONTROL_FILE = "/etc/monit/monitrc"
# Debian's monitrc includes /etc/monit/conf.d/*; that glob would also read the backup copy
# render.template keeps while `monit -t` validates a file, so ours live one level down.
INCLUDE = "/etc/monit/conf.d/orchestra"
CONF_DIR = "/etc/monit/orchestra"
ALERT_SCRIPT = "/usr/local/lib/orchestra/monit-alert"
WEBHOOK_CONFIG = "/etc/monit/alert-webhook.curl"
SUPERVISORCTL = "/usr/bin/supervisorctl"
SYSTEMCTL = "/bin/systemctl"


# Monit waits this long for a process it (re)started to appear, blocking every other check
# meanwhile, and skips the port checks of a process younger than this (its startup grace).
SYSTEMD_TIMEOUT = 60


def _systemd(unit: str, pidfile: str | None = None, matching: str | None = None) -> dict:
    return {
        "pidfile": pidfile,
        "matching": matching,
        "start": f"{SYSTEMCTL} start {unit}",
        "stop": f"{SYSTEMCTL} stop {unit}",
        "restart": f"{SYSTEMCTL} restart {unit}",
        "timeout": SYSTEMD_TIMEOUT,
    }


def _http(port: int, path: str, status: str | None = None) -> str:
    status = f" status {status}" if status else ""
    return f'failed host 127.0.0.1 port {port} protocol http request "{path}"{status}'


def posix_escape(text: str) -> str:
    """Escape text for a POSIX extended regular expression (what Monit's `matching` uses)."""
    return re.sub(r"([.^$*+?()\[\]{}|\\])", r"\\\1", text)


def _program(config, program: dict) -> dict:
    name = f"orchestra:{program['name']}"
    module = posix_escape(program["module"])
    return {
        "name": program["name"],
        "group": "app",
        "pidfile": None,
        # The command line Supervisor runs (the launcher execs it); the port tells the API
        # instances apart and keeps a release's health check on the preflight port out.
        "matching": f"-m {module} --host 127\\.0\\.0\\.1 --port {program['port']}$",
        "start": f"{SUPERVISORCTL} start {name}",
        "stop": f"{SUPERVISORCTL} stop {name}",
        # Monit restarts only what stopped answering: a hung process may never act on
        # SIGTERM (nor a stopped one, SIGSTOP), and a graceful stop would wait
        # supervisor_stopwaitsecs for nothing. Supervisor (autorestart) starts it again.
        "restart": f"{SUPERVISORCTL} signal KILL {name}",
        # `supervisorctl start` returns once the program has run startsecs (or failed).
        "timeout": config.supervisor_startsecs + 10,
        # Liveness: any HTTP answer. /api/health/ answers 503 while a store is down; a
        # restart would not bring PostgreSQL back (its own check does).
        "health": [_http(program["port"], program["health"], "< 600")],
        "watch": [],
        "resources": True,
    }


def _admin(config) -> dict:
    as_user = (f"/usr/sbin/runuser -u {config.service_user} -- /usr/bin/env "
               f"HOME=/var/lib/{config.service_user} PM2_HOME={pm2.pm2_home(config)} {pm2.PM2}")
    return {
        **_systemd("pm2-orchestra", pidfile=f"{pm2.pm2_home(config)}/pm2.pid"),
        "name": "admin",
        "group": "app",
        # The PM2 daemon: its children are the admin's processes, whatever their number.
        "restart": f"{as_user} restart orchestra-admin",
        "health": [_http(config.admin_port, "/")],
        "watch": [],
        "resources": True,
    }


def services(config, data: bool, app_host: bool, edge: bool) -> list[dict]:
    """Every service Monit watches on a host of these groups: how to find its process, the
    commands of its manager, its health checks (``health``: failing restarts it) and its
    readiness checks (``watch``: failing only alerts)."""
    found = []
    if data:
        version = postgres.major_version(config)
        found += [
            {**_systemd(f"postgresql@{version}-main",
                        pidfile=f"/var/run/postgresql/{version}-main.pid"),
             "name": "postgres", "group": "data",
             "health": [f"failed host 127.0.0.1 port {config.postgres_port} protocol pgsql"],
             "watch": [],
             # Its processes share the buffer cache, which each one's RSS counts again.
             "resources": False},
            {**_systemd("redis-server", pidfile="/run/redis/redis-server.pid"),
             "name": "redis", "group": "data",
             # The default user is disabled: an unauthenticated PING is answered NOAUTH,
             # which proves Redis is serving as much as PONG does.
             "health": [f'failed host 127.0.0.1 port {config.redis_port} send "PING\\r\\n" '
                        'expect "^(\\+PONG|-NOAUTH)"'],
             "watch": [], "resources": True},
            # The release binary, or the sandbox's stand-in run by python3.
            {**_systemd("weaviate", matching=f"{weaviate.CURRENT}/weaviate --host "),
             "name": "weaviate", "group": "data",
             # Alive restarts it; not ready (loading its shards, a cluster problem) alerts.
             "health": [_http(config.weaviate_port, "/v1/.well-known/live")],
             "watch": [_http(config.weaviate_port, "/v1/.well-known/ready")],
             "resources": True},
        ]
    if app_host:
        found.append({**_systemd("supervisor", pidfile="/var/run/supervisord.pid"),
                      "name": "supervisord", "group": "app", "health": [], "watch": [],
                      "resources": False})
        found += [_program(config, program) for program in app.programs(config)]
        found.append(_admin(config))
    if edge:
        found.append({**_systemd("nginx", pidfile="/run/nginx.pid"),
                      "name": "nginx", "group": "edge",
                      "health": [_http(config.nginx_stub_status_port, "/stub_status")],
                      "watch": [], "resources": True})
    return found


def volume_paths(config, data: bool, app_host: bool) -> list[str]:
    """Paths whose volumes are checked for space and inodes."""
    paths = ["/", config.log_root, "/var/log", config.state_root]
    if data:
        paths += ["/var/lib/postgresql", "/var/lib/redis", config.weaviate_data_dir,
                  config.weaviate_backup_dir]
    if app_host:
        paths.append(config.install_root)
    return paths + list(config.monit_extra_filesystems)


def filesystem_name(mount_point: str) -> str:
    """``/`` -> ``fs-root``, ``/var/lib/postgresql`` -> ``fs-var-lib-postgresql``."""
    slug = re.sub(r"[^A-Za-z0-9]+", "-", mount_point).strip("-")
    return f"fs-{slug or 'root'}"


def alert_context(config) -> dict:
    """What monit-alert.j2 needs: the webhook's URL file and the email settings."""
    host = config.alert_smtp_host or ""
    return {"webhook_config": WEBHOOK_CONFIG, "email_to": config.alert_email_to,
            "email_from": config.alert_email_from,
            "rcpt_args": " ".join(f"--mail-rcpt {shlex.quote(a)}" for a in config.alert_email_to),
            "smtp_host": f"[{host}]" if ":" in host else host,
            "smtp_port": config.alert_smtp_port}


@dataclass
class Plan:
    """What :func:`write_config` wrote and found, for :func:`run` once the services changed."""

    config: object
    changed: list  # the operations whose change needs a reload
    watched: set[str]  # our checks: services and volumes
    states: dict[str, str]  # the MonitStates fact, read before any change
    held: list[str]


@deploy("Monit")
def write_config(config, data: bool, app_host: bool, edge: bool, webhook: bool) -> Plan:
    """Write the checks for the services of the host's groups (``data``, ``app_host``,
    ``edge``; ``webhook``: the secret alert_webhook_url is set), before the services change.

    Monit reads them at the reload in :func:`run`, the deploy's last step. Until then its
    checks are those of the previous deploy, which may no longer match a reconfigured
    service (a moved port: its process "does not exist", its health check fails): when the
    checks change, Monit stops watching the services until the reload, instead of
    restarting them and alerting at the deploy's every step."""
    system.directory(name="Create /usr/local/lib/orchestra", path="/usr/local/lib/orchestra")
    render.template(
        name="Install the monit-alert script (webhook and email)",
        src="monit/usr/local/lib/orchestra/monit-alert.j2",
        dest=ALERT_SCRIPT,
        context=alert_context(config),
        mode="755",
    )
    if webhook:
        render.template(
            name="Write the alert webhook URL (root only)",
            src="monit/etc/monit/alert-webhook.curl.j2",
            dest=WEBHOOK_CONFIG,
            mode="600",
            secret=True,
        )
    else:
        files.file(name="Remove the alert webhook URL (none configured)", path=WEBHOOK_CONFIG,
                   present=False)
    system.directory(name=f"Create {CONF_DIR}", path=CONF_DIR, mode="700")
    include = render.template(
        name="Include the Orchestra checks in Monit's configuration",
        src="monit/etc/monit/conf.d/orchestra.j2",
        dest=INCLUDE,
        context={"conf_dir": CONF_DIR},
        mode="600",
    )
    validate = f"{MONIT} -t -c {CONTROL_FILE} >/dev/null"
    settings = render.template(
        name="Configure Monit (check rounds, web interface, email)",
        src="monit/etc/monit/orchestra/settings.conf.j2",
        dest=f"{CONF_DIR}/settings.conf",
        context={"config": config},
        mode="600",
        secret=True,
        validate=validate,
    )
    mounts = host.get_fact(MountPoints, paths=tuple(volume_paths(config, data, app_host)))
    watched = services(config, data, app_host, edge)
    checks = render.template(
        name="Configure the Monit checks",
        src="monit/etc/monit/orchestra/checks.conf.j2",
        dest=f"{CONF_DIR}/checks.conf",
        context={"config": config, "alert": ALERT_SCRIPT,
                 "services": watched,
                 "filesystems": {filesystem_name(m): m for m in mounts}},
        mode="600",
        validate=validate,
    )
    states = host.get_fact(MonitStates, monit=MONIT)
    paused = set(config.monit_paused)
    held = [s["name"] for s in watched if s["name"] not in paused
            and states.get(s["name"], "Not monitored") != "Not monitored"]
    if held and checks.will_change:
        _each("unmonitor", held, f"Hold the checks while the services change: "
              f"{', '.join(held)}")
    else:
        held = []
    ours = {s["name"] for s in watched} | {filesystem_name(m) for m in mounts}
    return Plan(config, [include, settings, checks], ours, states, held)


@deploy("Monit")
def run(plan: Plan):
    """Run Monit under systemd with the checks of :func:`write_config`, and watch every
    check but those of monit_paused."""
    # After the checks, before the restart it needs: a run stopped by a failed validation
    # in write_config leaves the distro's init script in charge, and the next run switches.
    unit = render.template(
        name="Run Monit under systemd (restarted if it dies)",
        src="monit/etc/systemd/system/monit.service.j2",
        dest="/etc/systemd/system/monit.service",
        context={"monit": MONIT, "control_file": CONTROL_FILE},
    )
    # A Monit started by the init script would make the unit's own exit at once (it only
    # wakes a running daemon up): stop that one first, and enable the unit itself.
    server.shell(
        name="Hand Monit over to its unit",
        commands=[f"systemctl daemon-reload && {{ {MONIT} -c {CONTROL_FILE} quit >/dev/null "
                  "2>&1 || true; } && for i in $(seq 30); do pid=$(cat /run/monit.pid "
                  "2>/dev/null) && kill -0 \"$pid\" 2>/dev/null || break; sleep 1; done && "
                  "systemctl enable --quiet monit"],
        _if=unit.did_change,
    )
    system.service(name="Run Monit", unit="monit", restart_when=[unit],
                   reload_when=plan.changed)
    # The desired state: watched, but for monit_paused. A check Monit gave up on (after
    # monit_restart_limit restarts) or paused by hand is armed again, as by `monit monitor`.
    # Monit keeps this state across reloads; its web interface may need a moment after one.
    paused = plan.config.monit_paused
    rearm = [n for n, status in plan.states.items()
             if status == "Not monitored" and n in plan.watched and n not in paused]
    pause = [n for n in paused if n in plan.watched and plan.states.get(n) != "Not monitored"]
    for action, names, title in (
            ("monitor", rearm, "Watch again what Monit stopped watching"),
            ("monitor", plan.held, "Watch the checks held while the services changed"),
            ("unmonitor", pause, "Pause the checks of monit_paused")):
        if names:
            _each(action, names, f"{title}: {', '.join(names)}")


def _each(action: str, names: list[str], title: str):
    """``monit ACTION NAME`` for each name until Monit shows them all done: Monit drops an
    action it receives while it reloads (and its web interface may need a moment after one).
    It does them between its checks, and one start blocks it for up to SYSTEMD_TIMEOUT.
    """
    done = '= "Not monitored"' if action == "unmonitor" else '!= "Not monitored"'
    rounds = SYSTEMD_TIMEOUT + 30
    status = "awk -v n=\"$n\" '$1 == n {s = $2; for (i = 3; i < NF; i++) s = s \" \" $i; print s}'"
    server.shell(
        name=title,
        commands=[f"for i in $(seq {rounds}); do all=$({MONIT} -B summary 2>/dev/null); left=; "
                  f"for n in {' '.join(names)}; do s=$(echo \"$all\" | {status}); "
                  f'[ -n "$s" ] && [ "${{s%pending}}" = "$s" ] && [ "$s" {done} ] && continue; '
                  f"left=1; {MONIT} {action} $n >/dev/null 2>&1; done; "
                  '[ -z "$left" ] && exit 0; sleep 1; done; exit 1'],
    )
