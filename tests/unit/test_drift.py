"""drift: the preview's plan and diffs read per host, secrets masked, exit codes, alerts
once per new drift; history: what the hosts recorded, as a table."""

from __future__ import annotations

import json
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from orchestra_infra import drift, history, runlock

SECRET = "s3cr3t-VALUE-abcdef"
PLAN = {"plan": [
    {"name": "Nginx | Render nginx site orchestra.conf", "hosts_with_change": ["10.0.0.5"],
     "hosts_with_conditional_change": []},
    {"name": "Nginx | Reload nginx", "hosts_with_change": [],
     "hosts_with_conditional_change": ["10.0.0.5"]},
    {"name": "Redis | Start redis-server", "hosts_with_change": ["10.0.0.5", "10.0.0.6"],
     "hosts_with_conditional_change": []},
    {"name": "Base | Install packages", "hosts_with_change": [],
     "hosts_with_conditional_change": []},
], "results": None}
STDERR = (
    "--> Preparing operations...\n"
    "\x1b[0m[\x1b[1m10.0.0.5\x1b[0m] Will modify /etc/nginx/sites-available/orchestra.conf\n"
    "  @@ -1,3 +1,3 @@\n"
    "    server {\n"
    "\x1b[31m  - # edited by hand\x1b[0m\n"
    f"\x1b[32m  + # managed {SECRET}\x1b[0m\n"
    "\n"
    "[10.0.0.6] Will create /etc/orchestra/new.conf\n"
    "  + line\n"
    "--> Proposed changes:\n"
)


def test_the_plan_and_the_diffs_are_read_per_host_with_secrets_masked():
    report = drift.parse("prod", json.dumps(PLAN), STDERR, [SECRET, "short"])
    first, second = report.hosts["10.0.0.5"], report.hosts["10.0.0.6"]
    assert first.operations == ["Nginx | Render nginx site orchestra.conf",
                                "Redis | Start redis-server"]
    assert first.conditional == ["Nginx | Reload nginx"]
    diff = first.diffs["/etc/nginx/sites-available/orchestra.conf"]
    assert "- # edited by hand" in diff and SECRET not in diff and drift.MASK in diff
    assert "\x1b" not in diff
    assert second.diffs == {"/etc/orchestra/new.conf": "+ line"}
    assert report.exit_code == drift.EXIT_DRIFT and SECRET not in report.text()
    assert "drift on 2 of 2 host(s)" in report.summary()
    assert json.loads(json.dumps(report.as_json()))["hosts"]["10.0.0.6"]["drift"] is True


def test_no_change_is_no_drift_and_a_failed_preview_is_an_error():
    clean = {"plan": [{**op, "hosts_with_change": [], "hosts_with_conditional_change": []}
                      for op in PLAN["plan"]]}
    report = drift.parse("prod", json.dumps(clean), "", [], hosts=["10.0.0.5", "10.0.0.6"])
    assert report.exit_code == drift.EXIT_CLEAN
    assert report.summary() == "prod: no drift on 2 host(s)"
    broken = drift.parse("prod", "", f"Error: cannot connect\npassword {SECRET}\n", [SECRET])
    assert broken.exit_code == drift.EXIT_ERROR and SECRET not in broken.error

    def failing(env, data):
        return subprocess.CompletedProcess([], 1, json.dumps(clean), "--> Error: boom\n")

    report = drift.check("prod", [], [], run=failing)
    assert report.exit_code == drift.EXIT_ERROR and "boom" in report.error


def test_the_fingerprint_follows_the_drift_not_the_order():
    one = drift.parse("prod", json.dumps(PLAN), STDERR, [])
    again = drift.parse("prod", json.dumps(PLAN), STDERR, [])
    assert one.fingerprint() == again.fingerprint()
    again.hosts["10.0.0.6"].operations.append("Base | Something else")
    assert one.fingerprint() != again.fingerprint()


def test_an_alert_goes_once_per_new_drift(tmp_path):
    path = tmp_path / "state" / "drift-prod.json"
    report = drift.parse("prod", json.dumps(PLAN), STDERR, [])
    clean = drift.parse("prod", json.dumps({"plan": []}), "", [])
    assert drift.should_alert(report, path) is True
    assert drift.should_alert(report, path) is False  # the same drift, again
    assert drift.should_alert(clean, path) is False and not path.exists()
    assert drift.should_alert(report, path) is True  # it came back: new again
    report.hosts["10.0.0.6"].operations.append("Base | Something else")
    assert drift.should_alert(report, path) is True
    failed = drift.Report("prod", {}, error="10.0.0.6: could not connect")
    assert drift.should_alert(failed, path) is True  # a check that cannot run is news too
    assert drift.should_alert(failed, path) is False  # once
    assert drift.should_alert(clean, path) is False and not path.exists()


def test_the_state_file_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    assert drift.state_file("prod") == tmp_path / "orchestra-infra" / "drift-prod.json"


def test_the_webhook_gets_monit_s_slack_compatible_text():
    received = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.handle_request, daemon=True)
    thread.start()
    report = drift.parse("prod", json.dumps(PLAN), STDERR, [])
    lines = []
    ok = drift.alert(report, f"http://127.0.0.1:{server.server_port}/hook", None, lines.append)
    thread.join(10)
    server.server_close()
    assert ok and received == [{"text": report.summary()}]
    assert lines == ["drift alert sent to the webhook"]
    failed = drift.alert(report, "http://127.0.0.1:9/none", None, lines.append)
    assert not failed and "the webhook failed" in lines[-1]


def test_the_history_of_each_host_and_its_lock():
    line = runlock.history_record(runlock.Holder("ann", "laptop", "pyinfra deploy.py", 1, "",
                                                 1_700_000_000.0, "r1"),
                                  "0123456789abcdef", True, "rel-9", 4, "success")
    lock = runlock.Holder("bob", "desk", "orchestra-infra rollback prod", 2, "", 1.0, "r2")
    one = history.parse("h1", f"{line}\nnot json\n{history.LOCK_MARK}\n{lock.to_json()}\n",
                        None)
    two = history.parse("h2", None, "cannot connect to h2:22: refused")
    assert one.runs[0]["release"] == "rel-9" and one.runs[0]["host"] == "h1"
    text = "\n".join(history.table([one, two]))
    assert "2023-11-14 22:13:20  h1" in text and "0123456789+" in text and "success" in text
    assert "h1: LOCKED by bob@desk" in text and "h2: cannot read the history" in text
    assert history.parse("h3", "", None).runs == [] and history.parse("h3", "", None).lock \
        is None


def test_the_history_script_quotes_its_paths():
    text = history.script("/var/lib/it's", 5)
    assert "tail -n 5 '/var/lib/it'\"'\"'s/history.jsonl'" in text


@pytest.mark.parametrize("argv", [["drift", "--help"], ["history", "--help"]])
def test_the_commands_exist(argv):
    from click.testing import CliRunner

    from orchestra_infra.cli import main

    assert CliRunner().invoke(main, argv).exit_code == 0
