"""The rows of ``orchestra-infra status``, from one host's probe answer and its ``HostSpec``.

Standard library only (with ``status_probe``'s parser), because it runs in two places: on the
control machine for ``orchestra-infra status``, and on each admin host, where the deploy
installs it beside a ``spec.json`` (``HostSpec``: what the host should run, computed from the
data and the catalogue at deploy time) and a timer writes the same rows as JSON for the admin
page (templates/status/, operations/admin_status.py). A row is ``ok``, ``warn`` or ``fail``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from .status_probe import Probe

LAYERS = ("host", "edge", "app", "data", "ops")
_CURL_ERRORS = {6: "cannot resolve", 7: "connection refused", 28: "timed out",
                35: "TLS handshake failed", 52: "empty reply", 56: "connection reset"}
_PG_ISREADY = {1: "rejecting connections (starting or stopping)", 2: "no response",
               3: "not attempted (bad parameters)", 124: "timed out", 127: "pg_isready missing"}
_MONIT_OK = {"ok", "running", "accessible", "online with all services", "status ok",
             "initializing"}
_NOT_RUNNING = {"activating": "starting", "deactivating": "stopping", "inactive": "stopped"}


@dataclass(frozen=True)
class Service:
    """A service a host should run (or may run, when ``optional``)."""

    name: str
    manager: str                 # systemd, supervisor, pm2
    layer: str
    unit: str | None = None      # systemd unit
    port: int | None = None
    urls: tuple[str, ...] = ()   # health: every URL must answer 2xx/3xx
    site_urls: tuple[str, ...] = ()  # requests it passes on to others (nginx to the API)
    check: str | None = None     # other health checks: postgres, redis, supervisord, pm2, monit
    optional: bool = False


@dataclass
class Row:
    host: str
    service: str
    manager: str
    layer: str
    state: str = "-"
    uptime_seconds: int | None = None
    restarts: int | None = None
    health: str = "ok"           # ok, warn, fail
    port: int | None = None
    memory_bytes: int | None = None
    pid: int | None = None
    note: str = ""
    monit: str | None = None     # Monit's own view of the service, when it watches it
    notes: list[str] = field(default_factory=list, repr=False)

    def fail(self, why: str) -> None:
        self.health = "fail"
        self.notes.append(why)

    def warn(self, why: str) -> None:
        if self.health == "ok":
            self.health = "warn"
        self.notes.append(why)

    def as_dict(self) -> dict:
        data = asdict(self)
        del data["notes"]
        return data


@dataclass(frozen=True)
class HostSpec:
    """What one host should run and the thresholds its rows are judged by: everything the
    rows need from the data, so that a host can compute them without the data."""

    services: tuple[Service, ...]
    log_root: str                      # where the Supervisor programs' logs are
    supervisor_startretries: int
    disk_alert_percent: int
    backup_file: str | None            # None: no backup row (not a data host)
    backup_enabled: bool
    backup_start_empty: bool
    backup_stale_hours: int
    monit_names: dict[str, str] = field(default_factory=dict)  # service -> Monit's name
    pg_archive_enabled: bool = False   # a pg-archive row (PostgreSQL's continuous archive)
    copy_intervals: dict[str, str] = field(default_factory=dict)  # store -> its copies' interval

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> HostSpec:
        services = tuple(Service(**{k: tuple(v) if isinstance(v, list) else v
                                    for k, v in s.items()}) for s in data["services"])
        return cls(**{**data, "services": services})


# --- answers -> rows ---------------------------------------------------------------------------


def host_rows(spec: HostSpec, host: str, probe: Probe) -> list[Row]:
    """Every row of one host that answered."""
    rows: list[Row] = []
    for service in spec.services:
        if service.manager == "supervisor":
            rows.append(_supervisor_row(spec, host, service, probe))
        elif service.manager == "pm2":
            rows.extend(_pm2_rows(host, service, probe))
        else:
            row = _systemd_row(host, service, probe)
            if row is not None:
                rows.append(row)
    rows.extend(_disk_rows(spec, host, probe))
    if spec.backup_file is not None:
        rows.append(_backup_row(spec, host, probe))
        if spec.pg_archive_enabled:
            rows.append(_archive_row(host, probe))
        if spec.backup_enabled and probe.backup is not None:
            rows.append(_copies_row(spec, host, probe))
    _cross_check_monit(rows, probe, spec.monit_names)
    for row in rows:
        row.note = "; ".join(row.notes)
    return rows


def unreachable_row(host: str, error: str, state: str = "unreachable") -> Row:
    row = Row(host, "ssh", "-", "host", state=state)
    row.fail(error)
    row.note = error
    return row


def _systemd_row(host: str, service: Service, probe: Probe) -> Row | None:
    unit_name = service.unit
    if service.check == "postgres":  # postgresql@VERSION-main: the host's cluster
        unit_name = next((u for u in probe.units if u.startswith("postgresql@")), None)
    unit = probe.units.get(unit_name) if unit_name else None
    if unit is None or unit.get("LoadState") != "loaded":
        if service.optional:
            return None
        row = Row(host, service.name, service.manager, service.layer, state="not installed",
                  port=service.port)
        row.fail(f"{unit_name or service.name} is not installed")
        return row
    name = unit_name.removesuffix(".service") if service.check == "postgres" else service.name
    row = Row(host, name, service.manager, service.layer, port=service.port)
    active, sub = unit.get("ActiveState", "?"), unit.get("SubState", "?")
    if active == "reloading":  # nginx's reload, a second at most: it keeps serving
        active = "active"
    row.state = sub if active == "active" else (active if sub in (active, "dead") else
                                               f"{active}/{sub}")
    row.pid = _int(unit.get("MainPID")) or None
    row.restarts = _int(unit.get("NRestarts"))
    memory = _int(unit.get("MemoryCurrent"))
    if memory is not None and memory < 1 << 63:
        row.memory_bytes = memory
    else:  # no memory accounting (containers): the unit's processes
        row.memory_bytes = probe.memory(probe.unit_processes(unit_name) or probe.tree(row.pid))
    entered = _int(unit.get("ActiveEnterTimestampMonotonic"))
    if active == "active" and entered and probe.monotonic is not None:
        row.uptime_seconds = max(0, int(probe.monotonic - entered / 1e6))
    if active != "active":
        why = _NOT_RUNNING.get(active, active)
        if sub == "auto-restart":
            why = "restarting after a crash"
        elif active == "failed":
            why = f"failed ({unit.get('Result', '?')})"
        row.fail(why)
        return row
    _process_checks(row, probe)
    _health(row, service, probe)
    return row


def _supervisor_row(spec: HostSpec, host: str, service: Service, probe: Probe) -> Row:
    row = Row(host, service.name, "supervisor", service.layer, port=service.port)
    if probe.supervisor is None:
        row.state = "unknown"
        row.fail(f"supervisord does not answer: {probe.supervisor_error}")
        return row
    entry = probe.supervisor.get(service.name)
    if entry is None:
        row.state = "absent"
        row.fail("not a Supervisor program (run the deploy)")
        return row
    row.state, row.pid, row.uptime_seconds = entry["state"], entry["pid"], entry["uptime"]
    row.restarts = probe.supervisor_crashes.get(service.name, 0)
    row.memory_bytes = probe.memory(probe.tree(row.pid))
    log = f"{spec.log_root}/{service.name}.log"
    if row.state == "RUNNING":
        _process_checks(row, probe)
        _health(row, service, probe)
    elif row.state in ("STARTING", "BACKOFF"):
        row.fail("restarting after a crash" if row.state == "BACKOFF" or row.restarts
                 else "starting")
    elif row.state == "FATAL":
        row.fail(f"Supervisor gave up after {spec.supervisor_startretries} failed starts; "
                 f"see {log}")
    else:
        row.fail(f"{row.state.lower()} {entry['detail']}".strip())
    return row


def _pm2_rows(host: str, service: Service, probe: Probe) -> list[Row]:
    if probe.pm2 is None:
        row = Row(host, service.name, "pm2", service.layer, state="unknown", port=service.port)
        row.fail(f"PM2 does not answer: {probe.pm2_error}")
        return [row]
    apps = [p for p in probe.pm2 if p.get("name") == service.name and not p.get("module")]
    if not apps:
        row = Row(host, service.name, "pm2", service.layer, state="absent", port=service.port)
        row.fail("not in PM2's process list (run the deploy)")
        return [row]
    rows = []
    for app in apps:
        name = service.name if len(apps) == 1 else f"{service.name}#{app.get('pm_id')}"
        row = Row(host, name, "pm2", service.layer, state=str(app.get("status")),
                  port=service.port, pid=app.get("pid") or None,
                  restarts=app.get("restart_time"), memory_bytes=app.get("memory"))
        started = app.get("pm_uptime")
        if row.state == "online" and started and probe.now is not None:
            row.uptime_seconds = max(0, int(probe.now - started / 1000))
        if row.state == "online":
            _process_checks(row, probe)
            _health(row, service, probe)
        else:
            row.fail(f"PM2 status {row.state}")
        rows.append(row)
    return rows


def _process_checks(row: Row, probe: Probe) -> None:
    if probe.process_state(row.pid) == "T":
        row.fail(f"process {row.pid} is stopped (SIGSTOP)")


def _health(row: Row, service: Service, probe: Probe) -> None:
    for url in service.urls:
        ok, why = http_result(probe, url)
        if not ok:
            hint = " (process up: hung?)" if why == "timed out" else ""
            row.fail(f"health {url.split('127.0.0.1', 1)[-1]}: {why}{hint}")
    for url in service.site_urls:
        ok, why = http_result(probe, url)
        if not ok:
            row.fail(f"requests through it fail: {url.split('127.0.0.1', 1)[-1]}: {why}")
    if service.check == "postgres":
        ok, why = postgres_result(probe)
        if not ok:
            row.fail(f"pg_isready: {why}")
    elif service.check == "redis":
        ok, why = redis_result(probe)
        if not ok:
            row.fail(f"redis-cli ping: {why}")
    elif service.check == "supervisord" and probe.supervisor is None:
        row.fail(f"supervisord does not answer: {probe.supervisor_error}")
    elif service.check == "pm2" and probe.pm2 is None:
        row.fail(f"pm2: {probe.pm2_error}")
    elif service.check == "monit" and probe.monit is None:
        # Monit still restarts what fails; only its report is missing.
        row.warn(f"monit summary: {probe.monit_error or 'no answer'}")


def http_result(probe: Probe, url: str) -> tuple[bool, str]:
    if url not in probe.http:
        return False, "no result"
    code, exit_status = probe.http[url]
    if exit_status == 0 and 200 <= code < 400:
        return True, f"HTTP {code}"
    if exit_status == 0 or code:
        return False, f"HTTP {code}"
    return False, _CURL_ERRORS.get(exit_status, f"curl error {exit_status}")


def postgres_result(probe: Probe) -> tuple[bool, str]:
    if probe.postgres == 0:
        return True, "accepting connections"
    if probe.postgres is None:
        return False, "no result"
    return False, _PG_ISREADY.get(probe.postgres, f"exit status {probe.postgres}")


def redis_result(probe: Probe) -> tuple[bool, str]:
    """PONG, or NOAUTH: Redis answers (status sends no credentials)."""
    if probe.redis is None:
        return False, "no result"
    code, answer = probe.redis
    if answer.startswith(("PONG", "NOAUTH", "-NOAUTH")):
        return True, answer
    if code == 124:
        return False, "timed out"
    return False, answer or f"exit status {code}"


def _disk_rows(spec: HostSpec, host: str, probe: Probe) -> list[Row]:
    threshold = spec.disk_alert_percent
    rows, seen = [], set()
    for disk in probe.disks:
        if disk["mount"] in seen:
            continue
        seen.add(disk["mount"])
        row = Row(host, f"disk {disk['mount']}", "-", "ops", state=f"{disk['percent']}% used")
        row.notes.append(f"{_size(disk['used'])} of {_size(disk['size'])}")
        if disk["percent"] >= threshold:
            row.fail(f"above the {threshold}% alert threshold")
        rows.append(row)
    return rows


def _backup_row(spec: HostSpec, host: str, probe: Probe) -> Row:
    row = Row(host, "backup", "-", "ops")
    if not spec.backup_enabled:
        row.state = "disabled"
        row.warn("backup_enabled is off")
        return row
    if probe.backup is None:
        row.state = "never"
        # Issue 11: a new host's timers start only after a restore or --start-empty.
        if probe.backup_ready is None and not spec.backup_start_empty:
            row.state = "waiting"
            row.warn("not started: a new host backs up only once restored (orchestra-infra "
                     "restore ENV) or declared empty (orchestra-infra backup ENV --start-empty)")
            return row
        row.warn(f"no successful backup recorded ({spec.backup_file})")
        return row
    age = max(0, (probe.now or probe.backup) - probe.backup)
    row.state = f"{format_duration(age)} ago"
    stale_hours = spec.backup_stale_hours
    if age > stale_hours * 3600:
        row.fail(f"stale: older than {stale_hours}h")
    return row


# A WAL segment waiting longer than this to be shipped: the archive is failing.
ARCHIVE_PENDING_LIMIT = 180


def _epoch(text: str | None) -> int | None:
    word = (text or "").split(" ", 1)[0]
    return int(word) if word.isdigit() and int(word) > 0 else None


def _archive_row(host: str, probe: Probe) -> Row:
    """PostgreSQL's continuous archive: the age of the last archived WAL (the newest copy of
    PostgreSQL), the last base backup and the last `pgbackrest check`."""
    row = Row(host, "pg-archive", "-", "ops")
    found = probe.archive
    now = probe.now or 0
    if "archive-ready" not in found:
        row.state = "waiting"
        row.warn("WAL is not kept until the host is restored (orchestra-infra restore ENV) or "
                 "declared empty (orchestra-infra backup ENV --start-empty)")
        return row
    last = (found.get("pg-archive-last") or "").split()
    archived = _epoch(last[0] if last else None)
    row.state = f"WAL {format_duration(max(0, now - archived))} ago" if archived else "no WAL yet"
    if len(last) == 4 and last[3].isdigit() and int(last[3]) > ARCHIVE_PENDING_LIMIT:
        row.fail(f"failing: {last[2]} WAL segment(s) waiting, the oldest for "
                 f"{format_duration(int(last[3]))} (docs/runbook.md: the archive is failing)")
    base = _epoch(found.get("pg-backup-last-success"))
    row.notes.append(f"base backup {format_duration(max(0, now - base))} ago" if base
                     else "no base backup yet")
    check = (found.get("pg-archive-check") or "").split(" ", 2)
    if check[0] == "failed":
        row.fail(f"pgbackrest check failed: {check[2] if len(check) > 2 else ''}".strip())
    elif check[0] == "ok" and _epoch(check[1] if len(check) > 1 else None):
        row.notes.append(f"checked {format_duration(max(0, now - int(check[1])))} ago")
    return row


_SPAN_SECONDS = {"s": 1, "min": 60, "h": 3600, "day": 86400, "week": 604800,
                 "month": 2629800, "year": 31557600}


def _span(text: str) -> int:
    """A systemd time span of the schema's form (15min, 1h) in seconds."""
    digits = "".join(c for c in text if c.isdigit())
    return int(digits) * _SPAN_SECONDS[text[len(digits):]]


