"""The chaos soak's parts that need no host: its schedule, its fault scripts (shellchecked,
names quoted), its load against a real HTTP server on loopback, and its verdict."""

from __future__ import annotations

import http.server
import json
import shutil
import subprocess
import threading
import time
import uuid

import pytest

from benchmarks.chaos import faults, run, schedule
from benchmarks.chaos.load import Edge, Load, Outcome
from benchmarks.chaos.verdict import Injected, judge
from orchestra_infra import config as config_module
from orchestra_infra import secrets
from orchestra_infra.errors import ConfigError
from orchestra_infra.schema import validate

SERVICES = {"api-0": "supervisor", "api-1": "supervisor", "nginx": "systemd",
            "postgresql": "systemd", "redis-server": "systemd", "weaviate": "systemd",
            "mcp-memory": "supervisor"}
STORES = frozenset({"nginx", "postgresql", "redis-server", "weaviate"})


@pytest.fixture(scope="module")
def services():
    config = validate(config_module.environment_data("sandbox"), secrets.NAMES)
    return run.faultable(config, ("edge", "app", "data"))


# --- schedule ---------------------------------------------------------------------------------

def test_the_same_seed_gives_the_same_faults():
    first = schedule.plan(7, 30, 120, schedule.QUICK, SERVICES)
    assert first == schedule.plan(7, 30, 120, schedule.QUICK, SERVICES)
    assert first != schedule.plan(8, 30, 120, schedule.QUICK, SERVICES)


def test_faults_never_overlap_and_leave_the_last_minute_alone():
    faults_ = schedule.plan(3, 30, 60, schedule.CLASSES, SERVICES)
    assert len(faults_) >= 8
    for before, after in zip(faults_, faults_[1:], strict=False):
        assert after.at >= before.busy_until
    assert faults_[0].at >= 30 and faults_[-1].busy_until <= 29 * 60
    assert sum(f.kind == "reboot" for f in faults_) <= 1


def test_each_class_hits_what_it_can():
    faults_ = schedule.plan(5, 600, 30, schedule.QUICK, SERVICES)
    assert {f.target for f in faults_ if f.kind == "stop"} <= {
        "nginx", "postgresql", "redis-server", "weaviate"}
    assert {f.target for f in faults_ if f.kind == "restart"} == {"postgresql"}
    assert {f.target for f in faults_ if f.kind == "kill"} == set(SERVICES)


def test_an_unknown_class_is_named():
    with pytest.raises(ValueError, match="unknown fault class 'nuke'"):
        schedule.plan(1, 10, 60, ("kill", "nuke"), SERVICES)


# --- fault scripts ----------------------------------------------------------------------------

@pytest.mark.skipif(not shutil.which("shellcheck"), reason="shellcheck is not installed")
@pytest.mark.parametrize("kind", schedule.CLASSES + ("cleanup",))
def test_fault_scripts_pass_shellcheck(services, kind):
    names = ("postgresql", "weaviate", "nginx")
    for name in names if kind in ("stop", "restart") else ("api-0",) + names:
        text = faults.script(kind, services[name], 45, 1 << 30)
        result = subprocess.run(["shellcheck", "-s", "sh", "-"], input=text, text=True,
                                capture_output=True)
        assert result.returncode == 0, (kind, name, result.stdout)


def test_each_manager_finds_its_process(services):
    assert "supervisorctl pid orchestra:api-0" in faults.script("kill", services["api-0"], 0, 0)
    weaviate = faults.script("hang", services["weaviate"], 45, 0)
    assert "unit=weaviate\n" in weaviate and "show -p MainPID" in weaviate
    assert weaviate.index("--on-active=45s /bin/kill -CONT") < weaviate.index('kill -STOP')
    # The cluster's unit is found on the host: the control machine does not know the major.
    assert "'postgresql@*-main.service'" in faults.script("restart", services["postgresql"], 0, 0)


def test_the_disk_fill_is_bounded_and_undone_first():
    text = faults.script("disk", None, 60, 4 << 30)
    assert f'-gt {4 << 30} ]' in text
    assert text.index("--on-active=60s /bin/rm -f") < text.index("fallocate")


