"""``orchestra-infra backup ENV`` and ``orchestra-infra restore ENV``: backups on demand and
their restore, run on ENV's data hosts through pyinfra (operations/backup.py,
operations/restore.py, restore.py)."""

from __future__ import annotations

import re
import sys
import time

import click

from .pyinfra_run import run_pyinfra

BACKUP_SCRIPT = "/usr/local/lib/orchestra/orchestra-backup"


def _host_name(ctx, param, value):
    if value is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}", value):
        raise click.BadParameter(f"{value!r} is not a backup host name (letters, digits, . _ -)")
    return value


@click.command()
@click.argument("env")
@click.option("--start-empty", is_flag=True,
              help="The data hosts start empty (no restore): let backups run on them from now "
                   "on (their timers start), then back up.")
@click.option("--allow-empty", is_flag=True,
              help="This once, back up empty data although the last snapshot held some.")
def backup(env: str, start_empty: bool, allow_empty: bool):
    """Back up ENV's data hosts now; print each new snapshot and how long it took.

    A new host backs up only once restored (orchestra-infra restore) or declared empty
    (--start-empty); empty data after a snapshot that held some is refused (--allow-empty).
    """
    started = time.monotonic()
    # Through systemd (orchestra-backup.service), like the daily runs: sandboxed, in the
    # journal, never two at once.
    # `pyinfra exec` joins its words with spaces for the host's shell.
    now = [BACKUP_SCRIPT, "now", *(["--allow-empty"] if allow_empty else [])]
    command = [BACKUP_SCRIPT, "start-empty", "&&", *now] if start_empty else now
    code = run_pyinfra(env, "--limit", "data", "exec", "--", *command).returncode
    click.echo(f"{env}: backup {'done' if code == 0 else 'FAILED'} in "
               f"{time.monotonic() - started:.0f} s")
    sys.exit(code)


@click.command()
@click.argument("env")
@click.option("--snapshot", default="latest", show_default=True,
              help="The snapshot's id (or the start of it); latest: the newest of ENV.")
@click.option("--from-host", default=None, callback=_host_name,
              help="Restore a snapshot another host recorded (its backup host name); by "
                   "default only the restored host's own snapshots are taken.")
@click.option("--to", "to", default=None, metavar="latest|TIMESTAMP",
              help="PostgreSQL from its continuous archive (pgBackRest): to the last archived "
                   "WAL (latest) or to a point in time (2026-01-02T03:04:05Z, UTC unless an "
                   "offset is given). Without it: the snapshot's pg_dump.")
@click.option("--only", "only", multiple=True,
              type=click.Choice(["postgres", "redis", "weaviate"]),
              help="Restore only these stores (repeat); default all three.")
@click.option("--force", is_flag=True, help="Replace the data the hosts hold.")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
def restore(env: str, snapshot: str, from_host: str | None, to: str | None,
            only: tuple[str, ...], force: bool, yes: bool):
    """Restore a backup snapshot onto ENV's data hosts (PostgreSQL, Redis, Weaviate).

    Refuses to replace data that is there unless --force is given. The API instances and
    MCP servers stop until it is done, then must report healthy.
    """
    if to is not None and to != "latest":
        from operations.restore import parse_target

        try:
            parse_target(to)
        except ValueError as e:
            raise click.BadParameter(str(e), param_hint="--to") from None
    if not yes:
        click.confirm(f"Restore snapshot {snapshot}"
                      + (f" (PostgreSQL: archive to {to})" if to else "")
                      + f" onto {env}'s data hosts"
                      + (f" from host {from_host}" if from_host else "")
                      + (", replacing the data there" if force else "")
                      + "? The API and MCP servers stop meanwhile.", abort=True)
    started = time.monotonic()
    code = run_pyinfra(env, "restore.py", extra_env={
        "ORCHESTRA_RESTORE_SNAPSHOT": snapshot, "ORCHESTRA_RESTORE_FORCE": "1" if force else "",
        "ORCHESTRA_RESTORE_FROM_HOST": from_host or "",
        "ORCHESTRA_RESTORE_TO": to or "", "ORCHESTRA_RESTORE_ONLY": ",".join(only),
    }).returncode
    click.echo(f"{env}: restore {'done' if code == 0 else 'FAILED'} in "
               f"{time.monotonic() - started:.0f} s")
    sys.exit(code)
