"""PostgreSQL's continuous archive (issue 13): settings, archive_command, the restore's choice
of base backup and target (decided while planning), the newer copies of Redis and Weaviate."""

from datetime import datetime, timezone

import pytest
from pyinfra.api import DeployError
from pyinfra.context import ctx_host, ctx_state
from pyinfra_testing.util import FakeState, create_host

from operations import pgarchive, render, restore
from orchestra_infra import config as config_module
from orchestra_infra import schema, secrets
from orchestra_infra.schema import ConfigError


def _config(**overrides):
    pinned = {"weaviate_sha256": "0" * 64, **overrides}
    return schema.validate(config_module.environment_data("prod", pinned), secrets.NAMES)


def _problems(**overrides):
    with pytest.raises(ConfigError) as e:
        _config(**overrides)
    return e.value.problems


@pytest.fixture
def fake_host():
    state = FakeState()
    host = create_host(state, name="h1", facts={})
    with ctx_state.use(state), ctx_host.use(host):
        yield host


def test_defaults_ship_wal_at_least_every_30_seconds_to_an_encrypted_repository():
    config = _config()
    assert config.pg_archive_enabled and config.pg_archive_timeout == 30
    assert "pg_archive_cipher_pass" in secrets.NAMES
    assert secrets.SPEC_BY_NAME["pg_archive_cipher_pass"].generate


@pytest.mark.parametrize("overrides, key, words", [
    ({"pg_archive_repository": "sftp:backup@host:/srv/pg"}, "pg_archive_repository",
     "2.46"),
    ({"pg_archive_timeout": 61}, "pg_archive_timeout", "60"),
    ({"pg_archive_timeout": 0}, "pg_archive_timeout", "1"),
    ({"pg_archive_queue_max": "128M"}, "pg_archive_queue_max", "256M"),
    ({"pg_archive_repository": "/var/backups/orchestra/restic/pg"}, "pg_archive_repository",
     "overlaps restic_repository"),
    ({"pg_archive_repository_mount": "/mnt/elsewhere"}, "pg_archive_repository_mount",
     "not below"),
])
def test_check_refuses_naming_the_key(overrides, key, words):
    problems = _problems(**overrides)
    assert any(p.startswith(key) and words in p for p in problems), problems


def test_s3_repositories_are_split_for_pgbackrest():
    assert schema.pg_archive_s3("s3:https://s3.example.com/bucket/pg/prod") == {
        "endpoint": "s3.example.com", "bucket": "bucket", "path": "/pg/prod"}
    assert schema.pg_archive_s3("s3:https://s3.example.com:9000/bucket")["path"] == "/"
    assert schema.pg_archive_s3("/srv/pgbackrest") is None
    _config(pg_archive_repository="s3:https://s3.example.com/bucket/pg")


def test_archive_command_is_pgbackrest_behind_the_ready_gate(fake_host):
    config = _config()
    command = pgarchive.archive_command(config)
    # pgBackRest's backup refuses an archive_command without its name in it.
    assert command == ("test ! -e /var/lib/orchestra-infra/backup/archive-ready || "
                       "pgbackrest --stanza=orchestra-prod archive-push %p")
    assert "'" not in command


def test_pgbackrest_conf_holds_the_passphrase_masked_in_diffs(fake_host):
    config = _config()
    context = {"config": config, "s3": None, "spool": pgarchive.SPOOL,
               "log_dir": pgarchive.LOG_DIR, "stanza": "orchestra-prod",
               "data_dir": "/var/lib/postgresql/14/main", "queue_max": 4 << 30}
    render.use_secrets(secrets.Secrets("test", {"pg_archive_cipher_pass": "cipher-canary-123"}))
    try:
        text = render.render("pgarchive/etc/pgbackrest/pgbackrest.conf.j2", context)
        masked = render.render("pgarchive/etc/pgbackrest/pgbackrest.conf.j2", context,
                               masked=True)
    finally:
        render.use_secrets(None)
    assert "repo1-cipher-pass=cipher-canary-123" in text
    assert "cipher-canary-123" not in masked
    assert f"archive-push-queue-max={4 << 30}" in text and "archive-async=y" in text
    assert "[orchestra-prod]\npg1-path=/var/lib/postgresql/14/main" in text


