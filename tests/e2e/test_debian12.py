"""Debian 12 keeps working: converge, a second run changes nothing, every service healthy
through nginx, and a reboot. (Ubuntu 22.04, every Lambda instance, gets the whole suite.)

The host boots with the others and is provisioned in the background from the start of the
session (conftest.debian_provisioning), while the Ubuntu target is.
"""

from __future__ import annotations

import time

import pytest

from .conftest import converge, on
from .test_apps import MCP_SERVERS, _request
from .test_pitr import ARCHIVE, _archived_after, _backups, _cli, _psql, _wait_for
from .test_reboot import reboot_until_healthy

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def debian_provisioned(debian, debian_provisioning):
    return debian_provisioning.result()


def test_the_host_is_debian_12(debian, debian_provisioned):
    assert 'VERSION_ID="12"' in on(debian, "cat /etc/os-release")


def test_second_run_changes_nothing(debian_provisioned):
    first, second, _ = debian_provisioned
    assert first.totals["success"] > 0
    assert second.changed == []


def test_every_service_is_healthy_through_nginx(debian, debian_provisioned):
    status, _, body = _request(debian, "/api/health/")
    assert status == 200, body
    assert {name: check["status"] for name, check in body["checks"].items()} == \
        {"postgres": "up", "redis": "up", "weaviate": "up"}
    for name in MCP_SERVERS:
        assert _request(debian, f"/mcp/{name}/health")[0] == 200, name
    assert _request(debian, "/")[0] == 200
    # Debian's own Node.js (18) would do, but the default is NodeSource's pinned major there too.
    assert on(debian, "node --version", sudo=False).startswith("v22.")
    assert "15" in on(debian, "ls /etc/postgresql")


def test_a_reboot_brings_everything_back_and_changes_nothing(debian, debian_provisioned):
    reboot_until_healthy(debian)
    assert converge(debian).changed == []


def test_the_archive_and_a_point_in_time_restore_with_debians_pgbackrest(debian,
                                                                        debian_provisioned):
    """Debian 12's pgBackRest (2.45; Ubuntu 22.04's, where test_pitr drills the loss of the
    instance, is 2.38): the archive starts when the host is declared empty, WAL reaches it
    within pg_archive_timeout, and a point-in-time restore brings deleted rows back."""
    # Declared empty in the background (conftest.debian_provisioning), its first base
    # backup started then; this runs last: a restore is no longer a fresh host's state.
    started = debian_provisioned[2]
    assert started.returncode == 0, started.stdout[-3000:] + started.stderr[-3000:]
    _wait_for("the first base backup", lambda: _backups(debian) >= 1, 600, 5)
    for i in range(3):
        _psql(debian, f"INSERT INTO notes (id, title, body) VALUES (gen_random_uuid(), "
                      f"'debian pitr {i}', 'kept')")
    time.sleep(2)
    before = on(debian, "date -u +%Y-%m-%dT%H:%M:%S.%6NZ").strip()
    time.sleep(2)
    _psql(debian, "DELETE FROM notes WHERE title LIKE 'debian pitr %'")
    deleted = on(debian, "date -u +%Y-%m-%dT%H:%M:%S.%6NZ").strip()
    _wait_for("the WAL of the DELETE archived", lambda: _archived_after(debian, deleted), 120)
    run = _cli("restore", "sandbox", "--to", before, "--only", "postgres", "--force", "-y",
               host=debian.name)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-3000:]
    assert _psql(debian, "SELECT count(*) FROM notes WHERE title LIKE 'debian pitr %'") == "3"
    assert "pgBackRest 2." in on(debian, "pgbackrest version")
    assert on(debian, f"{ARCHIVE} check >/dev/null && echo ok").strip() == "ok"
