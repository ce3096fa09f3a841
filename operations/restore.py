"""Restore a backup snapshot onto provisioned hosts (restore.py), the way back of backup.py.

The decision is made while planning: data already on the host is never replaced unless
forced, and the snapshot is chosen before any change, so a refusal changes nothing on any
host. Then the programs that write stop (and Monit's checks pause, or it would restart
them), ``orchestra-restore`` (installed by backup.py) runs its stages in order, and the
programs start again, each healthy before the restore counts as done.
"""

from __future__ import annotations

import re
import time
from datetime import datetime, timezone

from pyinfra import host, logger
from pyinfra.api import DeployError, deploy

from operations import app, system
from operations.backup import PG_ARCHIVE_SCRIPT, RESTIC, RESTORE_SCRIPT, host_name
from operations.facts import DataPresence, PgArchiveInfo, ResticSnapshots

STORES = ("postgres", "redis", "weaviate")
_TARGET = re.compile(r"(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?)"
                     r"(Z|[+-]\d{2}:?\d{2})?")


def parse_target(text: str) -> datetime:
    """A point in time for ``--to``: ISO 8601 (``2026-01-02T03:04:05Z``, ``...+02:00``);
    UTC when no offset is given."""
    match = _TARGET.fullmatch(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not a time: YYYY-MM-DDTHH:MM:SS[.ffffff][Z|+HH:MM]")
    zone = match[3] or "Z"
    zone = "+00:00" if zone == "Z" else (zone if ":" in zone else f"{zone[:3]}:{zone[3:]}")
    return datetime.fromisoformat(f"{match[1]}T{match[2]}{zone}").astimezone(timezone.utc)


def pick_backup(info: dict, to: str, now: float | None = None) -> tuple[str, str]:
    """(backup set, pgBackRest's target) for ``--to`` (latest or a time): the newest base
    backup that ended before the target. Refused, before any change, when the archive
    cannot be read, holds no backup, or the target is before the first or in the future."""
    if "error" in info:
        raise DeployError(f"{host.name}: the PostgreSQL archive cannot be read: {info['error']}")
    backups = sorted(info["backups"], key=lambda b: b["stop"])
    if not backups:
        raise DeployError(f"{host.name}: the PostgreSQL archive holds no base backup: nothing "
                          "to restore with --to (a restore without --to uses the pg_dump of the "
                          "restic snapshot)")
    if to == "latest":
        return backups[-1]["label"], "latest"
    moment = parse_target(to)
    epoch = moment.timestamp()
    if epoch > (now or time.time()):
        raise DeployError(f"{host.name}: --to {to} is in the future")
    before = [b for b in backups if b["stop"] < epoch]
    if not before:
        first = datetime.fromtimestamp(backups[0]["stop"], timezone.utc).isoformat()
        raise DeployError(f"{host.name}: --to {to} is before the archive's first base backup "
                          f"ended ({first}): no restore reaches it")
    return before[-1]["label"], moment.strftime("%Y-%m-%d %H:%M:%S.%f+00")


def pick_snapshot(snapshots: list[dict], wanted: str, name: str,
                  from_host: str | None = None) -> dict:
    """The snapshot to restore onto the data host whose snapshots are recorded as ``name``.

    ``latest``: the newest orchestra snapshot of ``name`` (or ``from_host``) that holds data
    (one tagged empty only when there is no other); else the one whose id starts with
    ``wanted``, which must be of ``name`` unless ``from_host`` names its host: a host never
    receives another's data by mistake."""
    source = from_host or name
    if wanted == "latest":
        ours = [s for s in snapshots
                if s.get("hostname") == source and "orchestra" in (s.get("tags") or [])]
        if not ours:
            raise DeployError(f"{host.name}: the repository holds no snapshot of {source} "
                              "tagged orchestra: nothing to restore (orchestra-infra backup ENV "
                              "makes one; --from-host HOST restores another host's)")
        full = [s for s in ours if "empty" not in s["tags"]]
        return max(full or ours, key=lambda s: s["time"])
    found = [s for s in snapshots if s["id"].startswith(wanted)]
    if len(found) != 1:
        what = "no" if not found else "more than one"
        raise DeployError(f"{host.name}: {what} snapshot with id {wanted!r} in the repository")
    if found[0].get("hostname") != source:
        raise DeployError(f"{host.name}: snapshot {found[0]['short_id']} is of host "
                          f"{found[0].get('hostname')}, not {source}: restoring it needs "
                          f"--from-host {found[0].get('hostname')}")
    return found[0]


def newer_copies(snapshots: list[dict], chosen: dict, name: str,
                 stores: tuple[str, ...]) -> dict[str, dict]:
    """Store -> its newest copy (a snapshot tagged orchestra-STORE of ``name``) when newer
    than the chosen snapshot: Redis and Weaviate are copied more often than the daily run."""
    found = {}
    for store in ("redis", "weaviate"):
        copies = [s for s in snapshots if s.get("hostname") == name
                  and f"orchestra-{store}" in (s.get("tags") or []) and s["time"] > chosen["time"]]
        if store in stores and copies:
            found[store] = max(copies, key=lambda s: s["time"])
    return found


def check_restore(config, wanted: str, force: bool, from_host: str | None = None,
                  stores: tuple[str, ...] = STORES, to: str | None = None) -> dict:
    """Refuse to replace data unless forced; what to restore: the snapshot (None when only
    PostgreSQL comes from its archive) and the archive's backup set and target. Runs while
    planning: a refusal changes nothing on any host."""
    present = [line for line in host.get_fact(DataPresence, script=RESTORE_SCRIPT)
               if line.split(":", 1)[0] in stores]
    if present and not force:
        raise DeployError(f"{host.name} holds data a restore would replace (--force replaces "
                          "it):\n  " + "\n  ".join(present))
    plan: dict = {"stores": stores, "snapshot": None, "pitr": None, "copies": {}}
    if to == "auto":  # reprovision: the archive when it holds a backup, else the pg_dump
        info = host.get_fact(PgArchiveInfo, script=PG_ARCHIVE_SCRIPT) \
            if config.pg_archive_enabled else {}
        to = "latest" if info.get("backups") else None
        if to is None:
            logger.info(f"{host.print_prefix}PostgreSQL: no base backup in the archive "
                        f"({info.get('error') or 'none'}): the snapshot's pg_dump")
    if to is not None and "postgres" in stores:
        if not config.pg_archive_enabled:
            raise DeployError(f"{host.name}: --to needs the PostgreSQL archive "
                              "(pg_archive_enabled is off)")
        backup_set, target = pick_backup(host.get_fact(PgArchiveInfo, script=PG_ARCHIVE_SCRIPT),
                                         to)
        plan["pitr"] = {"set": backup_set, "target": target}
        logger.info(f"{host.print_prefix}PostgreSQL: base backup {backup_set}, WAL to {target}")
    if [s for s in stores if not (s == "postgres" and plan["pitr"])]:
        snapshots = host.get_fact(ResticSnapshots, restic=RESTIC)
        chosen = pick_snapshot(snapshots, wanted, host_name(config), from_host)
        plan["snapshot"] = chosen
        if wanted == "latest":
            plan["copies"] = newer_copies(snapshots, chosen, from_host or host_name(config),
                                          stores)
        logger.info(f"{host.print_prefix}Snapshot {chosen['short_id']} of {chosen['time']} "
                    f"(host {chosen['hostname']})")
    if present:
        logger.info(f"{host.print_prefix}Replacing: {'; '.join(present)}")
    return plan


@deploy("Stop the programs that write")
def stop_writers(config):
    # Monit would restart what the restore stops; the admin (PM2) only reads through the API.
    system.run(name="Pause Monit's checks (if Monit runs here)",
               args=["sh", "-c", "! command -v monit >/dev/null || monit unmonitor all || true"])
    system.run(name="Stop the Supervisor programs", args=["supervisorctl", "stop", "orchestra:*"])


@deploy("Restore")
def restore_data(config, plan: dict, force: bool):
    chosen, pitr, stores = plan["snapshot"], plan["pitr"], plan["stores"]
    if chosen is not None:
        system.run(name=f"Fetch snapshot {chosen['short_id']}",
                   args=[RESTORE_SCRIPT, "fetch", chosen["id"]])
    for store, copy in plan.get("copies", {}).items():
        system.run(name=f"Fetch the newer copy of {store}: snapshot {copy['short_id']} of "
                        f"{copy['time']}",
                   args=[RESTORE_SCRIPT, "fetch-store", store, copy["id"]])
    if pitr is not None:
        system.run(name=f"Restore PostgreSQL from the archive: {pitr['set']}, WAL to "
                        f"{pitr['target']}",
                   args=[PG_ARCHIVE_SCRIPT, "restore", pitr["target"], pitr["set"]])
    elif "postgres" in stores:
        system.run(name="Restore the PostgreSQL databases", args=[RESTORE_SCRIPT, "postgres"])
    if "redis" in stores:
        system.run(name="Restore Redis", args=[RESTORE_SCRIPT, "redis"])
    if "weaviate" in stores:
        system.run(name="Restore Weaviate",
                   args=[RESTORE_SCRIPT, "weaviate", *(["--force"] if force else [])])
    system.run(name="Remove the restored files", args=[RESTORE_SCRIPT, "finish"])


@deploy("Start the programs again")
def start_writers(config):
    system.run(name="Start the Supervisor programs", args=["supervisorctl", "start", "orchestra:*"])
    waits = [system.wait_healthy(p["name"], p["port"], p["health"], config.app_health_timeout)
             for p in app.programs(config)]
    system.run(name="Wait until every program is healthy", args=["sh", "-c", "; ".join(waits)])
    system.run(name="Resume Monit's checks (if Monit runs here)",
               args=["sh", "-c", "! command -v monit >/dev/null || monit monitor all || true"])
