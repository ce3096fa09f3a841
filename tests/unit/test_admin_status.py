"""The admin page's sources: the status a host writes for it (the same rows as `orchestra-infra
status`, computed on the host with the standard library alone) and the admin server's
overview, which asks only loopback sources with fixed questions."""

from __future__ import annotations

import contextlib
import grp
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from operations import admin_status
from orchestra_infra import config, status
from orchestra_infra.schema import validate
from orchestra_infra.secrets import NAMES
from orchestra_infra.status_probe import parse

ROOT = Path(__file__).resolve().parents[2]
HEALTHY = Path(__file__).parent / "status" / "healthy.txt"
ADMIN = ROOT / "app" / "modern-admin"
ALL = ("edge", "app", "data")


@pytest.fixture(scope="module")
def sandbox_config():
    return validate(config.environment_data("sandbox"), NAMES)


def _install_like_the_deploy(tmp_path, cfg, probe_output: str,
                             alertmanager: str = "http://127.0.0.1:9") -> tuple[Path, Path]:
    """What operations/admin_status.py puts on a host, under tmp_path, with a probe.sh that
    prints a recorded answer; returns the runner and the output file."""
    lib, out = tmp_path / "lib", tmp_path / "run" / "status.json"
    (lib / "orchestra_infra").mkdir(parents=True)
    out.parent.mkdir()
    (lib / "orchestra_infra" / "__init__.py").write_text("")
    for module in admin_status.MODULES:
        shutil.copy(module.__file__, lib / "orchestra_infra" / Path(module.__file__).name)
    (lib / "spec.json").write_text(admin_status.spec_document(cfg, ALL, "d-monit"))
    (lib / "recorded.txt").write_text(probe_output)
    (lib / "probe.sh").write_text(f"cat {lib}/recorded.txt\n")
    templates = Environment(loader=FileSystemLoader(ROOT / "templates"),
                            undefined=StrictUndefined)
    runner = lib / "orchestra-status"
    runner.write_text(templates.get_template(
        "status/usr/local/lib/orchestra/status/orchestra-status.j2").render(
            lib=str(lib), output=str(out), group=grp.getgrgid(os.getgid()).gr_name,
            interval=admin_status.INTERVAL, alertmanager=alertmanager))
    return runner, out


