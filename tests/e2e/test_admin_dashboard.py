"""The admin page, opened in a real headless Chromium through the edge (with its password):
every service of the host as `orchestra-infra status` sees it, disks, the newest backup,
the alerts firing, graphs of the last hour; a stopped service turns red within one status
run and one page refresh. Screenshots go to build/e2e-figures/."""

from __future__ import annotations

import base64
import json
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from operations import admin_status
from orchestra_infra import secrets

from .conftest import on

ROOT = Path(__file__).resolve().parents[2]
FIGURES = ROOT / "build" / "e2e-figures"
DRIVER = Path(__file__).with_name("admin_browser.py")
PAGE_REFRESH_S = 5  # app/modern-admin/src/health.js REFRESH_MS
STOPPED = "prometheus-redis-exporter"  # nothing else depends on it


def test_the_status_file_holds_the_rows_status_computes(target, provisioned):
    assert provisioned[1].changed == [], provisioned[1].changed  # the second run: no change
    # The timer's first run comes OnActiveSec after the deploy started it: wait up to three
    # intervals for the file (bounded).
    on(target, f"for _ in $(seq {3 * admin_status.INTERVAL}); do "
               f"test -s {admin_status.OUTPUT} && exit 0; sleep 1; done; exit 1")
    document = json.loads(on(target, f"cat {admin_status.OUTPUT}"))
    assert document["interval"] == admin_status.INTERVAL
    services = {row["service"]: row for row in document["rows"]}
    assert services["nginx"]["health"] == "ok" and services["nginx"]["state"] == "running"
    assert services["api-0"]["state"] == "RUNNING"
    assert any(name.startswith("disk ") for name in services)
    assert "backup" in services
    assert on(target, f"stat -c '%a %U %G' {admin_status.OUTPUT}").split() == \
        ["640", "root", "orchestra"]
    # The timer's unit is sandboxed like every other the deploy writes.
    exposure = on(target, "systemd-analyze security --no-pager orchestra-status.service | "
                          "tail -n 1")
    FIGURES.mkdir(parents=True, exist_ok=True)
    (FIGURES / "orchestra-status-exposure.txt").write_text(
        f"{exposure.strip()}\none status run on the host: {document['seconds']} s "
        f"({len(document['rows'])} rows)\n")


def test_the_overview_needs_the_edge_password(target, provisioned):
    tls = ssl.create_default_context()
    tls.check_hostname, tls.verify_mode = False, ssl.CERT_NONE
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"https://{target.address}/_admin/overview", timeout=10,
                               context=tls)
    assert refused.value.code == 401


def _overview(target) -> dict:
    tls = ssl.create_default_context()
    tls.check_hostname, tls.verify_mode = False, ssl.CERT_NONE
    request = urllib.request.Request(f"https://{target.address}/_admin/overview")
    password = secrets.load("sandbox")["edge_password"]
    request.add_header("Authorization", "Basic " + base64.b64encode(
        f"orchestra:{password}".encode()).decode())
    with urllib.request.urlopen(request, timeout=10, context=tls) as response:
        return json.load(response)


def _wait_for_graph_points(target, graphs: tuple[str, ...], limit_s: float = 240) -> None:
    """A host provisioned a minute ago has no hour of graphs: wait (bounded) until
    Prometheus holds a point of each graph, as the overview reports it."""
    deadline = time.monotonic() + limit_s
    while True:
        empty = [g["id"] for g in _overview(target)["graphs"]
                 if g["id"] in graphs and not any(s["points"] for s in g["series"])]
        if not empty or time.monotonic() > deadline:
            assert not empty, f"no point in {limit_s} s for the graphs {empty}"
            return
        time.sleep(5)


class AdminPage:
    """The admin page open in the distro's Chromium (admin_browser.py, a process of its own),
    with the edge's password: ``page`` is what it shows first; ``turns_red`` waits (bounded
    by a status interval and a page refresh) until a stopped service's row is red."""

    def __init__(self, address: str, figure: str):
        self.request = {
            "url": f"https://{address}/", "user": "orchestra",
            "password": secrets.load("sandbox")["edge_password"],
            "screenshot": str(FIGURES / f"{figure}.png"),
            "screenshot_stopped": str(FIGURES / f"{figure}-stopped-service.png"),
            "red_within_ms": (admin_status.INTERVAL + PAGE_REFRESH_S + 5) * 1000}

    def __enter__(self):
        FIGURES.mkdir(parents=True, exist_ok=True)
        self.driver = subprocess.Popen([sys.executable, str(DRIVER)], stdin=subprocess.PIPE,
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                       text=True)
        try:
            self._send(json.dumps(self.request))
            assert self.driver.stdout.readline().strip() == "ready", self._stderr()
            self.page = json.loads(self.driver.stdout.readline())
        except BaseException:
            self.__exit__()
            raise
        return self

    def turns_red(self, service: str, host: str | None = None) -> dict:
        self._send(f"{host} {service}" if host else service)
        line = self.driver.stdout.readline()
        assert line, self._stderr()
        return json.loads(line)

    def _send(self, line: str) -> None:
        self.driver.stdin.write(line + "\n")
        self.driver.stdin.flush()

    def _stderr(self) -> str:
        self.driver.kill()
        return self.driver.stderr.read()[-3000:]

    def __exit__(self, *exc):
        self.driver.kill()
        self.driver.wait(timeout=30)


def test_the_dashboard_in_chromium(target, provisioned, browser_ready):
    graphs_drawn = ("requests", "cpu", "memory", "latency")
    _wait_for_graph_points(target, graphs_drawn)
    with AdminPage(target.address, "admin-dashboard") as browser:
        page = browser.page
        health = {row["service"]: row["health"] for row in page["rows"]}
        for service in ("nginx", "api-0", "supervisor", "pm2-orchestra", "redis-server",
                        "weaviate", "prometheus", "monit", STOPPED):
            # warn is not red: Monit may see the loaded sandbox's CPU above its limit
            assert health.get(service) in ("ok", "warn"), (service, page["rows"])
        assert any(name.startswith("postgresql@") for name in health)
        assert "disk /" in health and "backup" in health
        graphs = {graph["id"]: graph for graph in page["graphs"]}
        assert set(graphs) == {"requests", "errors", "latency", "cpu", "memory"}
        for graph in graphs_drawn:
            assert graphs[graph]["paths"] >= 1, graphs[graph]
        assert page["alerts"].startswith("Alerts firing")
        assert "Every service healthy" in page["summary"] or "failing" in page["summary"]

        # Monit would restart it: it is left alone while the page is watched.
        on(target, f"monit unmonitor {STOPPED} || true; systemctl stop {STOPPED}")
        try:
            after = browser.turns_red(STOPPED)
            (FIGURES / "admin-dashboard-red.txt").write_text(
                f"{STOPPED} stopped: its row red on the page after "
                f"{after['red_after_seconds']} s (status every {admin_status.INTERVAL} s, "
                f"page refresh {PAGE_REFRESH_S} s)\n")
            row = next(r for r in after["rows"] if r["service"] == STOPPED)
            assert row["health"] == "fail" and "stopped" in " ".join(row["cells"])
            assert STOPPED in after["summary"]
        finally:
            on(target, f"systemctl start {STOPPED}; monit monitor {STOPPED} || true")
