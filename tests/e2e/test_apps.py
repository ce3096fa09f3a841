"""The reference application through nginx: health, features, self-healing, releases."""

from __future__ import annotations

import base64
import json
import os
import shutil
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pytest

from operations.ports import record_path
from orchestra_infra import secrets
from orchestra_infra.config import environment_data

from .conftest import REPO, converge, on, pyinfra

pytestmark = pytest.mark.e2e

MCP_SERVERS = ("memory", "task", "agent", "data", "monitor")
_TLS = ssl.create_default_context()
_TLS.check_hostname = False
_TLS.verify_mode = ssl.CERT_NONE  # the sandbox's certificate is self-signed
# Where the sandbox hosts record moved ports (below their state_root).
RECORD = record_path(SimpleNamespace(**environment_data("sandbox")))


def _edge_authorization() -> str:
    """The admin and the MCP servers need the edge's basic auth (tests/e2e/test_edge.py)."""
    password = secrets.load("sandbox")["edge_password"]
    return "Basic " + base64.b64encode(f"orchestra:{password}".encode()).decode()


def _request(target, path: str, method="GET", body=None, timeout=10) -> tuple:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"https://{target.address}{path}", data=data,
                                     method=method,
                                     headers={"Content-Type": "application/json",
                                              "Authorization": _edge_authorization()})
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=_TLS) as response:
            text = response.read().decode()
            return response.status, response.headers, _json(text)
    except urllib.error.HTTPError as e:
        return e.code, e.headers, _json(e.read().decode())


def _json(text: str):
    try:
        return json.loads(text)
    except ValueError:
        return {"text": text}


def test_api_health_is_all_green_through_nginx(target, provisioned):
    status, headers, body = _request(target, "/api/health/")
    assert status == 200, body
    assert {name: check["status"] for name, check in body["checks"].items()} == \
        {"postgres": "up", "redis": "up", "weaviate": "up"}
    assert headers["X-Orchestra-Release"] == body["release"]


@pytest.mark.parametrize("name", MCP_SERVERS)
def test_each_mcp_server_answers_through_nginx(target, provisioned, name):
    status, _, body = _request(target, f"/mcp/{name}/health")
    assert (status, body) == (200, {"status": "ok", "server": name})


def test_admin_page_loads(target, provisioned):
    status, headers, body = _request(target, "/")
    assert status == 200 and '<div id="root">' in body["text"]
    script = body["text"].split('src="')[1].split('"')[0]
    assert _request(target, script)[0] == 200


def test_a_note_reaches_all_three_stores(target, provisioned):
    status, _, note = _request(target, "/api/notes", "POST",
                               {"title": "e2e", "body": "kept in three stores"})
    assert status == 201, note
    assert _request(target, f"/api/notes/{note['id']}")[2]["body"] == "kept in three stores"
    status, _, vector = _request(target, f"/api/notes/{note['id']}/vector-object")
    assert status == 200 and vector["properties"]["note_id"] == note["id"]


# Every app program, the port it answers on, and the path that checks it there.
PROGRAMS = {
    "orchestra:api-0": (8000, "/api/health/"),
    "orchestra:api-1": (8001, "/api/health/"),
    **{f"orchestra:mcp-{name}": (port, "/health") for name, port in
       zip(MCP_SERVERS, (8003, 8006, 8007, 8008, 8009), strict=True)},
    # A second instance (mcp_instances: 2) is a program like the first; one stands for all.
    "orchestra:mcp-memory-1": (8013, "/health"),
    "admin": (3000, "/"),
}
PM2 = "runuser -u orchestra -- env HOME=/var/lib/orchestra PM2_HOME=/var/lib/orchestra/pm2 pm2"


@pytest.mark.parametrize("process", PROGRAMS)
def test_killed_app_process_is_healthy_within_10_s(target, provisioned, process):
    if process == "admin":
        pid = on(target, f"{PM2} pid orchestra-admin").strip()
    else:
        pid = on(target, f"supervisorctl pid {process}").strip()
    on(target, f"kill -9 {pid}")
    # Hit the killed instance directly, not through nginx (which would route around it).
    port, path = PROGRAMS[process]
    started = time.monotonic()
    on(target, f"for i in $(seq 100); do curl -fsS -o /dev/null http://127.0.0.1:{port}{path}"
               " && exit 0; sleep 0.1; done; exit 1", sudo=False)
    recovery = time.monotonic() - started
    print(f"{process}: healthy {recovery:.1f} s after kill -9")
    assert recovery < 10