BACKUPS = {"backups": [
    {"label": "20261129-023000F", "type": "full", "start": 1795900000, "stop": 1795900100},
    {"label": "20261130-023000F_20261130-023000D", "type": "diff", "start": 1795990000,
     "stop": 1795990050},
]}


def test_latest_takes_the_newest_base_backup(fake_host):
    assert restore.pick_backup(BACKUPS, "latest") == ("20261130-023000F_20261130-023000D",
                                                      "latest")


def test_a_time_takes_the_newest_backup_that_ended_before_it(fake_host):
    between = datetime.fromtimestamp(1795950000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    label, target = restore.pick_backup(BACKUPS, between, now=1796000000)
    assert label == "20261129-023000F"
    assert target == datetime.fromtimestamp(1795950000, timezone.utc).strftime(
        "%Y-%m-%d %H:%M:%S.000000+00")


@pytest.mark.parametrize("to, words", [
    ("2026-11-20T00:00:00Z", "before the archive's first base backup"),
    ("2099-01-01T00:00:00Z", "in the future"),
])
def test_unreachable_targets_are_refused_before_any_change(fake_host, to, words):
    with pytest.raises(DeployError) as e:
        restore.pick_backup(BACKUPS, to, now=1796000000)
    assert words in str(e.value)


def test_an_empty_or_unreadable_archive_is_refused(fake_host):
    with pytest.raises(DeployError, match="no base backup"):
        restore.pick_backup({"backups": []}, "latest")
    with pytest.raises(DeployError, match="cannot be read: unable to decrypt"):
        restore.pick_backup({"error": "unable to decrypt"}, "latest")


@pytest.mark.parametrize("text, expected", [
    ("2026-11-30T05:41:10Z", "2026-11-30T05:41:10+00:00"),
    ("2026-11-30 05:41:10.25", "2026-11-30T05:41:10.250000+00:00"),
    ("2026-11-30T07:41:10+02:00", "2026-11-30T05:41:10+00:00"),
    ("2026-11-30T07:41:10+0200", "2026-11-30T05:41:10+00:00"),
])
def test_targets_are_read_as_utc_unless_they_say(text, expected):
    assert restore.parse_target(text).isoformat() == expected


@pytest.mark.parametrize("text", ["yesterday", "2026-11-30", "2026-11-30T05:41:10Z;id",
                                  "2026-11-30T05:41:10 UTC"])
def test_other_targets_are_refused(text):
    with pytest.raises(ValueError):
        restore.parse_target(text)


def test_a_restore_takes_the_newest_copy_of_redis_and_weaviate():
    daily = {"id": "d" * 8, "short_id": "dddddddd", "time": "2026-11-30T03:15:00Z",
             "hostname": "orchestra-prod", "tags": ["orchestra"]}
    copies = [
        {"id": f"r{i}", "short_id": f"r{i}", "time": f"2026-11-30T0{i}:00:00Z",
         "hostname": "orchestra-prod", "tags": ["orchestra-redis"]} for i in (2, 4, 5)
    ] + [{"id": "w1", "short_id": "w1", "time": "2026-11-30T05:30:00Z",
          "hostname": "orchestra-other", "tags": ["orchestra-weaviate"]}]
    found = restore.newer_copies([daily, *copies], daily, "orchestra-prod", restore.STORES)
    assert {store: copy["id"] for store, copy in found.items()} == {"redis": "r5"}
    assert restore.newer_copies([daily, *copies], daily, "orchestra-prod", ("postgres",)) == {}