def _copies_row(spec: HostSpec, host: str, probe: Probe) -> Row:
    """The newest copy of Redis and of Weaviate in the repository (the daily run's or a copy
    of the store alone, every backup_redis_interval / backup_weaviate_interval)."""
    row = Row(host, "store-copies", "-", "ops")
    now = probe.now or 0
    ages = []
    for store in ("redis", "weaviate"):
        copied = _epoch(probe.archive.get(f"store-{store}-last-success")) or probe.backup
        age = max(0, now - copied) if copied else None
        ages.append(f"{store} {format_duration(age)} ago" if age is not None
                    else f"{store} never")
        interval = _span(spec.copy_intervals.get(store, "1h"))
        if age is not None and age > 3 * interval:
            row.warn(f"{store}: no copy for {format_duration(age)} (every "
                     f"{spec.copy_intervals.get(store, '?')}: "
                     f"journalctl -u orchestra-backup-store@{store})")
    row.state = ", ".join(ages)
    return row


def _cross_check_monit(rows: list[Row], probe: Probe, monit_names: dict[str, str]) -> None:
    """Monit's verdict next to ours: a service Monit sees failing is at least a warning."""
    if not probe.monit:
        return
    matched = set()
    for row in rows:
        base = row.service.split("@")[0]
        for candidate in (row.service, monit_names.get(base, base)):
            if candidate in probe.monit:
                matched.add(candidate)
                row.monit = probe.monit[candidate]
                if row.monit.lower() not in _MONIT_OK:
                    row.warn(f"monit: {row.monit}")
                break
    failing = [f"{name} ({status})" for name, status in probe.monit.items()
               if name not in matched and status.lower() not in _MONIT_OK]
    monit_row = next((row for row in rows if row.service == "monit"), None)
    if failing and monit_row is not None:
        monit_row.warn("monit reports " + ", ".join(failing))


# --- output ------------------------------------------------------------------------------------


def sort_rows(rows: list[Row]) -> list[Row]:
    """By host, then layer (host, edge, app, data, ops); the order within a layer is kept."""
    order = {name: i for i, name in enumerate(LAYERS)}
    return sorted(rows, key=lambda r: (r.host, order.get(r.layer, len(LAYERS))))


def format_duration(seconds: int | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"


def _size(value: int | None) -> str:
    if value is None:
        return "-"
    for unit, factor in (("T", 1 << 40), ("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if value >= factor:
            number = value / factor
            return f"{number:.1f}{unit}" if number < 10 else f"{number:.0f}{unit}"
    return f"{value}B"


def _int(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
