"""The operator's day on the converged host: drift, the run lock, the history."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from orchestra_infra import runlock

from .conftest import REPO, converge, on, pyinfra

pytestmark = pytest.mark.e2e

LOCK = "/var/lib/orchestra-infra/lock"
HISTORY = "/var/lib/orchestra-infra/history.jsonl"
EDITED = "/etc/modprobe.d/orchestra-hardening.conf"


def cli(target, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "orchestra_infra", *args], cwd=REPO, capture_output=True,
        text=True, timeout=900, stdin=subprocess.DEVNULL,
        env={**os.environ, "ORCHESTRA_SANDBOX_HOSTS": target.name, **(env or {})})


def drift(target, *args: str, env: dict | None = None) -> tuple[int, dict]:
    result = cli(target, "drift", "sandbox", "--json", *args, env=env)
    assert result.returncode in (0, 1), result.stdout + result.stderr[-3000:]
    return result.returncode, json.loads(result.stdout)


def test_a_converged_host_has_no_drift(target, provisioned):
    code, report = drift(target)
    assert (code, report["drift"]) == (0, False), report


def test_a_hand_edit_a_stopped_unit_and_a_removed_package_are_each_reported(
        target, provisioned, tmp_path):
    on(target, f"echo '# edited by hand' >> {EDITED}")
    on(target, "systemctl stop fail2ban")
    on(target, "DEBIAN_FRONTEND=noninteractive apt-get remove -y -qq rsync >/dev/null")
    try:
        code, report = drift(target)
        assert code == 1 and report["drift"], report
        (host,) = [h for h in report["hosts"].values() if h["drift"]]
        operations = "\n".join(host["operations"])
        assert "Run fail2ban" in operations
        assert "Install packages" in operations
        assert "- # edited by hand" in host["diffs"][EDITED], host["diffs"]
        # --alert: the summary goes to the webhook once per new drift, not every run.
        received = []

        class Hook(BaseHTTPRequestHandler):
            def do_POST(self):
                received.append(self.rfile.read(int(self.headers["Content-Length"])))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        server = HTTPServer(("127.0.0.1", 0), Hook)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        env = {"XDG_STATE_HOME": str(tmp_path),
               "ORCHESTRA_SECRET_ALERT_WEBHOOK_URL":
                   f"http://127.0.0.1:{server.server_port}/hook"}
        try:
            for _ in range(2):
                assert drift(target, "--alert", env=env)[0] == 1
        finally:
            server.shutdown()
            server.server_close()
        assert len(received) == 1 and "drift on 1 of 1 host(s)" in received[0].decode()
    finally:
        converge(target)
    assert drift(target)[0] == 0


def _lock_held_by(pid: int) -> str:
    holder = runlock.Holder("someone", socket.gethostname(), "pyinfra deploy.py", pid,
                            runlock._boot_id(), time.time() - 60)
    return holder.to_json()


def test_a_second_deploy_stops_before_any_change_while_a_run_holds_the_lock(target,
                                                                              provisioned):
    running = subprocess.Popen(["sleep", "600"])  # the first run's process, alive
    record = _lock_held_by(running.pid)
    try:
        on(target, f"printf '%s\\n' '{record}' > {LOCK}")
        second = pyinfra(target, "-y", "--json", "--data", 'monit_paused=["mcp-agent"]')
        assert second.returncode != 0
        assert "locked by someone@" in second.stderr and "Nothing was changed" in second.stderr
        assert "looks stale" not in second.stderr
        # Not even the one change the second run wanted was made, and the lock is the first's.
        assert "Not monitored" not in on(target, "monit -B summary | grep ' mcp-agent '")
        assert json.loads(on(target, f"cat {LOCK}"))["pid"] == running.pid
        # --force-unlock is the only way past it.
        forced = pyinfra(target, "-y", "--json", env={runlock.FORCE_ENV: "1"})
        assert forced.returncode == 0 and "BROKE the run lock of someone@" in forced.stderr
    finally:
        running.kill()
        running.wait()
        on(target, f"rm -f {LOCK}")
    assert on(target, f"test -e {LOCK} && echo held || echo free").strip() == "free"


def test_a_stale_lock_is_named_stale_and_broken_only_with_force_unlock(target, provisioned):
    gone = subprocess.Popen(["true"])
    gone.wait()  # a killed run's process: gone
    on(target, f"printf '%s\\n' '{_lock_held_by(gone.pid)}' > {LOCK}")
    try:
        refused = converge_refused(target)
        assert "looks stale" in refused and f"pid {gone.pid}" in refused
        assert on(target, f"test -e {LOCK} && echo held").strip() == "held"
        run = converge(target, env={runlock.FORCE_ENV: "1"})
        assert run.changed == []  # the bookkeeping is no operation
        assert "BROKE the run lock" in run.stderr
    finally:
        on(target, f"rm -f {LOCK}")
    last = json.loads(on(target, f"tail -n 1 {HISTORY}"))
    assert last["outcome"] == "success" and "someone@" in last["broke_lock_of"]


def converge_refused(target) -> str:
    run = pyinfra(target, "-y", "--json")
    assert run.returncode != 0, "a locked host was deployed"
    return run.stderr


def test_every_run_is_in_the_history(target, provisioned):
    first, second = provisioned
    assert second.changed == []  # the lock and the history line are outside the count
    result = cli(target, "history", "sandbox", "--json")
    assert result.returncode == 0, result.stderr
    (host,) = json.loads(result.stdout)
    runs = host["runs"]
    assert len(runs) >= 2 and host["lock"] is None and host["error"] is None
    assert runs[-1]["outcome"] == "success" and runs[-1]["changed"] == 0
    assert all(len(r["commit"]) == 40 and r["operator"] and r["control"] for r in runs)
    assert all(len(r["release"]) >= 8 for r in runs), runs
    table = cli(target, "history", "sandbox")
    assert table.returncode == 0 and "success" in table.stdout
    assert oct(int(on(target, f"stat -c %a {HISTORY}"), 8)) == "0o640"


def test_the_wrappers_previews_show_the_plan_and_change_nothing(target, provisioned):
    lines = on(target, f"wc -l < {HISTORY}").strip()
    restore = cli(target, "restore", "sandbox", "--dry", "--force")
    plan = restore.stdout + restore.stderr
    # The snapshot's id and date and the data it replaces, or why there is nothing to restore.
    assert ("Snapshot " in plan and "Restore | Fetch snapshot" in plan) or \
        "nothing to restore" in plan, plan[-3000:]
    rollback = cli(target, "rollback", "sandbox", "--dry", "-v")
    plan = rollback.stdout + rollback.stderr
    assert "Roll back to release" in plan or "no earlier release" in plan, plan[-3000:]
    assert cli(target, "backup", "sandbox", "--dry").returncode == 0
    assert on(target, f"wc -l < {HISTORY}").strip() == lines  # no run, no record
    assert on(target, f"test -e {LOCK} && echo held || echo free").strip() == "free"
