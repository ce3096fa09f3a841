"""The service catalogue is the only list of services: what it holds, everyone sees."""

import pytest

from operations import monit, prometheus, render
from orchestra_infra import catalog, secrets, status
from orchestra_infra import config as config_module
from orchestra_infra.schema import validate

ALL = ("data", "app", "edge")


@pytest.fixture(scope="module")
def config():
    return validate(config_module.environment_data("prod", {"weaviate_sha256": "ab" * 32}),
                    secrets.NAMES)


def _dummy(config, postgres_major=None):
    """A data service nobody else has heard of: a catalogue entry, nothing more."""
    ready = catalog.Check("http", 8555, "/ready")
    return [catalog.Service(
        "dummy", "data", "dummy", **catalog.systemd_unit("dummy"), port=8555,
        port_keys=("dummy_port",), owners=(("dummy", "dummy"),), monit="dummy",
        pidfile="/run/dummy.pid", liveness=(catalog.Check("http", 8555, "/live"),),
        readiness=(ready,), probe=ready, data_dirs=("/var/lib/dummy",))]


@pytest.fixture
def with_dummy(monkeypatch):
    monkeypatch.setattr(catalog, "PARTS", [*catalog.PARTS, _dummy])


def test_a_new_service_is_seen_by_monit_prometheus_and_status(config, with_dummy):
    watched = monit.services(config, ALL, 15)
    dummy = next(s for s in watched if s["name"] == "dummy")
    assert dummy["start"] == "/bin/systemctl start dummy"
    assert dummy["health"] == ['failed host 127.0.0.1 port 8555 protocol http request "/live"']
    assert dummy["watch"] == ['failed host 127.0.0.1 port 8555 protocol http request "/ready"']
    checks = render.render("monit/etc/monit/orchestra/checks.conf.j2", {
        "config": config, "alert": monit.ALERT_SCRIPT, "services": watched,
        "filesystems": {}})
    assert "check process dummy with pidfile /run/dummy.pid" in checks
    assert "/var/lib/dummy" in monit.volume_paths(config, ALL)
    assert {"service": "dummy", "url": "http://127.0.0.1:8555/ready",
            "module": "http_2xx", "host": None, "blackbox": "127.0.0.1:9115"} in \
        prometheus.probes(config, [(ALL, None, "127.0.0.1", None)])
    assert "dummy" in prometheus.watched_units(config, ALL, 15)
    plan = status.plan(config, ALL)
    assert "dummy.service" in plan.units
    assert "http://127.0.0.1:8555/ready" in plan.urls
    assert "/var/lib/dummy" in plan.disk_paths
    assert "dummy" in config.monit_service_names()
    assert catalog.port_owners(config)["dummy_port"] == (("dummy", "dummy"),)
    # ... and only on the hosts of its group.
    assert "dummy" not in [s["name"] for s in monit.services(config, ["app", "edge"], None)]


def test_every_port_has_an_owner(config):
    assert set(config.port_table()) <= set(catalog.port_owners(config))


def test_names_are_unique(config):
    services = catalog.services(config)
    for names in ([s.name for s in services], [s.monit for s in services if s.monit]):
        assert len(names) == len(set(names))


def test_groups_and_managers_are_known(config):
    for service in catalog.services(config):
        assert service.group in (*catalog.GROUPS, "ops"), service.name
        assert service.manager in ("systemd", "supervisor", "pm2"), service.name


def test_postgres_unit_names_the_cluster_of_the_host(config):
    postgres = next(s for s in catalog.services(config, ["data"], 14) if s.monit == "postgres")
    assert postgres.unit == "postgresql@14-main"
    assert postgres.pidfile == "/var/run/postgresql/14-main.pid"
    unknown = next(s for s in catalog.services(config, ["data"]) if s.monit == "postgres")
    assert unknown.unit is None  # `status` finds the cluster on the host
