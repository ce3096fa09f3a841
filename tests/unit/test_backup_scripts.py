"""orchestra-backup's and orchestra-restore's decisions (issue 11), run for real with sh.

The programs they ask (restic's snapshot list, psql, redis-cli, Weaviate through curl) are
stand-ins that answer as an empty host would and record each call; ``pg_restore``, ``jq``
and the scripts themselves are real. What is under test is what the scripts do with those
answers: refuse an empty backup after a full one, refuse to run on a host neither restored
nor declared empty, keep the last N snapshots, read a dump whole before dropping anything.
The real restic runs in tests/e2e/test_backups.py.
"""

import json
import os
import shutil
import subprocess

import pytest

from operations import render
from orchestra_infra import config as config_module
from orchestra_infra import schema
from orchestra_infra.secrets import NAMES

pytestmark = pytest.mark.skipif(not shutil.which("jq"), reason="jq is not installed")

STUBS = {
    "curl": r"""#!/bin/sh
# Stand-in for curl: a Weaviate without classes.
echo '{"classes": []}'
""",
    "redis-cli": r"""#!/bin/sh
# Stand-in for redis-cli: an empty Redis whose BGSAVE finishes at once.
while [ "$#" -gt 0 ]; do
    case $1 in --user|-h|-p) shift 2 ;; *) break ;; esac
done
case "$*" in
    PING) echo PONG ;;
    "INFO keyspace") printf '# Keyspace\r\n' ;;
    "INFO persistence")
        printf 'rdb_bgsave_in_progress:0\r\nrdb_last_bgsave_status:ok\r\nloading:0\r\n' ;;
    LASTSAVE) date +%s ;;
    "BGSAVE SCHEDULE") echo "Background saving started" ;;
    "CONFIG GET dir") printf 'dir\n%s\n' "$STUB_DIR" ;;
    "CONFIG GET dbfilename") printf 'dbfilename\ndump.rdb\n' ;;
    DBSIZE) echo "${STUB_KEYS:-0}" ;;
esac
""",
    "restic": r"""#!/bin/sh
# Stand-in for orchestra-restic: records each call; `snapshots` lists $STUB_SNAPSHOTS,
# `backup` reports a snapshot.
echo "$*" >> "$STUB_LOG"
case $1 in
    snapshots) printf '%s\n' "${STUB_SNAPSHOTS:-[]}" ;;
    backup) echo '{"message_type": "summary", "snapshot_id": "5a5a5a5a",'
            echo '"total_bytes_processed": 10, "data_added": 10}' ;;
esac
""",
    "runuser": r"""#!/bin/sh
# Stand-in for runuser in tests/unit/test_backup_scripts.py: `runuser -u USER -- PROGRAM ...`
# records the call; psql finds no table with rows, pg_dump writes a small dump.
shift 3
echo "$*" >> "$STUB_LOG"
case $1 in
    pg_dump) echo dump ;;
    psql) cat >/dev/null 2>&1 || true ;;
    *) exec "$@" ;;
esac
""",
    "orchestra-pg-archive": "#!/bin/sh\necho \"orchestra-pg-archive $*\" >> \"$STUB_LOG\"\n",
}

FULL = [{"id": "f" * 64, "short_id": "ffffffff", "time": "2026-01-02T03:15:00Z",
         "hostname": "orchestra-prod", "tags": ["orchestra"]}]
EMPTY = [{"id": "e" * 64, "short_id": "eeeeeeee", "time": "2026-01-03T03:15:00Z",
          "hostname": "orchestra-prod", "tags": ["orchestra", "empty"]}]


@pytest.fixture
def host(tmp_path):
    """The scripts rendered into tmp_path, their directories there too."""
    stubs = tmp_path / "bin"
    stubs.mkdir()
    for name, text in STUBS.items():
        (stubs / name).write_text(text)
        (stubs / name).chmod(0o755)
    dirs = {name: tmp_path / name for name in ("etc", "state", "textfile", "redis")}
    for path in dirs.values():
        path.mkdir()
    (dirs["etc"] / "redis.env").write_text("")
    (dirs["etc"] / "weaviate.curl").write_text("")
    (dirs["redis"] / "dump.rdb").write_text("rdb")
    config = schema.validate(config_module.environment_data("prod", {
        "weaviate_sha256": "0" * 64, "backup_work_dir": str(tmp_path / "work"),
        "weaviate_backup_dir": str(tmp_path / "weaviate")}), NAMES)
    lib = tmp_path / "lib.sh"
    lib.write_text(render.render("backup/usr/local/lib/orchestra/orchestra-backup-lib.sh.j2", {
        "config": config, "restic": str(stubs / "restic"), "backup_etc": str(dirs["etc"]),
        "state_dir": str(dirs["state"]), "textfile_dir": str(dirs["textfile"]),
        "host_name": "orchestra-prod", "databases": ["orchestra"],
        "pg_archive_script": str(stubs / "orchestra-pg-archive")}))
    for name in ("orchestra-backup", "orchestra-restore"):
        (tmp_path / name).write_text(render.render(
            f"backup/usr/local/lib/orchestra/{name}.j2", {"config": config, "lib": str(lib)}))
    log = tmp_path / "calls"
    log.write_text("")

    def run(script, *args, snapshots=()):
        env = {**os.environ, "PATH": f"{stubs}:{os.environ['PATH']}", "STUB_LOG": str(log),
               "STUB_DIR": str(dirs["redis"]), "STUB_SNAPSHOTS": json.dumps(list(snapshots))}
        result = subprocess.run(["sh", str(tmp_path / script), *args], env=env,
                                capture_output=True, text=True, timeout=60)
        return result, log.read_text().splitlines()

    return run, dirs["state"], tmp_path


