"""Backups that cannot delete the last good backup (issue 11 §3), on the shared target.

The target backs up to its default local repository (/var/backups/orchestra/restic). In
order: a new host backs up nothing until restored or declared empty; retention keeps the
last 3 snapshots whatever the calendar rules say; another host's snapshots in the same
repository are neither pruned nor restored; empty data after a full snapshot is refused
(then the data comes back by a restore, which reads every dump first); an unmounted
repository file system stops the deploy before any change; restic_password rotates through
a second key, also when a rotation was interrupted. Every deploy here is followed by one
with zero changes.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from orchestra_infra import sandbox

from .conftest import REPO, converge, on, pyinfra

pytestmark = pytest.mark.e2e

STATE = "/var/lib/orchestra-infra/backup"
ETC = "/etc/orchestra/backup"
LIB = "/usr/local/lib/orchestra/orchestra-backup-lib.sh"
RESTIC = "/usr/local/sbin/orchestra-restic"
NAME = "orchestra-sandbox"  # the target is the sandbox environment's only data host
TIMERS = "orchestra-backup.timer orchestra-backup-check.timer"
PG_TIMERS = ("orchestra-pg-backup-full.timer orchestra-pg-backup-diff.timer "
             "orchestra-pg-archive-check.timer")
# Retention that alone would keep one snapshot a day.
ONE_A_DAY = ("--data", "backup_keep_daily=1", "--data", "backup_keep_weekly=0",
             "--data", "backup_keep_monthly=0")


def _cli(target, *args: str, env: dict[str, str] | None = None,
         timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "orchestra_infra", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL,
                          env={**os.environ, "ORCHESTRA_SANDBOX_HOSTS": target.name,
                               **(env or {})})


def _snapshots(target, host: str = NAME) -> list[dict]:
    listed = json.loads(on(target, f"{RESTIC} snapshots --json --host {host}"))
    return sorted(listed or [], key=lambda s: s["time"])


def _timers(target) -> str:
    return on(target, f"systemctl is-enabled {TIMERS}; true").split()


def _zero_changes(target, *args: str) -> None:
    assert converge(target, *args).changed == []


def test_a_new_host_backs_up_only_once_restored_or_declared_empty(target, provisioned):
    # As the first deploy leaves it (also when the session's hosts were kept from a run).
    on(target, f"systemctl disable --now {TIMERS} {PG_TIMERS}; "
              f"rm -f {STATE}/ready {STATE}/last-success {STATE}/archive-ready")
    _zero_changes(target)
    assert _timers(target) == ["disabled", "disabled"]
    before = [s["id"] for s in _snapshots(target)]
    refused = _cli(target, "backup", "sandbox")
    assert refused.returncode != 0
    assert "this host was neither restored nor declared empty" in refused.stdout + refused.stderr
    assert [s["id"] for s in _snapshots(target)] == before
    status = _cli(target, "status", "sandbox", timeout=120).stdout
    assert "waiting" in status and "a new host backs up only once restored" in status

    started = _cli(target, "backup", "sandbox", "--start-empty")
    assert started.returncode == 0, started.stdout[-3000:] + started.stderr[-3000:]
    assert _timers(target) == ["enabled", "enabled"]
    assert on(target, f"cat {STATE}/ready").startswith("start-empty ")
    assert _snapshots(target)[-1]["id"] not in before  # a new snapshot
    _zero_changes(target)


def test_retention_keeps_the_last_three(target, provisioned):
    converge(target, *ONE_A_DAY)
    _zero_changes(target, *ONE_A_DAY)
    try:
        for _ in range(4):
            run = _cli(target, "backup", "sandbox")
            assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        # All of today, in one group (host and tags): keep-daily 1 alone would leave one.
        snapshots = _snapshots(target)
        assert len([s for s in snapshots if s["tags"] == snapshots[-1]["tags"]]) == 3
    finally:
        converge(target)


def test_another_hosts_snapshots_are_neither_pruned_nor_restored(target, provisioned):
    # Another host writing to the same repository, under its own name.
    other = "orchestra-other"
    if len(_snapshots(target, other)) < 4:
        for i in range(4):
            on(target, f"echo {i} > /tmp/other && {RESTIC} backup --quiet --host {other} "
                       "--tag orchestra /tmp/other")
    theirs = [s["id"] for s in _snapshots(target, other)]
    converge(target, *ONE_A_DAY)
    try:
        run = _cli(target, "backup", "sandbox")
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        assert [s["id"] for s in _snapshots(target, other)] == theirs
    finally:
        converge(target)
    refused = _cli(target, "restore", "sandbox", "--snapshot", theirs[-1][:8], "--force", "-y")
    assert refused.returncode != 0
    assert f"is of host {other}, not {NAME}: restoring it needs --from-host {other}" in \
        refused.stdout + refused.stderr


def _wipe(target) -> None:
    """Empty PostgreSQL's tables, Redis and Weaviate, the writers stopped (as after a restore
    onto a new instance went wrong)."""
    on(target, "supervisorctl stop 'orchestra:*'")
    on(target, f". {LIB}; "
               "printf '%s\\n' \"SELECT format('TRUNCATE %I.%I CASCADE', schemaname, tablename) "
               "FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema') "
               "\\gexec\" | psql_admin -d orchestra >/dev/null; "
               "redis_cli FLUSHALL >/dev/null; "
               "for c in $(weaviate_classes); do "
               "weaviate_api -X DELETE \"$WEAVIATE_URL/v1/schema/$c\" >/dev/null; done")
    assert on(target, "/usr/local/lib/orchestra/orchestra-restore presence").strip() == ""


def _redis(target, command: str) -> str:
    return on(target, f". {LIB}; redis_cli {command}").strip()


def test_empty_data_after_a_full_snapshot_is_refused_then_restored(target, provisioned):
    _redis(target, "SET e2e:backups kept")  # data, whatever the other modules wrote
    full = _cli(target, "backup", "sandbox")
    assert full.returncode == 0, full.stdout[-3000:] + full.stderr[-3000:]
    before = _snapshots(target)
    assert "empty" not in before[-1]["tags"]
    _wipe(target)
    refused = _cli(target, "backup", "sandbox")
    output = refused.stdout + refused.stderr
    assert refused.returncode != 0
    assert ("FAILED empty-check: every database, Redis and Weaviate are empty but the last "
            f"snapshot of {NAME} ({before[-1]['short_id']}) was not: no snapshot taken") in output
    assert _snapshots(target) == before
    assert "orchestra_backup_last_run_success 0" in \
        on(target, "cat /var/lib/prometheus/node-exporter/orchestra_backup.prom")

    # The good snapshot comes back (nothing to replace: no --force); its dumps read first.
    restored = _cli(target, "restore", "sandbox", "-y", timeout=1200)
    assert restored.returncode == 0, restored.stdout[-4000:] + restored.stderr[-4000:]
    assert on(target, "/usr/local/lib/orchestra/orchestra-restore presence").strip() != ""
    assert _redis(target, "GET e2e:backups") == "kept"
    again = _cli(target, "backup", "sandbox")
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    _zero_changes(target)


def test_a_damaged_dump_stops_the_restore_before_any_database_is_dropped(target, provisioned):
    work = "/var/backups/orchestra/work/restore"
    dump = f"{work}/var/backups/orchestra/work/backup/postgres/orchestra.dump"
    script = "/usr/local/lib/orchestra/orchestra-restore"
    tables = "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
    count = on(target, f". {LIB}; psql_admin -d orchestra -c \"{tables}\"").strip()
    on(target, f"{script} fetch {_snapshots(target)[-1]['id']}")
    try:
        on(target, f"truncate -s $(($(stat -c %s {dump}) / 2)) {dump}")
        result = sandbox.run(target.name, f"{script} postgres", timeout=120)
        assert result.returncode != 0
        assert ("FAILED postgres: the dump of database orchestra is unreadable "
                "(pg_restore --list): nothing dropped") in result.stderr
        assert on(target, f". {LIB}; psql_admin -d orchestra -c \"{tables}\"").strip() == count
    finally:
        on(target, f"{script} finish")


def test_an_unmounted_repository_file_system_stops_the_deploy(target, provisioned):
    on(target, "mkdir -p /mnt/orchestra-fs")  # a directory of the root file system
    moved = ("--data", "restic_repository=/mnt/orchestra-fs/restic",
             "--data", "restic_repository_mount=/mnt/orchestra-fs")
    env_before = on(target, f"cat {ETC}/restic.env")
    run = converge_fails(target, *moved)
    assert ("restic_repository_mount /mnt/orchestra-fs is not a mount point: the repository "
            "/mnt/orchestra-fs/restic would be created on this instance's own disk") in run
    assert on(target, "ls -A /mnt/orchestra-fs").strip() == ""
    assert on(target, f"cat {ETC}/restic.env") == env_before
    _zero_changes(target)


def converge_fails(target, *args: str) -> str:
    run = pyinfra(target, "-y", *args)
    assert run.returncode != 0
    return run.stdout + run.stderr


def _keys(target) -> list[str]:
    return [line for line in on(target, f"{RESTIC} key list").splitlines()
            if re.match(r"[ *][0-9a-f]{8} ", line)]


def test_restic_password_rotates_through_a_second_key(target, provisioned):
    rotated = {"ORCHESTRA_SECRET_RESTIC_PASSWORD": "rotated-" + "r" * 40}
    try:
        assert "Backup | Make restic_password the repository's key (add it, check it, remove " \
               "the old)" in converge(target, env=rotated).changed
        _zero_changes_env(target, rotated)
        assert len(_keys(target)) == 1
        run = _cli(target, "backup", "sandbox")
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        restored = _cli(target, "restore", "sandbox", "--force", "-y", timeout=1200,
                        env=rotated)
        assert restored.returncode == 0, restored.stdout[-4000:] + restored.stderr[-4000:]

        # Interrupted after `key add`: both passwords open it; the next deploy finishes.
        interrupted = {"ORCHESTRA_SECRET_RESTIC_PASSWORD": "interrupted-" + "i" * 40}
        on(target, f"printf %s {interrupted['ORCHESTRA_SECRET_RESTIC_PASSWORD']} "
                   f"> /root/next && {RESTIC} key add --new-password-file /root/next")
        assert len(_keys(target)) == 2
        on(target, f"{RESTIC} snapshots --json >/dev/null")  # still readable
        converge(target, env=interrupted)
        on(target, "rm -f /root/next")
        assert len(_keys(target)) == 1
        on(target, f"{RESTIC} --password-file {ETC}/restic-password.wanted cat config")
        _zero_changes_env(target, interrupted)
    finally:
        converge(target)  # back to the session's restic_password
    assert len(_keys(target)) == 1
    on(target, f"{RESTIC} snapshots --json >/dev/null")
    _zero_changes(target)


def _zero_changes_env(target, env: dict[str, str]) -> None:
    assert converge(target, env=env).changed == []
