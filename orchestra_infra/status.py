"""``orchestra-infra status ENV``: every service on every host of an environment, one table.

The operator's first question after a page or a deploy: what runs, since when, how often
it restarted, does it answer, how much memory it holds. Each host gets one SSH command
(status_probe.py) and this module turns the answer into rows: systemd units, Supervisor
programs, PM2 apps, one row per disk and one for the last backup. A row is ``ok``,
``warn`` or ``fail``; the exit status is 1 when any row fails or a host is unreachable,
so scripts and cron can use it (``--json`` for the details).

A service counts as failing when it is not running (stopped, FATAL, restarting after a
crash), when its process is stopped (SIGSTOP) or when its health check does not pass
(a hung process: up, but no answer within 2 s). A backup never made is a warning, not a
failure: a fresh environment has none yet, and status must not fail for that; once a
backup has succeeded, one older than 26 hours fails.
"""

from __future__ import annotations

import json
import time

from . import catalog, schema, secrets, status_hosts, status_rows
from . import config as config_module
from . import status_probe as probe_module
from .status_hosts import Target
from .status_probe import Plan, Probe
from .status_rows import (  # noqa: F401 (the rows' vocabulary, used with this module's name)
    LAYERS,
    HostSpec,
    Row,
    Service,
    _size,
    format_duration,
    http_result,
    postgres_result,
    redis_result,
    sort_rows,
    unreachable_row,
)

# Disk use that fails a host, unless the data sets monit_disk_alert_percent.
DISK_ALERT_PERCENT = 85
# A backup older than this fails, unless the data sets prometheus_backup_max_age_hours.
BACKUP_STALE_HOURS = 26


# --- what each host should run --------------------------------------------------------------


def _check(readiness) -> str | None:
    """The protocol check of a catalogue service, by the name the probe answers to."""
    kinds = [c.kind for c in readiness if c.kind not in ("http", "https")]
    return {"pgsql": "postgres"}.get(kinds[0], kinds[0]) if kinds else None


def services(config, groups) -> list[Service]:
    """The services of a host in these inventory groups, from the catalogue, in the order
    a request meets them (the catalogue's is the order they are set up in)."""
    found = [Service(s.name, s.manager, s.status_layer, port=s.port, optional=s.optional,
                    unit=f"{s.unit}.service" if s.manager == "systemd" and s.unit else None,
                    urls=tuple(c.url for c in s.readiness if c.kind in ("http", "https")),
                     site_urls=tuple(c.url for c in s.through), check=_check(s.readiness))
             for s in catalog.services(config, groups)]
    return sorted(found, key=lambda s: LAYERS.index(s.layer))


def disk_paths(config, groups) -> tuple[str, ...]:
    """Paths whose volumes are checked (one row per volume): what Monit watches."""
    paths = ["/", config.log_root, config.install_root,
             *getattr(config, "monit_extra_filesystems", [])]
    paths += [d for s in catalog.services(config, groups) for d in s.data_dirs]
    if "data" in groups:
        repository = getattr(config, "restic_repository", "")
        if repository.startswith("/"):
            paths.append(repository)
    return tuple(dict.fromkeys(paths))


def backup_file(config) -> str:
    return f"{config.state_root}/backup/last-success"


def plan(config, groups) -> Plan:
    found = services(config, groups)
    checks = {s.check for s in found}
    return Plan(
        units=tuple(s.unit for s in found if s.unit),
        postgres="postgres" in checks,
        postgres_version=config.postgres_version,
        urls=tuple(url for s in found for url in (*s.urls, *s.site_urls)),
        postgres_port=config.postgres_port if "postgres" in checks else None,
        redis_port=config.redis_port if "redis" in checks else None,
        supervisor="supervisord" in checks,
        pm2=((config.service_user, f"/var/lib/{config.service_user}", catalog.pm2_home(config))
             if "pm2" in checks else None),
        disk_paths=disk_paths(config, groups),
        backup_file=backup_file(config) if "data" in groups else None,
    )