def test_the_host_computes_the_rows_status_computes_with_the_standard_library(
        tmp_path, sandbox_config, sources):
    runner, out = _install_like_the_deploy(tmp_path, sandbox_config, HEALTHY.read_text(),
                                           alertmanager=sources)
    # -I: no site-packages, no PYTHONPATH: what a host's bare python3 has.
    result = subprocess.run([sys.executable, "-I", str(runner)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    document = json.loads(out.read_text())
    expected = status.sort_rows(status.host_rows(sandbox_config, "d-monit", ALL,
                                                 parse(HEALTHY.read_text())))
    assert document["rows"] == [row.as_dict() for row in expected]
    assert document["host"] == "d-monit" and document["interval"] == admin_status.INTERVAL
    assert out.stat().st_mode & 0o777 == 0o640
    assert out.parent.stat().st_mode & 0o777 == 0o750
    assert {r["service"] for r in document["rows"]} >= {"nginx", "api-0", "backup", "disk /"}
    # The alerts its Alertmanager fires, as the overview shows them (the admin hosts of a
    # multi-host layout read them from here).
    assert document["alerts"] == {"firing": [FIRING]}


def test_an_alertmanager_out_of_reach_is_named_not_fatal(tmp_path, sandbox_config):
    runner, out = _install_like_the_deploy(tmp_path, sandbox_config, HEALTHY.read_text())
    subprocess.run([sys.executable, "-I", str(runner)], check=True, timeout=60)
    alerts = json.loads(out.read_text())["alerts"]
    assert alerts["firing"] == [] and alerts["error"].startswith("Alertmanager: ")


def test_a_probe_that_prints_nothing_is_one_failing_row(tmp_path, sandbox_config):
    runner, out = _install_like_the_deploy(tmp_path, sandbox_config, "")
    subprocess.run([sys.executable, "-I", str(runner)], check=True, timeout=60)
    (row,) = json.loads(out.read_text())["rows"]
    assert row["health"] == "fail" and row["state"] == "no status"


def test_the_spec_round_trips(sandbox_config):
    from orchestra_infra.status_rows import HostSpec

    spec = status.host_spec(sandbox_config, ALL)
    assert HostSpec.from_dict(json.loads(json.dumps(spec.as_dict()))) == spec


# --- the admin server's overview (app/modern-admin/overview.js) -----------------------------

FIRING = {"name": "ServiceDown", "severity": "critical", "summary": "redis is down",
          "since": "2026-11-30T05:00:00Z",
          "labels": {"alertname": "ServiceDown", "severity": "critical"}}


class _Sources(BaseHTTPRequestHandler):
    """Prometheus's and Alertmanager's HTTP APIs, as far as the overview asks them."""

    asked: list[str] = []
    # Each range query's series' labels (None: one series, labelled like one host's).
    labels: list[dict] | None = None

    def do_GET(self):  # noqa: N802 (http.server's name)
        self.asked.append(self.path)
        url = urlparse(self.path)
        if url.path == "/api/v1/query_range":
            query = parse_qs(url.query)["query"][0]
            labels = self.labels or [{"instance": "127.0.0.1:9100"} if "instance" in query
                                     else {}]
            body = {"status": "success", "data": {"resultType": "matrix", "result": [
                {"metric": metric, "values": [[1000, "1.5"], [1060, "2.5"], [1120, "NaN"]]}
                for metric in labels]}}
        elif url.path == "/api/v2/alerts":
            body = [{"labels": {"alertname": "ServiceDown", "severity": "critical"},
                     "annotations": {"summary": "redis is down"},
                     "startsAt": "2026-11-30T05:00:00Z"}]
        else:
            self.send_error(404)
            return
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def sources():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Sources)
    _Sources.asked, _Sources.labels = [], None
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _overview(env: dict) -> dict:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    script = "require('./overview.js').overview().then((o) => console.log(JSON.stringify(o)))"
    result = subprocess.run([node, "-e", script], cwd=ADMIN, capture_output=True, text=True,
                            timeout=60, env={"PATH": os.environ["PATH"], **env})
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_the_overview_reads_the_status_file_alerts_and_graphs(tmp_path, sources):
    status_file = tmp_path / "status.json"
    status_file.write_text(json.dumps({"host": "h", "generated": 1, "interval": 10,
                                       "rows": [{"service": "nginx", "health": "ok"}]}))
    found = _overview({"STATUS_FILE": str(status_file), "PROMETHEUS_URL": sources,
                       "ALERTMANAGER_URL": sources})
    assert found["status"]["rows"] == [{"service": "nginx", "health": "ok"}]
    assert found["status"]["age_seconds"] > 0
    assert found["alerts"]["firing"] == [{"host": "h", **FIRING}]
    assert found["peers"] == []
    graphs = {g["id"]: g for g in found["graphs"]}
    assert set(graphs) == {"requests", "errors", "latency", "cpu", "memory"}
    assert graphs["cpu"]["series"] == [{"label": "127.0.0.1:9100",
                                        "points": [[1000, 1.5], [1060, 2.5]]}]
    # Only fixed questions, an hour back at one point a minute.
    ranges = [parse_qs(urlparse(p).query) for p in _Sources.asked if "query_range" in p]
    assert len(ranges) == 5
    for asked in ranges:
        assert int(asked["end"][0]) - int(asked["start"][0]) == 3600
        assert asked["step"] == ["60"]
    assert "active=true&silenced=false&inhibited=false" in " ".join(_Sources.asked)


def test_with_several_hosts_a_graph_shows_only_the_series_of_the_deploy_s_targets(
        tmp_path, sources):
    """The package's own first config scraped `localhost:9100` on a new metrics host: no
    `host` label, and no line of its own beside the host's."""
    _Sources.labels = [{"instance": "localhost:9100"},
                       {"instance": "10.210.0.2:9100", "host": "203.0.113.11"}]
    found = _overview({"STATUS_FILE": str(tmp_path / "none.json"), "PROMETHEUS_URL": sources,
                       "ALERTMANAGER_URL": ""})
    cpu = {g["id"]: g for g in found["graphs"]}["cpu"]
    assert [s["label"] for s in cpu["series"]] == ["203.0.113.11"]


def test_the_overview_names_what_it_could_not_read(tmp_path):
    found = _overview({"STATUS_FILE": str(tmp_path / "missing.json"),
                       "PROMETHEUS_URL": "http://127.0.0.1:9", "ALERTMANAGER_URL":
                       "http://127.0.0.1:9"})
    assert found["status"] == {"error": "no status yet"}
    assert found["alerts"]["firing"] == [] and found["alerts"]["error"]
    assert all(g["series"] == [] and g["error"] for g in found["graphs"])


def _peer(answer: bytes | None, drop_first: bool = False, silent_first: bool = False
          ) -> tuple[socket.socket, threading.Thread]:
    """What orchestra-status-share.socket does: write the document to whoever connects and
    close (None: accept and say nothing, until closed; drop_first: close the first
    connection at once, as systemd does past MaxConnectionsPerSource; silent_first: say
    nothing on the first, as a host too loaded to start `cat` in time)."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve():
        first = drop_first or silent_first
        with contextlib.suppress(OSError):
            while True:
                connection, _ = listener.accept()
                with connection:
                    if first and drop_first:
                        pass
                    elif answer is None or first:
                        connection.recv(1)  # until the client gives up
                    else:
                        connection.sendall(answer)
                    first = False
    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return listener, thread


def test_the_overview_reads_every_peer_s_rows_and_alerts(tmp_path, sources):
    status_file = tmp_path / "status.json"
    status_file.write_text(json.dumps({"host": "edge", "generated": 1, "interval": 10,
                                       "rows": []}))
    data_row = {"service": "postgresql", "health": "fail"}
    peer_alert = {**FIRING, "name": "BackupTooOld"}
    good = json.dumps({"host": "10.0.0.12", "generated": 2, "interval": 10,
                       "rows": [data_row], "alerts": {"firing": [peer_alert]}}).encode()
    peers = [_peer(good, drop_first=True), _peer(b"not json"), _peer(None)]
    closed = socket.create_server(("127.0.0.1", 0))
    closed_port = closed.getsockname()[1]
    closed.close()
    try:
        listed = ",".join(f"{name}=127.0.0.1:{port}" for name, port in [
            ("data", peers[0][0].getsockname()[1]), ("garbled", peers[1][0].getsockname()[1]),
            ("silent", peers[2][0].getsockname()[1]), ("gone", closed_port)])
        found = _overview({"STATUS_FILE": str(status_file), "PROMETHEUS_URL": sources,
                           "ALERTMANAGER_URL": sources, "STATUS_PEERS": listed})
    finally:
        for listener, _ in peers:
            listener.close()
    data, garbled, silent, gone = found["peers"]
    # The label the edge knows the host by, whatever the document says.
    assert data["host"] == "data" and data["rows"] == [data_row] and data["age_seconds"] > 0
    assert garbled == {"host": "garbled", "error": "unreadable answer"}
    assert silent == {"host": "silent", "error": "no answer"}
    assert gone == {"host": "gone", "error": "unreachable: ECONNREFUSED"}
    assert found["alerts"]["firing"] == [{"host": "edge", **FIRING},
                                         {"host": "data", **peer_alert}]


def _overviews(env: dict, moments: list[float], between) -> list[dict]:
    """overview() in one admin process, once per moment (seconds added to the clock);
    ``between(i)`` runs before the i-th call after the first."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    script = ("const o = require('./overview.js'); const real = Date.now;"
              "const rl = require('node:readline').createInterface({ input: process.stdin });"
              "rl.on('line', async (line) => { const shift = Number(line) * 1000;"
              "  Date.now = () => real() + shift;"
              "  console.log(JSON.stringify(await o.overview())); });")
    process = subprocess.Popen([node, "-e", script], cwd=ADMIN, stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True,
                               env={"PATH": os.environ["PATH"], **env})
    found = []
    try:
        for i, moment in enumerate(moments):
            if i:
                between(i)
            process.stdin.write(f"{moment}\n")
            process.stdin.flush()
            found.append(json.loads(process.stdout.readline()))
    finally:
        process.kill()
        process.wait(timeout=10)
    return found


