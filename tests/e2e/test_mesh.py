"""Three hosts over a WireGuard mesh (issue 12): A edge,app; B app; C data.

Converged twice (the second run changes nothing on any host); requests through A's edge are
served by both app hosts; the private services answer over the mesh and nowhere else (this
machine is the neighbour that is not in the environment); B's API instances killed, then B
stopped, under a constant load through the edge.

Its own three hosts (ORCHESTRA_E2E_PREFIX-a/-b/-c), apart from the session's target and peer:
run it alone (`pytest tests/e2e/test_mesh.py`) to stay within three hosts.
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from email.message import Message

import pytest

from operations import admin_status
from orchestra_infra import mesh, sandbox

from .conftest import PREFIX, REPO, PyinfraRun, failure, on, require_sandbox
from .test_admin_dashboard import AdminPage

pytestmark = pytest.mark.e2e

A, B, C = f"{PREFIX}-a", f"{PREFIX}-b", f"{PREFIX}-c"
LAYOUT = f"{A} edge,app;{B} app;{C} data"
NETWORK = "10.210.0.0/16"  # group_data/all.py's mesh_network
# The stores and the status share (9198, every host: operations/admin_status.py).
DATA_PORTS = (5432, 6379, 8080, 50051, 9198)
APP_PORTS = (8000, 8001, 8003, 8006, 8007, 8008, 8009, 8013, 8016, 8017, 8018, 8019, 3000, 9198)
FIGURES = REPO / "build" / "e2e-figures"


def deploy(*args: str, names=(A, B, C), layout: str = LAYOUT) -> PyinfraRun:
    argv = [sys.executable, "-m", "pyinfra", "-y", "--json", "inventories/sandbox.py",
            "deploy.py", *args]
    env = {**os.environ, "ORCHESTRA_SANDBOX_HOSTS": ",".join(names),
           "ORCHESTRA_SANDBOX_LAYOUT": layout}
    result = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=3600,
                            stdin=subprocess.DEVNULL, env=env)
    run = PyinfraRun(result.returncode, result.stdout, result.stderr)
    assert run.returncode == 0, failure(run)
    assert run.totals["error"] == 0
    return run


@pytest.fixture(scope="module")
def hosts():
    require_sandbox()
    booted = {h.name: h for h in sandbox.up(names=[A, B, C])}
    yield booted
    if not os.environ.get("ORCHESTRA_KEEP_SANDBOX"):
        sandbox.down([A, B, C])


@pytest.fixture(scope="module")
def converged(hosts):
    started = time.monotonic()
    first = deploy()
    first_seconds = time.monotonic() - started
    started = time.monotonic()
    second = deploy()
    _figure("mesh-converge", {"first_run_seconds": round(first_seconds, 1),
                              "second_run_seconds": round(time.monotonic() - started, 1)})
    return first, second


def _figure(name: str, values: dict) -> None:
    FIGURES.mkdir(parents=True, exist_ok=True)
    (FIGURES / f"{name}.json").write_text(json.dumps(values, indent=2) + "\n")
    print(f"{name}: {values}")


def private(hosts, name: str) -> str:
    return mesh.address(NETWORK, hosts[name].address)


def _get(url: str, timeout: float = 5) -> tuple[int, Message, bytes]:
    """Status, headers (names in any case: nginx passes uvicorn's lower-case ones) and body."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the sandbox's certificate is self-signed
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def _connects(address: str, port: int, timeout: float = 1.5) -> bool:
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False


def _connects_from(host: str, address: str, port: int) -> bool:
    result = sandbox.run(host, f"timeout 3 bash -c '</dev/tcp/{address}/{port}'", sudo=True,
                         timeout=30)
    return result.returncode == 0


def test_a_second_run_changes_nothing_on_any_host(converged):
    _, second = converged
    assert second.totals["success"] == 0, second.changed


def test_the_mesh_joins_every_host(hosts, converged):
    # Traffic between every pair (the minimal image has no ping): A-B, A-C, B-C.
    for source, target, port in ((A, B, 8000), (A, C, 5432), (B, C, 5432)):
        assert _connects_from(source, private(hosts, target), port), (source, target, port)
    for name in (A, B, C):
        handshakes = on(hosts[name], "wg show wg0 latest-handshakes").split()
        assert len(handshakes) == 4 and all(int(t) > 0 for t in handshakes[1::2]), handshakes
        # The private key stays on its host, readable by root only.
        assert on(hosts[name], "stat -c '%a %U' /etc/wireguard/wg0.conf").split() == ["600",
                                                                                      "root"]


def test_requests_through_the_edge_are_served_by_both_app_hosts(hosts, converged):
    served = {}
    for _ in range(30):
        status, headers, body = _get(f"https://{hosts[A].address}/api/health/")
        assert status == 200, body
        served[headers["X-Orchestra-Host"]] = json.loads(body)
    assert len(served) == 2, served
    # The API on either host sees the data host's stores up.
    for health in served.values():
        assert health["status"] == "ok", health


def test_mcp_sessions_stay_on_their_instance_across_both_app_hosts(hosts, converged):
    """Handshake sessions through A's edge, made by instances on both app hosts (each id's
    route names its maker: the Supervisor programs of A and B), each kept on its maker."""
    pytest.importorskip("mcp", reason="the MCP SDK (pyproject.toml's dev extras) is absent")
    import httpx2

    from orchestra_infra import secrets

    from .test_mcp import _routes, _sessions

    routes = {route: f"{name}:{program}" for name in (A, B)
              for route, program in _routes(hosts[name]).items()}
    assert len(routes) == 20  # 5 servers, 2 instances, 2 app hosts
    auth = httpx2.BasicAuth("orchestra", secrets.load("sandbox")["edge_password"])
    ids, errors = _sessions(hosts[A], auth, 8, calls=2)
    made_by = sorted({routes[session.split("-", 1)[0]] for session in ids})
    _figure("mesh-mcp", {"sessions": len(ids), "failed": errors, "made_by": made_by})
    assert errors == []
    assert {maker.split(":")[0] for maker in made_by} == {A, B}, made_by


def test_private_services_answer_over_the_mesh_only(hosts, converged):
    # Every probe at once: a dropped connection costs its whole timeout.
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=16) as pool:
        # This machine, which is not in the environment, reaches no private port of any host.
        for name, ports in ((A, APP_PORTS), (B, APP_PORTS), (C, DATA_PORTS)):
            reached = pool.map(lambda p, n=name: _connects(hosts[n].address, p), ports)
            open_ports = [p for p, ok in zip(ports, reached, strict=True) if ok]
            assert open_ports == [], f"{name} exposes {open_ports} to a neighbour"
        # A peer reaches them on the private address, and not on the public one.
        pairs = ((B, C, 5432), (A, C, 6379), (B, C, 8080), (A, B, 8000), (A, B, 8003),
                 (A, B, 3000), (A, C, 9198), (C, B, 9198))
        private_ok = pool.map(lambda t: _connects_from(t[0], private(hosts, t[1]), t[2]), pairs)
        public_ok = pool.map(lambda t: _connects_from(t[0], hosts[t[1]].address, t[2]), pairs)
        for pair, over_mesh, over_public in zip(pairs, private_ok, public_ok, strict=True):
            assert over_mesh and not over_public, (pair, over_mesh, over_public)
    # WireGuard's port: open to the environment's peers, by address, and to nobody else.
    rules = on(hosts[C], "nft list table inet orchestra")
    peers = sorted(hosts[n].address for n in (A, B))
    assert f"udp dport 51820 ip saddr {{ {', '.join(peers)} }} accept" in rules


