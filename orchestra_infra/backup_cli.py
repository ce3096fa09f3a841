"""``orchestra-infra backup ENV`` and ``orchestra-infra restore ENV``: backups on demand and
their restore, run on ENV's data hosts through pyinfra (operations/backup.py,
operations/restore.py, restore.py)."""

from __future__ import annotations

import re
import sys
import time

import click

from . import preview, runlock_remote

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
@preview.options
def backup(env: str, start_empty: bool, allow_empty: bool, dry: bool, limits: tuple[str, ...],
           verbose: int, as_json: bool, yes: bool, force_unlock: bool):
    """Back up ENV's data hosts now; print each new snapshot and how long it took.

    A new host backs up only once restored (orchestra-infra restore) or declared empty
    (--start-empty); empty data after a snapshot that held some is refused (--allow-empty).
    Asks first; -y does not ask, and neither does a run without a terminal (a timer, a
    script): a backup replaces nothing. --dry shows pyinfra's plan. It holds the run lock
    of the hosts it backs up.
    """
    started = time.monotonic()
    yes = yes or not sys.stdin.isatty()
    # Through systemd (orchestra-backup.service), like the daily runs: sandboxed, in the
    # journal, never two at once.
    # `pyinfra exec` joins its words with spaces for the host's shell.
    now = [BACKUP_SCRIPT, "now", *(["--allow-empty"] if allow_empty else [])]
    command = [BACKUP_SCRIPT, "start-empty", "&&", *now] if start_empty else now
    where = f"the hosts {', '.join(limits)}" if limits else "every data host"
    click.echo(f"Plan: on {where} of {env} (pyinfra lists them below): {' '.join(command)}",
               err=as_json)
    args = [*([] if limits else ["--limit", "data"]), "exec", "--", *command]
    name = f"orchestra-infra backup {env}"
    if dry:
        code = preview.run(env, args, "", name, dry=True, limits=limits, verbose=verbose,
                           as_json=as_json, yes=yes, force_unlock=force_unlock)
    else:
        if not yes:
            click.confirm(f"Back up {env}'s data hosts now?", abort=True)
        # `pyinfra exec` runs no deploy code: the run lock is taken here, over SSH.
        try:
            with runlock_remote.locked(env, limits or ("data",), name, force_unlock,
                                       echo=lambda line: click.echo(line, err=True)) as held:
                code = preview.run(env, args, "", name, dry=False, limits=limits,
                                   verbose=verbose, as_json=as_json, yes=True,
                                   force_unlock=force_unlock)
                held.outcome = "success" if code == 0 else "failed"
        except runlock_remote.Locked as e:
            raise click.ClickException(str(e)) from None
    if not dry:
        click.echo(f"{env}: backup {'done' if code == 0 else 'FAILED'} in "
                   f"{time.monotonic() - started:.0f} s", err=as_json)
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
@preview.options
def restore(env: str, snapshot: str, from_host: str | None, to: str | None,
            only: tuple[str, ...], force: bool, dry: bool, limits: tuple[str, ...],
            verbose: int, as_json: bool, yes: bool, force_unlock: bool):
    """Restore a backup snapshot onto ENV's data hosts (PostgreSQL, Redis, Weaviate).

    Refuses to replace data that is there unless --force is given. The API instances and
    MCP servers stop until it is done, then must report healthy. Shows the plan first (the
    snapshot's id and date, the data it replaces) and asks; -y does not ask.
    """
    if to is not None and to != "latest":
        from operations.restore import parse_target

        try:
            parse_target(to)
        except ValueError as e:
            raise click.BadParameter(str(e), param_hint="--to") from None
    started = time.monotonic()
    code = preview.run(
        env, ["restore.py"],
        f"Restore snapshot {snapshot}"
        + (f" (PostgreSQL: archive to {to})" if to else "")
        + (f" (only {', '.join(only)})" if only else "")
        + f" onto {env}'s data hosts"
        + (f" from host {from_host}" if from_host else "")
        + (", replacing the data there" if force else "")
        + "? The API and MCP servers stop meanwhile.",
        f"orchestra-infra restore {env}", dry=dry, limits=limits, verbose=verbose,
        as_json=as_json, yes=yes, force_unlock=force_unlock,
        extra_env={"ORCHESTRA_RESTORE_SNAPSHOT": snapshot,
                   "ORCHESTRA_RESTORE_FORCE": "1" if force else "",
                   "ORCHESTRA_RESTORE_FROM_HOST": from_host or "",
                   "ORCHESTRA_RESTORE_TO": to or "",
                   "ORCHESTRA_RESTORE_ONLY": ",".join(only)})
    if not dry:
        click.echo(f"{env}: restore {'done' if code == 0 else 'FAILED'} in "
                   f"{time.monotonic() - started:.0f} s", err=as_json)
    sys.exit(code)
