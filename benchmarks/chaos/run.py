"""``orchestra-infra chaos ENV``: load through the edge, faults on a seeded schedule, a verdict.

One host of the environment is the victim (``--host``; by default the host that runs the app
and the data, or in a multi-host layout an app host that is not an edge: the one a lost
machine costs least to prove); the load goes to the first edge host, and the notes are read
back on the data host and an app host. Faults are injected over SSH with the
same connection settings as ``status``; a sandbox host's reboot goes through the sandbox
tool (a container is restarted from its disk, as a VM reboots).
"""

from __future__ import annotations

import json
import ssl
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

from operations import render
from orchestra_infra import catalog, schema, secrets, status, status_hosts
from orchestra_infra import config as config_module
from orchestra_infra.errors import ConfigError

from . import faults as fault_scripts
from .load import Edge, Load, Outcome
from .schedule import QUICK, Fault, plan
from .verdict import Injected, Verdict, judge

# Redis holds a note for the API's cache TTL (300 s): only newer notes are looked for there
# (a missing cache entry is refilled from PostgreSQL on the next read: counted, not lost).
CACHE_WINDOW_SECONDS = 240


@dataclass
class Options:
    env: str
    minutes: float = 30
    seed: int = 1
    kinds: tuple[str, ...] = QUICK
    mean_interval: float = 120
    rate: float = 8.0
    host: str | None = None
    fill_max_bytes: int = 4 << 30
    plot: Path | None = None
    alerts_port: int | None = None
    outcomes: Path | None = None


def _victim(targets: list[status_hosts.Target], wanted: str | None) -> status_hosts.Target:
    if wanted:
        for target in targets:
            if wanted in (target.name, target.label):
                return target
        raise ConfigError([f"--host: {wanted!r} is not a host of this environment"])
    def preference(target):  # the first of the best: max() keeps the first of equals
        groups = set(target.groups)
        return {"app", "data"} <= groups, "app" in groups and "edge" not in groups, "app" in groups

    return max(targets, key=preference)


def _reader(targets: list[status_hosts.Target], group: str,
            victim: status_hosts.Target) -> status_hosts.Target:
    """Where the notes are read back from: the victim when it is of `group` (one host: all
    of them), else the first host of `group`."""
    if group in victim.groups:
        return victim
    return next(t for t in targets if group in t.groups)


def faultable(config, groups) -> dict[str, catalog.Service]:
    """The services a fault may hit on a host of these groups: what the load goes through."""
    wanted = {"nginx", "postgresql", "redis-server", "weaviate",
              *(p["name"] for p in catalog.programs(config))}
    return {s.name: s for s in catalog.services(config, groups) if s.name in wanted}


def _inject(victim, fault: Fault, service, options: Options) -> tuple[str, str | None]:
    if fault.kind == "reboot" and victim.data.get("sandbox_name"):
        from orchestra_infra import sandbox

        # Returns once the container is back and answers SSH, as a VM's reboot would.
        sandbox.reboot(victim.data["sandbox_name"])
        return "sandbox reboot (back, SSH answers)", None
    script = fault_scripts.script(fault.kind, service, fault.hold, options.fill_max_bytes)
    out, error = status_hosts.run_script(victim, script, timeout=60)
    return (out or "").strip(), error


def _resume_alerts(victim, options: Options, now: float, wait: float = 300) -> str | None:
    """After the victim rebooted: its alert receiver again (what it had is kept), as soon as
    SSH lets it (a real host's reboot returns before the host is back). None, or why not."""
    script = fault_scripts.alerts_script("resume", options.alerts_port,
                                         int(options.minutes * 60 - now) + 1800)
    deadline = time.monotonic() + wait
    while True:
        _, error = status_hosts.run_script(victim, script, timeout=30)
        if error is None or time.monotonic() > deadline:
            return error
        time.sleep(2)


def _status_ok(env: str, label: str) -> bool:
    rows, _ = status.collect(env)
    return not any(row.health == "fail" for row in rows if row.host == label)