def test_no_backup_on_a_host_neither_restored_nor_declared_empty(host):
    run, state, _ = host
    result, calls = run("orchestra-backup", "run")
    assert result.returncode == 1
    assert "FAILED start: this host was neither restored nor declared empty" in result.stderr
    assert calls == []
    assert "orchestra_backup_last_run_success 0" in \
        (state.parent / "textfile" / "orchestra_backup.prom").read_text()


def test_empty_data_after_a_full_snapshot_is_refused(host):
    run, state, _ = host
    (state / "ready").write_text("restored\n")
    result, calls = run("orchestra-backup", "run", snapshots=FULL)
    assert result.returncode == 1, result.stdout + result.stderr
    assert ("FAILED empty-check: every database, Redis and Weaviate are empty but the last "
            "snapshot of orchestra-prod (ffffffff) was not: no snapshot taken") in result.stderr
    assert not [c for c in calls if c.startswith(("backup", "forget"))], calls
    assert not (state / "last-success").exists()


@pytest.mark.parametrize("previous", [[], EMPTY, FULL + EMPTY])
def test_empty_data_is_backed_up_apart_when_nothing_better_was(host, previous):
    run, state, _ = host
    (state / "ready").write_text("start-empty\n")
    result, calls = run("orchestra-backup", "run", snapshots=previous)
    assert result.returncode == 0, result.stdout + result.stderr
    (backup,) = [c for c in calls if c.startswith("backup ")]
    assert "--tag orchestra --tag empty --host orchestra-prod" in backup
    (forget,) = [c for c in calls if c.startswith("forget ")]
    assert "--tag orchestra --host orchestra-prod --group-by host,tags --keep-last 3 " in forget


def test_allow_empty_lets_one_empty_backup_through(host):
    run, state, _ = host
    (state / "last-success").write_text("1\n")  # backed up before: no marker needed
    (state / "allow-empty").write_text("2026-01-04T00:00:00Z\n")
    result, calls = run("orchestra-backup", "run", snapshots=FULL)
    assert result.returncode == 0, result.stdout + result.stderr
    assert any(c.startswith("backup ") and "--tag orchestra --tag empty" in c for c in calls)
    assert not (state / "allow-empty").exists()
    result, _ = run("orchestra-backup", "run", snapshots=FULL)
    assert result.returncode == 1 and "FAILED empty-check" in result.stderr


def test_a_full_host_backs_up_under_the_orchestra_tag(host, monkeypatch):
    run, state, tmp_path = host
    (state / "ready").write_text("restored\n")
    monkeypatch.setenv("STUB_KEYS", "3")
    # Redis holds keys: the stand-in's keyspace says so.
    stub = tmp_path / "bin" / "redis-cli"
    stub.write_text(stub.read_text().replace("printf '# Keyspace\\r\\n'",
                                             "printf '# Keyspace\\r\\ndb0:keys=3,expires=0\\r\\n'"))
    result, calls = run("orchestra-backup", "run", snapshots=FULL)
    assert result.returncode == 0, result.stdout + result.stderr
    assert any(c.startswith("backup ") and "--tag orchestra --host" in c for c in calls)
    assert not any(c.startswith("snapshots") for c in calls)


def test_an_unreadable_dump_is_found_before_any_database_is_dropped(host):
    if not shutil.which("pg_restore"):
        pytest.skip("pg_restore is not installed")
    run, _, tmp_path = host
    dumps = tmp_path / "work" / "restore" / str(tmp_path / "work" / "backup").lstrip("/")
    (dumps / "postgres").mkdir(parents=True)
    (dumps / "postgres" / "orchestra.dump").write_bytes(b"PGDMP" + b"\0" * 40)
    result, calls = run("orchestra-restore", "postgres")
    assert result.returncode == 1
    assert ("FAILED postgres: the dump of database orchestra is unreadable (pg_restore "
            "--list): nothing dropped") in result.stderr
    assert not [c for c in calls if "DROP" in c], calls
