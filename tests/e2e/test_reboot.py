"""A full reboot: every service back, healthy through nginx within 120 s, data intact.

One reboot serves every check (a reboot is the slowest thing a test can do).
"""

from __future__ import annotations

import time

import pytest

from orchestra_infra import sandbox, secrets

from .conftest import converge, on
from .test_apps import MCP_SERVERS, _request
from .test_data_services import _psql, _redis, data_units

pytestmark = pytest.mark.e2e

BUDGET = 120  # seconds from the reboot command to a healthy stack


@pytest.fixture(scope="module")
def rebooted(target, provisioned):
    secret = secrets.load("sandbox")
    status, _, note = _request(target, "/api/notes", "POST",
                               {"title": "reboot", "body": "written before the reboot"})
    assert status == 201, note
    _psql(target, secret["postgres_app_password"],
          "create table if not exists probe (v text); insert into probe values ('kept')")
    _redis(target, "orchestra", secret["redis_app_password"], "SET reboot-probe kept")
    reboot_until_healthy(target)
    return secret, note


def reboot_until_healthy(host) -> float:
    """Reboot host; the seconds until every service answered 200 through nginx."""
    started = time.monotonic()
    sandbox.reboot(host.name)
    paths = ["/api/health/", "/", *(f"/mcp/{name}/health" for name in MCP_SERVERS)]
    pending = set(paths)
    while pending and time.monotonic() - started < BUDGET:
        for path in sorted(pending):
            try:
                if _request(host, path, timeout=3)[0] == 200:
                    pending.discard(path)
            except OSError:
                pass
        time.sleep(0.5)
    healthy_after = time.monotonic() - started
    print(f"reboot of {host.name} ({host.image}): every service healthy through nginx "
          f"{healthy_after:.1f} s after the reboot command")
    assert not pending, f"not healthy {BUDGET} s after the reboot: {sorted(pending)}"
    return healthy_after


def test_every_service_is_running(target, rebooted):
    for unit in [*data_units(target).values(), "nginx", "supervisor", "pm2-orchestra"]:
        on(target, f"systemctl is-active -q {unit}")
    states = on(target, "supervisorctl status").splitlines()
    assert states and all(" RUNNING " in line for line in states), states


def test_the_note_is_back_from_all_three_stores(target, rebooted):
    _, note = rebooted
    assert _request(target, f"/api/notes/{note['id']}")[2]["body"] == "written before the reboot"
    status, _, vector = _request(target, f"/api/notes/{note['id']}/vector-object")
    assert status == 200 and vector["properties"]["note_id"] == note["id"]


def test_data_written_directly_survives(target, rebooted):
    secret, _ = rebooted
    assert "kept" in _psql(target, secret["postgres_app_password"], "select v from probe")
    assert _redis(target, "orchestra", secret["redis_app_password"], "GET reboot-probe") == \
        "kept"


def test_the_hardening_survives(target, rebooted):
    assert "policy drop" in on(target, "nft list table inet orchestra")
    assert "passwordauthentication no" in on(target, "sshd -T")


def test_docker_and_its_firewall_rules_survive_the_reboot(target, rebooted):
    assert on(target, "docker info --format '{{.ServerVersion}}'").strip()
    assert "-N DOCKER-USER" in on(target, "iptables -S")


def test_nothing_to_converge_after_a_reboot(target, rebooted):
    after_reboot = converge(target)
    assert after_reboot.totals["success"] == 0, after_reboot.changed


def test_wal_is_shipped_within_archive_timeout_after_the_reboot(target, rebooted):
    """PostgreSQL's checkpointer sleeps checkpoint_timeout (5 min) after a start unless woken
    (operations/postgres.py: a CHECKPOINT after every start): a write right after the reboot
    is handed to archive_command within pg_archive_timeout (30 s), not minutes later."""
    def sql(query: str) -> str:
        return on(target, f"runuser -u postgres -- psql -X -A -t -d orchestra -c \"{query}\"")

    sql("CREATE TABLE IF NOT EXISTS reboot_wal (t timestamptz)")
    written = sql("INSERT INTO reboot_wal VALUES (now()) RETURNING t").splitlines()[0].strip()
    deadline = time.monotonic() + 60
    while sql(f"SELECT coalesce(last_archived_time > '{written}', false) "
              "FROM pg_stat_archiver").strip() != "t":
        assert time.monotonic() < deadline, "no WAL segment handed to archive_command in 60 s"
        time.sleep(2)