def _app_copy(tmp_path: Path, change: str) -> Path:
    copy = tmp_path / "app"
    shutil.copytree(REPO / "app", copy,
                    ignore=shutil.ignore_patterns("node_modules", "dist", "__pycache__"))
    if change == "new-version":
        (copy / "api" / "RELEASE_NOTE").write_text(f"e2e release {time.time()}\n")
    elif change == "broken-health":
        health = copy / "api" / "health.py"
        health.write_text(health.read_text() + "\nraise RuntimeError('broken release')\n")
    return copy


def _serve_over_ssh(peer, source: Path) -> tuple[str, list[str]]:
    """Publish ``source`` as a git repository on the peer host, readable over SSH with the
    sandbox key (the deploy key here); return its URL and the peer's host key line."""
    on(peer, "command -v git >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND="
             "noninteractive apt-get install -y -qq --no-install-recommends git >/dev/null)")
    on(peer, "rm -rf orchestra.git && git init -q --bare orchestra.git", sudo=False)
    url = f"ssh://ubuntu@{peer.address}/home/ubuntu/orchestra.git"
    ssh = (f"ssh -i {peer.ssh_key} -o IdentitiesOnly=yes -o StrictHostKeyChecking=no "
           "-o UserKnownHostsFile=/dev/null -o LogLevel=ERROR")
    env = {**os.environ, "GIT_SSH_COMMAND": ssh, "GIT_AUTHOR_NAME": "e2e",
           "GIT_AUTHOR_EMAIL": "e2e@example.invalid", "GIT_COMMITTER_NAME": "e2e",
           "GIT_COMMITTER_EMAIL": "e2e@example.invalid"}
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "release"],
                 ["push", "-q", url, "HEAD:refs/heads/release"]):
        subprocess.run(["git", *args], cwd=source, env=env, check=True, capture_output=True)
    keyscan = subprocess.run(["ssh-keyscan", "-t", "ed25519", peer.address],
                             capture_output=True, text=True, check=True, timeout=30)
    return url, [line for line in keyscan.stdout.splitlines() if not line.startswith("#")]