def _edge(config, loaded, targets) -> Edge:
    edge = next((t for t in targets if "edge" in t.groups), targets[0])
    address = edge.data.get("ssh_hostname") or edge.name
    scheme = "http" if config.nginx_tls == "none" else "https"
    context = ssl.create_default_context()
    if config.nginx_tls == "selfsigned":
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    try:
        password = loaded["edge_password"]
    except KeyError:
        password = None
    return Edge(url=f"{scheme}://{address}", user=config.edge_auth_user, password=password,
                mcp_servers=tuple(config.mcp_servers), mcp_instances=config.mcp_instances,
                context=context)


def _read_back(host, **parts) -> str:
    text = render.script("chaos/scripts/verify.sh.j2", **{"database": None, "ids": None, **parts})
    out, error = status_hosts.run_script(host, text, timeout=900)
    if error:
        raise RuntimeError(f"reading the notes back on {host.label} failed: {error}")
    return out


def verify(load: Load, targets, victim, config) -> tuple[dict[str, list[str]], int]:
    """Every acknowledged note, read back (templates/chaos/scripts/verify.sh.j2): PostgreSQL's
    rows on the data host, the rest through an app host's API: {store: lost ids}, and how
    many recent notes Redis's cache no longer held."""
    acknowledged = {str(uuid.UUID(o.note)): o for o in load.outcomes if o.note}
    data_host, app_host = _reader(targets, "data", victim), _reader(targets, "app", victim)
    database = config.postgres_databases[0].name
    api = dict(ids=sorted(acknowledged), api=f"http://127.0.0.1:{config.api_port}")
    if data_host is app_host:
        out = _read_back(data_host, database=database, **api)
    else:
        out = _read_back(data_host, database=database) + _read_back(app_host, **api)
    stored, notes = out.split("@@notes\n")
    stored_ids = set(stored.split()[1:])
    lost = {"postgresql": sorted(set(acknowledged) - stored_ids), "weaviate": []}
    cache_missing = 0
    for line in notes.splitlines():
        note, cache, vector = line.split()
        if vector != "200":
            lost["weaviate"].append(note)
        if load.now() - acknowledged[note].started < CACHE_WINDOW_SECONDS and cache != "hit":
            cache_missing += 1
    return lost, cache_missing


def parse_alerts(text: str, started_epoch: float) -> list[tuple[float, str]]:
    """The receiver's lines -> [(seconds after the load started, alert text)]."""
    alerts = []
    for line in text.splitlines():
        stamp, _, body = line.partition(" ")
        try:
            alerts.append((float(stamp) - started_epoch, json.loads(body)["text"]))
        except (ValueError, KeyError, TypeError):
            continue
    return alerts


def attribute_alerts(injected: list[Injected], alerts: list[tuple[float, str]],
                     services: dict[str, catalog.Service]) -> None:
    """Each fault gets the alerts about its service between its start and the next fault's
    (Monit's text: "[host] NAME: EVENT: ..."); a succeeded check or a process that exists
    again is a recovery message, the rest are alerts."""
    for index, item in enumerate(injected):
        service = services.get(item.fault.target)
        if service is None or not service.monit:
            continue
        until = injected[index + 1].started if index + 1 < len(injected) else float("inf")
        marker = f"] {service.monit}: "
        for at, text in alerts:
            if item.started <= at < until and marker in text:
                event = text.split(marker, 1)[1].split(":", 1)[0].lower()
                recovered = "succeeded" in event or event == "exists"
                (item.recoveries if recovered else item.alerts).append(text)