def test_a_peer_that_fails_once_is_asked_again_and_its_last_document_kept_a_while(
        tmp_path, sources):
    """One slow or refused answer from a loaded peer: asked again; both failing, its last
    document (with the error) for PEER_KEEP_S, then a red line."""
    status_file = tmp_path / "status.json"
    status_file.write_text(json.dumps({"host": "edge", "generated": 1, "interval": 10,
                                       "rows": []}))
    row = {"service": "redis-server", "health": "ok"}
    good = json.dumps({"host": "10.0.0.12", "generated": 2, "interval": 10,
                       "rows": [row], "alerts": {"firing": []}}).encode()
    # The first connection gets no answer (the client's timeout), the second the document.
    listener, _ = _peer(good, silent_first=True)
    port = listener.getsockname()[1]
    env = {"STATUS_FILE": str(status_file), "PROMETHEUS_URL": sources,
           "ALERTMANAGER_URL": sources, "STATUS_PEERS": f"data=127.0.0.1:{port}"}

    def close(i):
        if i == 1:  # shutdown() wakes the thread blocked in accept() and stops listening
            listener.shutdown(socket.SHUT_RDWR)
            listener.close()

    first, kept, gone = _overviews(env, [0, 20, 40], close)
    assert first["peers"][0]["rows"] == [row] and "stale" not in first["peers"][0]
    # Closed: refused twice; the document read 20 s ago is shown, with why it is old.
    assert kept["peers"][0]["rows"] == [row]
    assert kept["peers"][0]["stale"] == "unreachable: ECONNREFUSED"
    assert kept["peers"][0]["age_seconds"] > first["peers"][0]["age_seconds"]
    # 40 s after the last answer (more than three status intervals): a red line.
    assert gone["peers"] == [{"host": "data", "error": "unreachable: ECONNREFUSED"}]


def test_with_several_hosts_the_alerts_come_from_the_metrics_host_s_document(tmp_path):
    """An admin host that is not the metrics host asks no Alertmanager (ALERTMANAGER_URL
    empty): the metrics host's document holds the environment's alerts, each shown with the
    host its `host` label names."""
    status_file = tmp_path / "status.json"
    status_file.write_text(json.dumps({"host": "app-b", "generated": 1, "interval": 10,
                                       "rows": []}))
    on_c = {**FIRING, "labels": {**FIRING["labels"], "host": "data-c"}}
    document = json.dumps({"host": "edge-a", "generated": 2, "interval": 10, "rows": [],
                           "alerts": {"firing": [on_c, FIRING]}}).encode()
    listener, _ = _peer(document)
    try:
        found = _overview({"STATUS_FILE": str(status_file), "ALERTMANAGER_URL": "",
                           "PROMETHEUS_URL": "http://127.0.0.1:9",
                           "STATUS_PEERS": f"edge-a=127.0.0.1:{listener.getsockname()[1]}"})
    finally:
        listener.close()
    assert "error" not in found["alerts"]
    assert found["alerts"]["firing"] == [{"host": "data-c", **on_c}, {"host": "edge-a", **FIRING}]
