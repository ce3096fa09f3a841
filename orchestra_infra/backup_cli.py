"""``orchestra-infra backup ENV`` and ``orchestra-infra restore ENV``: backups on demand and
their restore, run on ENV's data hosts through pyinfra (operations/backup.py,
operations/restore.py, restore.py)."""

from __future__ import annotations

import sys
import time

import click

from .pyinfra_run import run_pyinfra

BACKUP_SCRIPT = "/usr/local/lib/orchestra/orchestra-backup"


@click.command()
@click.argument("env")
def backup(env: str):
    """Back up ENV's data hosts now; print each new snapshot and how long it took."""
    started = time.monotonic()
    # Through systemd (orchestra-backup.service), like the daily runs: sandboxed, in the
    # journal, never two at once.
    code = run_pyinfra(env, "--limit", "data", "exec", "--", BACKUP_SCRIPT, "now").returncode
    click.echo(f"{env}: backup {'done' if code == 0 else 'FAILED'} in "
               f"{time.monotonic() - started:.0f} s")
    sys.exit(code)


@click.command()
@click.argument("env")
@click.option("--snapshot", default="latest", show_default=True,
              help="The snapshot's id (or the start of it); latest: the newest of ENV.")
@click.option("--force", is_flag=True, help="Replace the data the hosts hold.")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
def restore(env: str, snapshot: str, force: bool, yes: bool):
    """Restore a backup snapshot onto ENV's data hosts (PostgreSQL, Redis, Weaviate).

    Refuses to replace data that is there unless --force is given. The API instances and
    MCP servers stop until it is done, then must report healthy.
    """
    if not yes:
        click.confirm(f"Restore snapshot {snapshot} onto {env}'s data hosts"
                      + (", replacing the data there" if force else "")
                      + "? The API and MCP servers stop meanwhile.", abort=True)
    started = time.monotonic()
    code = run_pyinfra(env, "restore.py", extra_env={
        "ORCHESTRA_RESTORE_SNAPSHOT": snapshot, "ORCHESTRA_RESTORE_FORCE": "1" if force else "",
    }).returncode
    click.echo(f"{env}: restore {'done' if code == 0 else 'FAILED'} in "
               f"{time.monotonic() - started:.0f} s")
    sys.exit(code)