def host_spec(config, groups) -> HostSpec:
    """What a host in these groups should run, and its thresholds, from the data."""
    return HostSpec(
        services=tuple(services(config, groups)),
        monit_names={s.name: s.monit for s in catalog.services(config, groups) if s.monit},
        log_root=config.log_root,
        supervisor_startretries=config.supervisor_startretries,
        disk_alert_percent=getattr(config, "monit_disk_alert_percent", DISK_ALERT_PERCENT),
        backup_file=backup_file(config) if "data" in groups else None,
        backup_enabled=getattr(config, "backup_enabled", True),
        backup_start_empty=getattr(config, "backup_start_empty", False),
        backup_stale_hours=getattr(config, "prometheus_backup_max_age_hours",
                                   BACKUP_STALE_HOURS),
        pg_archive_enabled=getattr(config, "pg_archive_enabled", False),
        copy_intervals={store: getattr(config, f"backup_{store}_interval", "1h")
                        for store in ("redis", "weaviate")},
    )


def host_rows(config, host: str, groups, probe: Probe) -> list[Row]:
    """Every row of one host that answered."""
    return status_rows.host_rows(host_spec(config, groups), host, probe)


# --- output ------------------------------------------------------------------------------------


def table(rows: list[Row]) -> str:
    columns = [
        ("HOST", lambda r: r.host),
        ("SERVICE", lambda r: r.service),
        ("MANAGER", lambda r: r.manager),
        ("STATE", lambda r: r.state),
        ("UPTIME", lambda r: format_duration(r.uptime_seconds)),
        ("RESTARTS", lambda r: "-" if r.restarts is None else str(r.restarts)),
        ("HEALTH", lambda r: r.health if r.health == "ok" else r.health.upper()),
        ("PORT", lambda r: "-" if r.port is None else str(r.port)),
        ("MEMORY", lambda r: _size(r.memory_bytes)),
        ("NOTE", lambda r: r.note),
    ]
    cells = [[title for title, _ in columns]] + [[get(r) for _, get in columns] for r in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in cells)


def summary(rows: list[Row], hosts: int, seconds: float) -> str:
    counts = {health: sum(r.health == health for r in rows) for health in ("ok", "warn", "fail")}
    return (f"{len(rows)} rows on {hosts} host(s): {counts['ok']} ok, {counts['warn']} warn, "
            f"{counts['fail']} failing ({seconds:.1f} s)")


def collect(env: str, overrides: dict | None = None) -> tuple[list[Row], int]:
    """Rows of every host of ENV; raises ConfigError for invalid data or inventory."""
    data = config_module.environment_data(env, overrides)
    config = schema.validate(data, secrets.NAMES)
    hosts = status_hosts.targets(env, data)
    answers = status_hosts.run_everywhere(
        hosts, lambda t: probe_module.script(plan(config, t.groups)))
    rows: list[Row] = []
    for target in hosts:
        out, error = answers[target.name]
        rows.extend(_rows_of(config, target, out, error))
    return sort_rows(rows), len(hosts)


def _rows_of(config, target: Target, out: str | None, error: str | None) -> list[Row]:
    if out is None:
        error = error or "no answer"
        connected = not error.startswith(status_hosts.CONNECT_ERRORS)
        return [unreachable_row(target.label, error, "no status" if connected else "unreachable")]
    probe = probe_module.parse(out)
    if probe.now is None:
        return [unreachable_row(target.label, "the status script printed nothing usable",
                                "no status")]
    return host_rows(config, target.label, target.groups, probe)


def run(env: str, as_json: bool, echo=print, overrides: dict | None = None) -> int:
    """Print ENV's status; 0 when every row is ok or a warning, 1 otherwise."""
    started = time.monotonic()
    rows, hosts = collect(env, overrides)
    if as_json:
        echo(json.dumps([row.as_dict() for row in rows], indent=2))
    else:
        echo(table(rows))
        echo("")
        echo(summary(rows, hosts, time.monotonic() - started))
    return 1 if any(row.health == "fail" for row in rows) else 0