def run(options: Options, echo=print) -> tuple[Verdict, list[Outcome], list[Injected]]:
    data = config_module.environment_data(options.env)
    config = schema.validate(data, secrets.NAMES)
    loaded = secrets.load(options.env)
    targets = status_hosts.targets(options.env, data)
    victim = _victim(targets, options.host)
    services = faultable(config, victim.groups)
    schedule = plan(options.seed, options.minutes, options.mean_interval, options.kinds,
                    {name: s.manager for name, s in services.items()})
    echo(f"chaos {options.env}: {options.minutes:g} min at {options.rate:g} requests/s, "
         f"{len(schedule)} faults on {victim.label} (seed {options.seed})")
    load = Load(_edge(config, loaded, targets), options.rate)
    injected: list[Injected] = []
    checks: list[threading.Thread] = []
    if options.alerts_port:
        _, error = status_hosts.run_script(victim, fault_scripts.alerts_script(
            "start", options.alerts_port, int(options.minutes * 60) + 1800))
        if error:
            raise RuntimeError(f"{victim.label}: {error}")
    started_epoch = time.time()
    load.start()
    try:
        for fault in schedule:
            time.sleep(max(0.0, fault.at - load.now()))
            item = Injected(fault, round(load.now(), 2))
            item.said, item.error = _inject(victim, fault, services.get(fault.target), options)
            item.in_place = round(load.now(), 2)
            if fault.kind == "reboot" and options.alerts_port and not item.error:
                error = _resume_alerts(victim, options, load.now())
                if error:
                    echo(f"  the alert receiver did not come back after the reboot: {error}")
            echo(f"  {item.started:7.1f} s  {fault.label}: {item.error or item.said}")
            injected.append(item)

            def check(item=item):
                time.sleep(max(0.0, item.fault.busy_until - load.now() - 5))
                item.status_ok = _status_ok(options.env, victim.label)

            thread = threading.Thread(target=check, daemon=True)
            thread.start()
            checks.append(thread)
        time.sleep(max(0.0, options.minutes * 60 - load.now()))
    finally:
        load.stop()
        status_hosts.run_script(victim, fault_scripts.cleanup_script())
    for thread in checks:
        thread.join(timeout=120)
    lost, cache_missing = verify(load, targets, victim, config)
    if options.alerts_port:
        out, _ = status_hosts.run_script(victim, fault_scripts.alerts_script("read"))
        attribute_alerts(injected, parse_alerts(out or "", started_epoch), services)
    verdict = judge(injected, load.outcomes, lost, cache_missing,
                    alerts_counted=bool(options.alerts_port))
    if options.outcomes:
        options.outcomes.write_text("".join(
            json.dumps({**asdict(o), "needs": sorted(o.needs)}) + "\n" for o in load.outcomes))
    if options.plot:
        from . import plot

        plot.draw(options.plot, load.outcomes, injected)
    return verdict, load.outcomes, injected


def report(verdict: Verdict) -> str:
    lines = [
        f"requests:                  {verdict.requests}",
        f"availability (all):        {verdict.availability:.4%}",
        f"availability (unaffected): {verdict.unaffected_availability:.4%} "
        f"({verdict.unaffected} requests; target 99.9 %)",
        "latency of successes:      " + ", ".join(f"{k} {v * 1000:.0f} ms"
                                                  for k, v in verdict.latency.items()),
        f"acknowledged writes:       {verdict.acknowledged}, lost: "
        + ", ".join(f"{store} {len(ids)}" for store, ids in verdict.lost.items())
        + f" (cache entries missing: {verdict.cache_missing})",
        "",
        f"{'fault class':<12} {'faults':>6} {'avail. during':>14} {'unaffected':>11} "
        f"{'max recovery':>13}",
    ]
    for name, row in verdict.per_class.items():
        def pct(value):
            return "-" if value is None else f"{value:.2%}"
        recovery = row["recovery_seconds_max"]
        lines.append(f"{name:<12} {row['faults']:>6} {pct(row['availability_during']):>14} "
                     f"{pct(row['unaffected_availability_during']):>11} "
                     f"{'-' if recovery is None else f'{recovery:.1f} s':>13}")
    lines += ["", "faults:"] + [_fault_line(f) for f in verdict.faults]
    lines.append("")
    lines += ["verdict: PASS"] if verdict.passed else (
        ["verdict: FAIL"] + [f"  {problem}" for problem in verdict.problems])
    return "\n".join(lines)


def _fault_line(fault: dict) -> str:
    recovery = fault["recovery_seconds"]
    line = (f"  {fault['at']:7.1f} s  {fault['fault']:<28} recovered in "
            f"{'-' if recovery is None else recovery} s")
    if fault["alerts"] is not None:
        line += f", {fault['alerts']} alerts, {fault['recovery_messages']} recovery messages"
    if fault["status_ok_after"] is False:
        line += "  (status still failing)"
    if fault["said"].startswith("skipped"):
        line += "  " + fault["said"]
    return line


def as_json(verdict: Verdict) -> str:
    return json.dumps(verdict.as_dict(), indent=2)