class _Load:
    """A bounded, constant load on the API through nginx (below its rate limit)."""

    def __init__(self, target, rate: float = 8.0, limit_seconds: float = 600):
        self.target, self.rate, self.limit = target, rate, limit_seconds
        self.results: list[tuple[int, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        started = time.monotonic()
        while not self._stop.is_set() and time.monotonic() - started < self.limit:
            try:
                status, headers, _ = _request(self.target, "/api/health/", timeout=10)
                self.results.append((status, headers.get("X-Orchestra-Release", "")))
            except OSError as e:
                self.results.append((0, str(e)))
            self._stop.wait(1 / self.rate)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=30)


def test_release_under_load_drops_no_request(target, peer, provisioned, tmp_path):
    """A new version, fetched from git over SSH with a deploy key, under load."""
    before = _request(target, "/api/health/")[2]["release"]
    url, host_keys = _serve_over_ssh(peer, _app_copy(tmp_path, "new-version"))
    source = ("--data", f"app_source={url}", "--data", "app_source_ref=release",
              "--data", f"app_source_known_hosts={json.dumps(host_keys)}")
    deploy_key = {"ORCHESTRA_SECRET_APP_DEPLOY_KEY": Path(peer.ssh_key).read_text()}
    try:
        with _Load(target) as load:
            time.sleep(2)
            run = converge(target, *source, env=deploy_key)
            time.sleep(3)
    except BaseException:
        converge(target)  # leave the repository's app live for the tests that follow
        raise
    failed = [r for r in load.results if r[0] != 200]
    releases = [r[1] for r in load.results]
    print(f"release under load: {len(load.results)} requests, {len(failed)} failed")
    if failed:
        converge(target)
    assert failed == []
    assert releases[0] == before and releases[-1] != before
    assert "App | Make release" in " ".join(run.changed)
    # orchestra-infra rollback: the previous release is live again.
    rollback = subprocess.run(
        [sys.executable, "-m", "pyinfra", "-y", "inventories/sandbox.py", "rollback.py"],
        cwd=REPO, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL,
        env={**os.environ, "ORCHESTRA_SANDBOX_HOSTS": target.name})
    assert rollback.returncode == 0, rollback.stderr[-3000:]
    assert _request(target, "/api/health/")[2]["release"] == before
    converge(target)  # the repository's app, which is the rolled-back-to release
    assert _request(target, "/api/health/")[2]["release"] == before


def test_failing_release_keeps_the_previous_one_serving(target, provisioned, tmp_path):
    live = on(target, "readlink /opt/orchestra/current").strip()
    source = _app_copy(tmp_path, "broken-health")
    run = pyinfra(target, "-y", "--data", f"app_source={source}")
    output = run.stdout + run.stderr
    assert run.returncode != 0
    assert "failed its health check at http://127.0.0.1:8090/api/health/" in output
    assert "broken release" in output  # the failing service's last log lines
    assert on(target, "readlink /opt/orchestra/current").strip() == live
    assert _request(target, "/api/health/")[0] == 200
    # The failed attempt left nothing on the preflight port, so the fixed run converges.
    assert on(target, "ss -Hltn 'sport = :8090'").strip() == ""
    assert on(target, "systemctl is-active orchestra-preflight || true").strip() != "active"
    assert converge(target).changed == []


def test_a_foreign_process_on_a_stack_port_stops_the_deploy_or_moves_it(target, provisioned):
    # Maintenance as the runbook has it: Monit leaves mcp-task alone while its port is taken
    # (else it would start it on the held port until it gave up, at a moment of its own,
    # racing the zero-change runs below). The drills test that escalation.
    paused = ("--data", 'monit_paused=["mcp-task"]')
    reassign = (*paused, "--data", "ports_auto_reassign=true")
    assert "Monit | Pause the checks of monit_paused: mcp-task" in \
        converge(target, *paused).changed
    on(target, "supervisorctl stop orchestra:mcp-task")
    on(target, "systemd-run --unit=squatter python3 -m http.server 8006 --bind 127.0.0.1 "
               "--directory /var/empty")
    try:
        on(target, "for i in $(seq 50); do ss -Htln | grep -q ':8006 ' && exit 0; sleep 0.1;"
                   " done; exit 1")
        run = pyinfra(target, "-y", *paused)
        output = run.stdout + run.stderr
        assert run.returncode != 0
        assert "port 8006 (mcp_servers.task) is held by python3" in output
        assert "user root), which this stack does not manage" in output
        assert "Starting operation" not in output
        # Allowed to move: the MCP server goes to the first free port of the range, nginx,
        # Monit and the other programs follow, and the move is kept.
        moved = converge(target, *reassign)
        assert f"Record moved ports in {RECORD}" in " ".join(moved.changed)
        assert json.loads(on(target, f"cat {RECORD}")) == {"mcp_servers.task": 8100}
        assert _request(target, "/mcp/task/health")[2] == {"status": "ok", "server": "task"}
        pid = on(target, "supervisorctl pid orchestra:mcp-task").strip()
        assert f"pid={pid}," in on(target, "ss -Htlnp 'sport = :8100'")
        assert r'--name task --host 127\.0\.0\.1 --port 8100$"' in \
            on(target, "cat /etc/monit/orchestra/checks.conf")
        assert converge(target, *reassign).changed == []
        on(target, "systemctl stop squatter")
        # The cause is gone: Monit watches mcp-task again, and the move is kept.
        reassign = reassign[2:]
        assert converge(target, *reassign).changed == \
            ["Monit | Watch again what Monit stopped watching: mcp-task"]
        assert converge(target, *reassign).changed == []
        # Back to the data's port: drop the record. The next run moves the program back, and
        # then nothing is left to do. Monit holds its checks meanwhile, else its old ones
        # would find no mcp-task on 8100 and start it (an alert, a start counted).
        on(target, f"rm {RECORD}")
        log = int(on(target, "wc -l < /var/log/monit.log"))
        back = " ".join(converge(target).changed)
        assert "Monit | Hold the checks while the services change: " in back
        assert "Monit | Watch the checks held while the services changed: " in back
        assert "'mcp-task' start" not in on(target, f"tail -n +{log + 1} /var/log/monit.log")
        assert converge(target).changed == []
    finally:  # whatever failed, the later tests find the port table's ports
        on(target, f"systemctl stop squatter 2>/dev/null; rm -f {RECORD}")
        pyinfra(target, "-y")
    assert _request(target, "/mcp/task/health")[0] == 200
    on(target, "curl -fsS -o /dev/null http://127.0.0.1:8006/health", sudo=False)
