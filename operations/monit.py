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

from operations import postgres, render, system
from operations.facts import MonitStates, MountPoints
from orchestra_infra import catalog

MONIT = "/usr/bin/monit"
CONTROL_FILE = "/etc/monit/monitrc"
# Debian's monitrc includes /etc/monit/conf.d/*; that glob would also read the backup copy
# render.template keeps while `monit -t` validates a file, so ours live one level down.
INCLUDE = "/etc/monit/conf.d/orchestra"
CONF_DIR = "/etc/monit/orchestra"
ALERT_SCRIPT = "/usr/local/lib/orchestra/monit-alert"
WEBHOOK_CONFIG = "/etc/monit/alert-webhook.curl"


def packages(config, groups) -> list[str]:
    return ["monit"]


def monit_test(check: catalog.Check) -> str:
    """A catalogue check in Monit's words."""
    where = f"failed host 127.0.0.1 port {check.port}"
    if check.kind == "pgsql":
        return f"{where} protocol pgsql"
    if check.kind == "redis":
        # The default user is disabled: an unauthenticated PING is answered NOAUTH, which
        # proves Redis is serving as much as PONG does.
        return f'{where} send "PING\\r\\n" expect "^(\\+PONG|-NOAUTH)"'
    status = " status < 600" if check.any_status else ""
    return f'{where} protocol http request "{check.path}"{status}'


def services(config, groups, postgres_major: int | None) -> list[dict]:
    """Every service Monit watches on a host of these groups: how to find its process, the
    commands of its manager, its health checks (``health``: failing restarts it) and its
    readiness checks (``watch``: failing only alerts)."""
    return [{"name": s.monit, "group": s.group, "pidfile": s.pidfile, "matching": s.matching,
             "start": s.start, "stop": s.stop, "restart": s.restart, "timeout": s.start_timeout,
             "health": [monit_test(c) for c in s.liveness],
             "watch": [monit_test(c) for c in s.watch], "resources": s.resources}
            for s in catalog.services(config, groups, postgres_major) if s.monit]


def volume_paths(config, groups) -> list[str]:
    """Paths whose volumes are checked for space and inodes."""
    paths = ["/", config.log_root, "/var/log", config.state_root]
    paths += [d for s in catalog.services(config, groups) for d in s.data_dirs]
    if "app" in groups:
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
def write_config(config, groups, webhook: bool) -> Plan:
    """Write the checks for the services of the host's groups (``webhook``: the secret
    alert_webhook_url is set), before the services change.

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
    mounts = host.get_fact(MountPoints, paths=tuple(volume_paths(config, groups)))
    watched = services(config, groups,
                       postgres.major_version(config) if "data" in groups else None)
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
        context={"monit": MONIT, "control_file": CONTROL_FILE,
                 "pm2_home": catalog.pm2_home(plan.config)},
    )
    # A Monit started by the init script would make the unit's own exit at once (it only
    # wakes a running daemon up): stop that one first, and enable the unit itself.
    server.shell(
        name="Hand Monit over to its unit",
        commands=[render.script("monit/scripts/handover.sh.j2", monit=MONIT,
                                control_file=CONTROL_FILE)],
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
    rounds = catalog.SYSTEMD_TIMEOUT + 30
    status = "awk -v n=\"$n\" '$1 == n {s = $2; for (i = 3; i < NF; i++) s = s \" \" $i; print s}'"
    server.shell(
        name=title,
        commands=[f"for i in $(seq {rounds}); do all=$({MONIT} -B summary 2>/dev/null); left=; "
                  f"for n in {' '.join(names)}; do s=$(echo \"$all\" | {status}); "
                  f'[ -n "$s" ] && [ "${{s%pending}}" = "$s" ] && [ "$s" {done} ] && continue; '
                  f"left=1; {MONIT} {action} $n >/dev/null 2>&1; done; "
                  '[ -z "$left" ] && exit 0; sleep 1; done; exit 1'],
    )