def _query(hosts, expr: str, via: str = A) -> list[dict]:
    """The environment's Prometheus answering an instant query, asked on ``via``: on A (the
    metrics host) at its loopback, elsewhere at A's private address (the socket proxy)."""
    where = "127.0.0.1" if via == A else private(hosts, A)
    query = shlex.quote(f"query={expr}")
    out = on(hosts[via], f"curl -sf --max-time 10 -G http://{where}:9090/api/v1/query "
                         f"--data-urlencode {query}")
    return json.loads(out)["data"]["result"]


def _until(what: str, check, timeout: float):
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found or time.monotonic() > deadline:
            assert found, f"{what}: not within {timeout:.0f} s"
            return found
        time.sleep(3)


def test_one_prometheus_scrapes_every_host_over_the_mesh(hosts, converged):
    """The environment's Prometheus and Alertmanager on A (the first edge host) alone: every
    host's exporters scraped over the mesh, each target labelled with its host; B's node
    exporter stopped is a ServiceDown alert naming B there; B's admin draws every host."""
    for name in (B, C):
        installed = sandbox.run(name, "dpkg-query -W -f '${Status}' prometheus "
                                      "prometheus-alertmanager", sudo=True, timeout=60)
        assert "install ok installed" not in installed.stdout, name
    everyone = {hosts[n].address for n in (A, B, C)}

    def all_up():
        # (Series without a host: the package's own config, before the deploy's.)
        found = {(r["metric"]["job"], r["metric"]["host"]): r["value"][1]
                 for r in _query(hosts, 'up{host!=""}')}
        return found if found and set(found.values()) == {"1"} and \
            {h for job, h in found if job == "node"} == everyone else None

    up = _until("every target up", all_up, 90)
    assert {h for job, h in up if job == "blackbox"} == everyone
    assert {(job, h) for job, h in up if job in ("postgres", "redis", "nginx", "mtail",
                                                  "prometheus", "alertmanager")} == {
        ("postgres", hosts[C].address), ("redis", hosts[C].address),
        ("nginx", hosts[A].address), ("mtail", hosts[A].address),
        ("prometheus", hosts[A].address), ("alertmanager", hosts[A].address)}
    # Every host's health endpoints, probed by its own blackbox exporter, pass.
    probes = _query(hosts, "probe_success")
    assert {r["metric"]["host"] for r in probes} == everyone
    assert {r["value"][1] for r in probes} == {"1"}, [r["metric"] for r in probes
                                                     if r["value"][1] != "1"]
    # The exporters answer the metrics host alone: not C, not the public address.
    assert _connects_from(A, private(hosts, B), 9100)
    assert not _connects_from(C, private(hosts, B), 9100)
    assert not _connects_from(A, hosts[B].address, 9100)

    on(hosts[B], "systemctl stop prometheus-node-exporter")
    try:
        alert = _until("ServiceDown for B's node exporter", lambda: _query(
            hosts, f'ALERTS{{alertname="ServiceDown", service="node", '
                   f'host="{hosts[B].address}"}}'), 90)
        print(f"ServiceDown for B's node exporter: {alert[0]['metric']}")
    finally:
        on(hosts[B], "systemctl start prometheus-node-exporter")

    # B's admin draws the environment's graphs, one line per host, read through A's proxy.
    # (For its first hour a new metrics host also draws the package's own "localhost:9100",
    # scraped for the minute before the deploy's config replaced the package's.)
    seen: list[set] = []

    def cpu_lines():
        overview = json.loads(on(hosts[B], "curl -sf --max-time 20 "
                                           "http://127.0.0.1:3000/_admin/overview"))
        cpu = next(g for g in overview["graphs"] if g["id"] == "cpu")
        seen.append({s["label"] for s in cpu["series"] if s["points"]})
        return seen[-1] - {"localhost:9100"} == everyone

    try:
        _until("B's admin draws a CPU line per host", cpu_lines, 120)
    except AssertionError:
        raise AssertionError(f"CPU lines on B's admin: {seen[-3:]}, not {everyone}") from None
    assert _query(hosts, 'up{host!=""}', via=C)  # every peer may read it, through the proxy


