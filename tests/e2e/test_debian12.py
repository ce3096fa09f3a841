"""Debian 12 keeps working: converge, a second run changes nothing, every service healthy
through nginx, and a reboot. (Ubuntu 22.04, every Lambda instance, gets the whole suite.)

The host boots with the others and is provisioned in the background from the start of the
session (conftest.debian_provisioning), while the Ubuntu target is.
"""

from __future__ import annotations

import pytest

from .conftest import converge, on
from .test_apps import MCP_SERVERS, _request
from .test_reboot import reboot_until_healthy

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def debian_provisioned(debian, debian_provisioning):
    return debian_provisioning.result()


def test_the_host_is_debian_12(debian, debian_provisioned):
    assert 'VERSION_ID="12"' in on(debian, "cat /etc/os-release")


def test_second_run_changes_nothing(debian_provisioned):
    first, second = debian_provisioned
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
