"""Restore a backup snapshot onto provisioned hosts (restore.py), the way back of backup.py.

The decision is made while planning: data already on the host is never replaced unless
forced, and the snapshot is chosen before any change, so a refusal changes nothing on any
host. Then the programs that write stop (and Monit's checks pause, or it would restart
them), ``orchestra-restore`` (installed by backup.py) runs its stages in order, and the
programs start again, each healthy before the restore counts as done.
"""

from __future__ import annotations

from pyinfra import host, logger
from pyinfra.api import DeployError, deploy

from operations import app, system
from operations.backup import RESTIC, RESTORE_SCRIPT, host_name
from operations.facts import DataPresence, ResticSnapshots


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


def check_restore(config, wanted: str, force: bool, from_host: str | None = None) -> dict:
    """Refuse to replace data unless forced; the snapshot to restore. Runs while planning:
    a refusal changes nothing on any host."""
    present = list(host.get_fact(DataPresence, script=RESTORE_SCRIPT))
    if present and not force:
        raise DeployError(f"{host.name} holds data a restore would replace (--force replaces "
                          "it):\n  " + "\n  ".join(present))
    snapshots = host.get_fact(ResticSnapshots, restic=RESTIC)
    chosen = pick_snapshot(snapshots, wanted, host_name(config), from_host)
    logger.info(f"{host.print_prefix}Snapshot {chosen['short_id']} of {chosen['time']} "
                f"(host {chosen['hostname']})"
                + (f"; replacing: {'; '.join(present)}" if present else ""))
    return chosen


@deploy("Stop the programs that write")
def stop_writers(config):
    # Monit would restart what the restore stops; the admin (PM2) only reads through the API.
    system.run(name="Pause Monit's checks (if Monit runs here)",
               args=["sh", "-c", "! command -v monit >/dev/null || monit unmonitor all || true"])
    system.run(name="Stop the Supervisor programs", args=["supervisorctl", "stop", "orchestra:*"])


@deploy("Restore")
def restore_data(config, chosen: dict, force: bool):
    short = chosen["short_id"]
    system.run(name=f"Fetch snapshot {short}", args=[RESTORE_SCRIPT, "fetch", chosen["id"]])
    system.run(name="Restore the PostgreSQL databases", args=[RESTORE_SCRIPT, "postgres"])
    system.run(name="Restore Redis", args=[RESTORE_SCRIPT, "redis"])
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