def test_the_disk_fill_script_obeys_its_bound(tmp_path):
    """Run for real up to the point of writing: with a bound of 1 byte it must skip."""
    text = faults.script("disk", None, 60, 1).replace("set -eu", "set -eu\nPATH=$PATH")
    result = subprocess.run(["sh", "-s"], input=text, text=True, capture_output=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("skipped:")


# --- load -------------------------------------------------------------------------------------

class _Api(http.server.BaseHTTPRequestHandler):
    notes: dict[str, dict] = {}
    fail_health = False

    def _answer(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        assert self.headers["Authorization"].startswith("Basic ")
        if self.path == "/api/health/":
            self._answer(503 if _Api.fail_health else 200, {})
        elif self.path.startswith("/api/notes/"):
            note = self.path.split("/")[3]
            self._answer(200 if note in _Api.notes else 404, _Api.notes.get(note, {}))
        else:
            self._answer(200, {"status": "ok"})

    def do_POST(self):
        length = int(self.headers["Content-Length"])
        body = json.loads(self.rfile.read(length))
        note = str(uuid.uuid4())
        _Api.notes[note] = {"id": note, **body}
        self._answer(201, _Api.notes[note])

    def log_message(self, *args):
        pass


@pytest.fixture
def api():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Api)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_the_load_keeps_its_rate_and_records_every_answer(api):
    load = Load(Edge(api, "orchestra", "pw", mcp_servers=("memory",)), rate=40)
    load.start()
    time.sleep(1.5)
    _Api.fail_health = True
    time.sleep(0.5)
    load.stop()
    _Api.fail_health = False
    kinds = {o.kind for o in load.outcomes}
    assert kinds == {"health", "write", "read", "mcp-memory"}
    issued = [o for o in load.outcomes if o.kind != "read"]
    assert 60 <= len(issued) <= 90  # 2 s at 40/s
    writes = [o for o in load.outcomes if o.kind == "write"]
    assert all(o.note in _Api.notes for o in writes)
    health = [o for o in load.outcomes if o.kind == "health"]
    assert any(o.status == 503 for o in health) and any(o.ok for o in health)
    assert next(o for o in load.outcomes if o.kind == "mcp-memory").needs == {
        "nginx", "mcp-memory"}


@pytest.mark.parametrize("instances, needs", [(1, {"nginx", "mcp-memory"}), (2, {"nginx"})])
def test_an_mcp_request_needs_its_server_only_when_it_has_one_instance(instances, needs):
    load = Load(Edge("http://127.0.0.1:1", mcp_servers=("memory",), mcp_instances=instances),
                rate=1)
    assert dict(load._kinds)["mcp-memory"] == needs


def test_no_answer_is_status_zero():
    load = Load(Edge("http://127.0.0.1:9"), rate=1)
    outcome, body = load.request("health", frozenset(), "GET", "/api/health/")
    assert outcome.status == 0 and not outcome.ok and body is None


# --- verdict ----------------------------------------------------------------------------------

def _outcomes(start, end, kind="health", needs=STORES, failing=()):
    return [Outcome(t / 10, kind, 503 if any(a <= t / 10 < b for a, b in failing) else 200,
                    0.01, needs) for t in range(int(start * 10), int(end * 10))]


def test_a_fault_window_ends_at_the_first_success_of_what_needs_it():
    outcomes = _outcomes(0, 100, failing=[(40, 47.5)])
    outcomes += _outcomes(0, 100, kind="mcp-memory", needs=frozenset({"nginx", "mcp-memory"}))
    killed = Injected(schedule.Fault(40, "kill", "redis-server"), 40.0)
    verdict = judge([killed], outcomes, {"postgresql": [], "weaviate": []})
    assert killed.recovery_seconds == pytest.approx(7.5, abs=0.05)
    # Every failure needed Redis while it was down: the promise holds.
    assert verdict.unaffected_availability == 1.0
    assert verdict.availability < 1.0 and verdict.passed
    assert verdict.per_class["kill"]["unaffected_availability_during"] == 1.0


def test_failures_that_did_not_need_the_broken_service_miss_the_target():
    outcomes = _outcomes(0, 100, kind="mcp-memory", needs=frozenset({"nginx", "mcp-memory"}),
                         failing=[(40, 45)])
    outcomes += _outcomes(0, 100)
    killed = Injected(schedule.Fault(40, "kill", "redis-server"), 40.0)
    verdict = judge([killed], outcomes, {"postgresql": [], "weaviate": []})
    assert not verdict.passed
    assert any("availability of unaffected requests" in p for p in verdict.problems)


def test_lost_writes_and_unrecovered_faults_fail_the_soak():
    outcomes = _outcomes(0, 60, failing=[(30, 60)])
    stuck = Injected(schedule.Fault(30, "stop", "weaviate"), 30.0)
    verdict = judge([stuck], outcomes, {"postgresql": ["a"], "weaviate": []})
    assert stuck.recovered is None
    assert any("never recovered" in p for p in verdict.problems)
    assert "1 acknowledged writes lost in postgresql" in verdict.problems
    assert json.loads(run.as_json(verdict))["lost_acknowledged_writes"] == {
        "postgresql": 1, "weaviate": 0}
    assert "verdict: FAIL" in run.report(verdict)


def test_a_skipped_fault_has_no_window():
    outcomes = _outcomes(0, 60)
    skipped = Injected(schedule.Fault(10, "disk", "host"), 10.0, said="skipped: too big")
    verdict = judge([skipped], outcomes, {"postgresql": [], "weaviate": []})
    assert verdict.passed and verdict.unaffected == len(outcomes)


def test_the_plot_is_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    from benchmarks.chaos import plot

    outcomes = _outcomes(0, 120, failing=[(40, 50)])
    path = tmp_path / "soak.png"
    plot.draw(path, outcomes, [Injected(schedule.Fault(40, "kill", "redis-server"), 40.0)])
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.skipif(not shutil.which("shellcheck"), reason="shellcheck is not installed")
def test_the_read_back_script_passes_shellcheck():
    from operations import render

    for parts in ({"database": "orchestra", "ids": [str(uuid.uuid4())] * 2},
                  {"database": "orchestra", "ids": None}, {"database": None, "ids": []}):
        text = render.script("chaos/scripts/verify.sh.j2", api="http://127.0.0.1:8000", **parts)
        assert ("@@postgresql" in text) == bool(parts["database"])
        assert ("@@notes" in text) == (parts["ids"] is not None)
        result = subprocess.run(["shellcheck", "-s", "sh", "-"], input=text, text=True,
                                capture_output=True)
        assert result.returncode == 0, result.stdout


def hosts(*layout: str) -> list:
    from orchestra_infra.status_hosts import Target

    return [Target(f"10.0.0.{n}", tuple(groups.split(","))) for n, groups in enumerate(layout)]


@pytest.mark.parametrize("layout, victim, data, app", [
    (["edge,app,data"], 0, 0, 0),
    # A, B, C: losing B (app only) is the drill; the data host reads PostgreSQL back.
    (["edge,app", "app", "data"], 1, 2, 1),
    (["edge,app", "data"], 0, 1, 0),
    (["data", "edge,app,data"], 1, 1, 1),
])
def test_the_victim_and_the_read_back_hosts_fit_the_layout(layout, victim, data, app):
    targets = hosts(*layout)
    chosen = run._victim(targets, None)
    assert chosen is targets[victim]
    assert run._reader(targets, "data", chosen) is targets[data]
    assert run._reader(targets, "app", chosen) is targets[app]


def test_a_named_victim_must_be_a_host_of_the_environment():
    targets = hosts("edge,app", "app", "data")
    assert run._victim(targets, "10.0.0.2") is targets[2]
    with pytest.raises(ConfigError, match="--host: '10.9.9.9'"):
        run._victim(targets, "10.9.9.9")


def test_alerts_are_attributed_to_the_fault_of_their_service(services):
    hang = Injected(schedule.Fault(10, "hang", "mcp-task"), 10.0)
    kill = Injected(schedule.Fault(100, "kill", "redis-server"), 100.0)
    received = "\n".join([
        f'{1000 + 40:.3f} {{"text": "[h] mcp-task: Connection failed: no answer"}}',
        f'{1000 + 70:.3f} {{"text": "[h] mcp-task: Connection succeeded: ok (date)"}}',
        f'{1000 + 75:.3f} {{"text": "[h] api-0: Connection failed: unrelated"}}',
        f'{1000 + 101:.3f} {{"text": "[h] redis: Does not exist: gone -> Monit starts it"}}',
        "garbage line",
    ])
    run.attribute_alerts([hang, kill], run.parse_alerts(received, 1000.0), services)
    assert (len(hang.alerts), len(hang.recoveries)) == (1, 1)
    assert (len(kill.alerts), len(kill.recoveries)) == (1, 0)
    verdict = judge([hang, kill], _outcomes(0, 200), {"postgresql": [], "weaviate": []},
                    alerts_counted=True)
    assert verdict.passed, verdict.problems
    hang.recoveries.clear()
    verdict = judge([hang, kill], _outcomes(0, 200), {"postgresql": [], "weaviate": []},
                    alerts_counted=True)
    assert "hang mcp-task at 10 s: 1 alerts and 0 recovery messages (1 and 1 expected)" in \
        verdict.problems[0]


@pytest.mark.skipif(not shutil.which("shellcheck"), reason="shellcheck is not installed")
@pytest.mark.parametrize("action", ["start", "resume", "read"])
def test_the_alert_receiver_script_passes_shellcheck(action):
    result = subprocess.run(["shellcheck", "-s", "sh", "-"],
                            input=faults.alerts_script(action, 9999, 3600), text=True,
                            capture_output=True)
    assert result.returncode == 0, result.stdout


def test_a_resumed_receiver_keeps_what_it_had_and_a_new_one_starts_empty():
    start, resume = (faults.alerts_script(action, 9999, 60) for action in ("start", "resume"))
    assert ': > "$log"' in start and ': > "$log"' not in resume
    # On disk, so a reboot keeps it; started again only when it is not running.
    for text in (start, resume):
        assert "log=\"$dir/alerts.log\"" in text and "dir=/var/tmp/orchestra-chaos" in text
        assert "if ! systemctl is-active --quiet orchestra-chaos-alerts" in text


def test_a_reboot_that_bites_late_is_counted_from_its_first_failure():
    """The reboot is asked for (the command returns at once), the host goes down 2 s later:
    its window must hold the whole outage, not close on a success before it."""
    outcomes = _outcomes(0, 200, failing=[(102, 160)])
    reboot = Injected(schedule.Fault(100, "reboot", "host"), 100.0, in_place=100.2)
    verdict = judge([reboot], outcomes, {"postgresql": [], "weaviate": []})
    assert reboot.recovery_seconds == pytest.approx(60, abs=0.1)
    assert verdict.unaffected_availability == 1.0 and verdict.passed