def test_the_admin_page_shows_every_host_and_turns_a_remote_row_red(hosts, converged,
                                                                    browser_ready):
    """The dashboard on the edge (issue 15) in Chromium: every host's rows, which the admin
    reads over the mesh from each host's status socket; a service stopped on the data host
    turns its row red there within a status interval and a page refresh."""
    # Each host's first document comes a few seconds after the deploy starts its timer.
    for name in (A, B, C):
        on(hosts[name], f"for _ in $(seq {3 * admin_status.INTERVAL}); do "
                        f"test -s {admin_status.OUTPUT} && exit 0; sleep 1; done; exit 1")
    # What a peer reads from the data host's socket: its document, nothing asked.
    document = json.loads(on(hosts[A], "timeout 5 bash -c "
                                       f"'cat < /dev/tcp/{private(hosts, C)}/9198'"))
    assert document["host"] == hosts[C].address and document["rows"]
    assert "firing" in document["alerts"]
    stopped = "prometheus-redis-exporter"  # on the data host; nothing depends on it
    with AdminPage(hosts[A].address, "admin-dashboard-mesh") as browser:
        page = browser.page
        shown: dict[str, dict[str, str]] = {}
        for row in page["rows"]:
            shown.setdefault(row["host"], {})[row["service"]] = row["health"]
        a, b, c = (shown.get(hosts[n].address, {}) for n in (A, B, C))
        assert set(shown) == {hosts[n].address for n in (A, B, C)}, page["summary"]
        assert "nginx" in a and "api-0" in a and "api-0" in b and "nginx" not in b
        assert "redis-server" in c and "api-0" not in c
        assert any(name.startswith("postgresql@") for name in c)
        for service in ("redis-server", "weaviate", stopped):
            assert c[service] in ("ok", "warn"), (service, c)
        on(hosts[C], f"monit unmonitor {stopped} || true; systemctl stop {stopped}")
        try:
            after = browser.turns_red(stopped, host=hosts[C].address)
            _figure("admin-dashboard-mesh", {"hosts": len(shown), "rows": len(page["rows"]),
                                             "red_after_seconds": after["red_after_seconds"]})
            assert f"{hosts[C].address}: {stopped}" in after["summary"]
        finally:
            on(hosts[C], f"systemctl start {stopped}; monit monitor {stopped} || true")


class Load:
    """Constant load through the edge: one request every interval, counted."""

    def __init__(self, url: str, interval: float = 0.1):
        self.url, self.interval = url, interval
        self.ok = self.failed = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        deadline = time.monotonic() + 600  # bounded whatever happens
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                status, _, _ = _get(self.url, timeout=10)
            except OSError as e:
                status = str(e)
            if status == 200:
                self.ok += 1
            else:
                self.failed += 1
                self.failures.append(str(status))
            time.sleep(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=30)


def test_a_release_rolls_across_the_app_hosts_under_load(hosts, converged, tmp_path):
    from .test_apps import _app_copy

    url = f"https://{hosts[A].address}/api/health/"
    before = json.loads(_get(url)[2])["release"]
    source = ("--data", f"app_source={_app_copy(tmp_path, 'new-version')}")
    # (The tests that follow deploy the repository's app again: no deploy back here.)
    with Load(url) as load:
        time.sleep(2)
        started = time.monotonic()
        deploy(*source)
        seconds = time.monotonic() - started
        time.sleep(2)
    releases = {name: on(hosts[name], "readlink /opt/orchestra/current") for name in (A, B)}
    _figure("mesh-release-under-load", {"requests": load.ok + load.failed,
                                        "failed": load.failed, "deploy_seconds": round(seconds, 1),
                                        "failures": load.failures[:10]})
    assert load.failed == 0, load.failures[:10]
    assert load.ok > 50 and before
    assert len(set(releases.values())) == 1, releases
    served = {json.loads(_get(url)[2])["release"] for _ in range(10)}
    assert before not in served and len(served) == 1, (before, served)


def test_losing_an_app_host_under_load_fails_no_request(hosts, converged):
    url = f"https://{hosts[A].address}/api/health/"
    with Load(url) as load:
        time.sleep(3)
        # Every API instance on B killed: Supervisor starts them again.
        on(hosts[B], "pkill -9 -f -- '-m ap[i] --host'")
        time.sleep(8)
        killed = (load.ok, load.failed)
        # Then B's whole machine stopped.
        sandbox.stop(B)
        time.sleep(15)
    stopped = (load.ok - killed[0], load.failed - killed[1])
    _figure("mesh-lose-app-host", {"requests": load.ok + load.failed, "failed": load.failed,
                                   "after_kill": {"ok": killed[0], "failed": killed[1]},
                                   "after_stop": {"ok": stopped[0], "failed": stopped[1]},
                                   "failures": load.failures[:10]})
    assert killed[0] > 50
    assert killed[1] == 0, load.failures[:10]
    # A request sent to B once B is gone waits a read timeout (5 s for a GET) on a kept-alive
    # connection, and nginx's next try is A's instance: B's instances alternate with A's in
    # the upstream, and each is excluded after its first failure (operations/nginx.py).
    assert stopped[1] == 0, load.failures[:10]
    assert stopped[0] > 10, stopped


def _upstream_hosts(hosts) -> set[str]:
    conf = on(hosts[A], "cat /etc/nginx/conf.d/orchestra.conf")
    return {n for n in (A, B, C) if n != A and f"{private(hosts, n)}:8000" in conf}


def _peers(hosts, name) -> int:
    return len(on(hosts[name], "wg show wg0 peers").split())


def test_removing_and_adding_an_app_host_as_the_runbook_says(hosts, converged):
    """B is gone (stopped by the test before): its line removed, one deploy takes it out of
    the edge, the mesh and pg_hba; back, drained (mesh only), then serving again."""
    without_b = f"{A} edge,app;{C} data"
    deploy(names=(A, C), layout=without_b)
    assert deploy(names=(A, C), layout=without_b).totals["success"] == 0
    assert _upstream_hosts(hosts) == set() and _peers(hosts, A) == 1 and _peers(hosts, C) == 1
    assert private(hosts, B) not in on(hosts[C], "cat /etc/postgresql/14/main/pg_hba.conf")

    sandbox.up(names=[B])  # the same disk and address: an instance added back
    drained = f"{A} edge,app;{B} app drain;{C} data"
    deploy(layout=drained)
    assert _upstream_hosts(hosts) == set() and _peers(hosts, A) == 2
    assert private(hosts, B) in on(hosts[C], "cat /etc/postgresql/14/main/pg_hba.conf")

    deploy()
    assert deploy().totals["success"] == 0
    assert _upstream_hosts(hosts) == {B}
    served = {_get(f"https://{hosts[A].address}/api/health/")[1]["X-Orchestra-Host"]
              for _ in range(20)}
    assert served == {A, B}
