"""Drills: hangs, crash loops, a full disk and an interrupted deploy on the provisioned host.

Each drill breaks something the way production breaks, measures how long the stack takes to
notice and recover, checks that an alert reached the webhook receiver (started on the host,
on loopback: conftest.py points alert_webhook_url at it) and that `orchestra-infra status`
reports the state while it lasts.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from .conftest import REPO, WEBHOOK_PORT, converge, on, pyinfra

pytestmark = pytest.mark.e2e

ALERTS = "/run/alert-receiver/alerts.jsonl"
RECEIVER = f"""
import http.server, os
os.makedirs(os.path.dirname({ALERTS!r}), exist_ok=True)
class Receiver(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with open({ALERTS!r}, "ab") as alerts:
            alerts.write(body.replace(b"\\n", b" ") + b"\\n")
        self.send_response(200)
        self.end_headers()
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", {WEBHOOK_PORT}), Receiver).serve_forever()
"""


@pytest.fixture(scope="module")
def receiver(target, provisioned):
    on(target, f"cat > /usr/local/lib/alert-receiver.py <<'EOF'\n{RECEIVER}\nEOF")
    on(target, "systemd-run --unit=alert-receiver python3 /usr/local/lib/alert-receiver.py")
    on(target, f"for i in $(seq 50); do ss -Htln | grep -q ':{WEBHOOK_PORT} ' && exit 0; "
               "sleep 0.1; done; exit 1")
    yield
    on(target, "systemctl stop alert-receiver; rm -f /usr/local/lib/alert-receiver.py")


def _alerts(target) -> list[str]:
    return on(target, f"cat {ALERTS} 2>/dev/null || true").splitlines()


def _wait_for_alert(target, *words: str, timeout: float = 90) -> float:
    """Seconds until an alert naming every word arrives (bounded)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if any(all(word in alert for word in words) for alert in _alerts(target)):
            return time.monotonic() - started
        time.sleep(1)
    raise AssertionError(f"no alert naming {words} within {timeout} s; got: "
                         f"{_alerts(target)[-5:]}")


def _status(target, *data: str) -> dict[str, dict]:
    result = subprocess.run([sys.executable, "-m", "orchestra_infra", "status", "sandbox",
                             "--json", *data], cwd=REPO, capture_output=True, text=True,
                            timeout=120, env={**os.environ, "ORCHESTRA_SANDBOX_HOSTS": target.name})
    assert result.returncode in (0, 1), result.stderr
    return {row["service"]: row for row in json.loads(result.stdout)}


def _wait(predicate, timeout: float, step: float = 0.5) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():
            return time.monotonic() - started
        time.sleep(step)
    raise AssertionError(f"not within {timeout} s")


def test_a_hung_api_instance_is_restarted_by_monit_with_an_alert(target, receiver):
    pid = on(target, "supervisorctl pid orchestra:api-0").strip()
    on(target, f"kill -STOP {pid}")
    stopped = time.monotonic()
    try:
        hung = _status(target)["api-0"]
        assert hung["health"] == "fail", hung
        # Through the edge meanwhile (Monit restarts it about 35 s after the stop): a GET
        # nginx hands the hung instance waits nginx_api_idempotent_read_timeout (5 s), then
        # api-1 answers it. Without that it waited proxy_read_timeout (60 s), past 9 s.
        gets = [on(target, "curl -sk -o /dev/null -w '%{http_code} %{time_total}' -m 9 "
                           "https://127.0.0.1/api/health/ || true", sudo=False).split()
                for _ in range(4)]

        def restarted() -> bool:
            now = on(target, "supervisorctl pid orchestra:api-0").strip()
            healthy = on(target, "curl -fsS -m 2 -o /dev/null http://127.0.0.1:8000/api/health/"
                                 " && echo yes || true", sudo=False).strip()
            return now not in (pid, "0") and healthy == "yes"

        recovered = _wait(restarted, timeout=120, step=1)
    finally:
        on(target, f"kill -CONT {pid} 2>/dev/null || true")
    _wait_for_alert(target, "api-0")
    print(f"hang drill: api-0 restarted by Monit {recovered:.0f} s after SIGSTOP; alert "
          f"{time.monotonic() - stopped:.0f} s after it; GETs through the edge while it hung "
          f"(status, seconds): {gets}")
    assert all(code == "200" for code, _ in gets), gets
    assert recovered < 60
    # Supervisor calls it RUNNING once it has stayed up supervisor_startsecs.
    _wait(lambda: _status(target)["api-0"]["health"] != "fail", timeout=30, step=2)


def test_a_program_failing_at_every_start_raises_an_alert(target, receiver):
    """mcp-data cannot start (its env file is unreadable): Supervisor gives up (FATAL), and
    that is an alert, not silence."""
    env_file = "/etc/orchestra/mcp-data.env"
    on(target, f"mv {env_file} {env_file}.drill && supervisorctl restart orchestra:mcp-data "
               "|| true")
    started = time.monotonic()
    try:
        _wait(lambda: "FATAL" in on(target, "supervisorctl status orchestra:mcp-data || true"),
              timeout=150, step=2)
        fatal = time.monotonic() - started
        assert _status(target)["mcp-data"]["health"] == "fail"
        first = _wait_for_alert(target, "mcp-data", timeout=120)
        # Monit's start attempts run out: it stops trying, and says so.
        _wait_for_alert(target, "mcp-data", "gave up", timeout=180)
        gave_up = time.monotonic() - started
        print(f"crash-loop drill: first alert within {first:.0f} s of FATAL ({fatal:.0f} s), "
              f"Monit gave up with an alert {gave_up:.0f} s after the first failed start")
    finally:
        on(target, f"mv {env_file}.drill {env_file}")
    # The deploy starts the program again and re-arms the check Monit gave up on.
    assert "Monit | Watch again what Monit stopped watching: mcp-data" in \
        converge(target).changed
    _wait(lambda: "Not monitored" not in _monit_line(target, "mcp-data"), timeout=60, step=2)
    _wait(lambda: _status(target)["mcp-data"]["health"] != "fail", timeout=30, step=2)


def _monit_line(target, service: str) -> str:
    return next((line for line in on(target, "monit summary").splitlines()
                 if f" {service} " in f" {line} "), "")


def test_a_disk_past_its_threshold_raises_an_alert(target, receiver):
    """A small volume mounted for the drill and filled past monit_disk_alert_percent."""
    volume = "/srv/drill-volume"
    extra = ("--data", f'monit_extra_filesystems=["{volume}"]')
    on(target, f"mkdir -p {volume} && mount -t tmpfs -o size=32M drill-volume {volume}")
    try:
        converge(target, *extra)
        on(target, f"fallocate -l 30M {volume}/fill")  # bounded: the volume is 32M
        alerted = _wait_for_alert(target, "drill-volume", timeout=90)
        disk = _status(target, *extra)[f"disk {volume}"]
        assert disk["health"] == "fail", disk
        print(f"disk drill: alert {alerted:.0f} s after the volume passed its threshold")
    finally:
        on(target, f"rm -f {volume}/fill; umount {volume}; rmdir {volume}")
    converge(target)


SMTP_PORT = 2525
MAIL = "/run/alert-receiver/mail"


def _mails(target) -> list[str]:
    return [on(target, f"cat {path}") for path in
            on(target, f"ls -d {MAIL}/*.eml 2>/dev/null || true").split()]


def test_email_alerts_one_per_event_and_none_for_a_deploy(target, receiver):
    """Email through a relay (the smtp-sink stand-in): a failure and its recovery are mailed
    once each; a deploy (Monit reloaded, its checks held) mails nothing."""
    email = ("--data", 'alert_email_to=["ops@example.invalid"]',
             "--data", "alert_email_from=monit@example.invalid",
             "--data", "alert_smtp_host=127.0.0.1", "--data", f"alert_smtp_port={SMTP_PORT}")
    sink = (REPO / "standins" / "smtp" / "smtp-sink").read_text()
    on(target, f"cat > /usr/local/lib/smtp-sink <<'EOF'\n{sink}\nEOF")
    on(target, f"systemd-run --unit=smtp-sink python3 /usr/local/lib/smtp-sink {SMTP_PORT} {MAIL}")
    try:
        on(target, f"for i in $(seq 50); do ss -Htln | grep -q ':{SMTP_PORT} ' && exit 0; "
                   "sleep 0.1; done; exit 1")
        # Two deploys that reload Monit and hold its checks (a volume check added, then
        # removed): what they raised would be sent at once.
        converge(target, *email, "--data", 'monit_extra_filesystems=["/tmp"]')
        converge(target, *email)
        time.sleep(3)
        assert _mails(target) == []
        on(target, "supervisorctl stop orchestra:mcp-monitor")
        stopped = time.monotonic()
        _wait(lambda: sum("mcp-monitor" in m for m in _mails(target)) >= 2, timeout=90, step=2)
        print(f"email drill: failure and recovery mailed within {time.monotonic() - stopped:.0f}"
              " s of the stop")
        time.sleep(12)  # a round more: nothing else comes for the same events
        mails = _mails(target)
        subjects = [line for mail in mails for line in mail.splitlines()
                    if line.startswith("Subject:")]
        assert len(mails) == 2, subjects
        assert subjects[0].startswith(f"Subject: [{target.name}] mcp-monitor: Does not exist")
        assert subjects[1].startswith(f"Subject: [{target.name}] mcp-monitor: Exists")
        assert all("From: monit@example.invalid" in mail and "To: ops@example.invalid" in mail
                   for mail in mails)
    finally:
        on(target, f"systemctl stop smtp-sink; rm -rf /usr/local/lib/smtp-sink {MAIL}")
        on(target, "supervisorctl start orchestra:mcp-monitor || true")
    converge(target)


def test_an_interrupted_deploy_converges_on_the_next_run(target, provisioned, tmp_path):
    """The pyinfra process is killed in the middle of a release; the next run finishes the
    job and the one after changes nothing."""
    source = tmp_path / "app"
    subprocess.run(["cp", "-r", str(REPO / "app"), str(source)], check=True)
    (source / "api" / "RELEASE_NOTE").write_text(f"interrupted {time.time()}\n")
    argv = [sys.executable, "-m", "pyinfra", "-y", "inventories/sandbox.py", "deploy.py",
            "--data", f"app_source={source}"]
    process = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, stdin=subprocess.DEVNULL, start_new_session=True,
                               env={**os.environ, "ORCHESTRA_SANDBOX_HOSTS": target.name})
    seen = []
    for line in process.stdout:  # bounded by the deploy's own length
        seen.append(line)
        if "Build release" in line:
            time.sleep(5)  # in the middle of unpacking and building
            os.killpg(process.pid, signal.SIGKILL)
            break
    process.wait(timeout=60)
    assert any("Build release" in line for line in seen), "".join(seen)[-3000:]
    # The killed run left its lock: the next run names it as stale and stops, never
    # silently; the operator breaks it (--force-unlock, here through the environment).
    refused = pyinfra(target, "-y", "--data", f"app_source={source}")
    assert refused.returncode != 0 and "The lock looks stale" in refused.stderr, \
        refused.stderr[-3000:]
    finished = converge(target, "--data", f"app_source={source}",
                        env={"ORCHESTRA_FORCE_UNLOCK": "1"})
    assert "App | Make release" in " ".join(finished.changed)
    assert converge(target, "--data", f"app_source={source}").changed == []
    converge(target)  # the repository's app again (still built: a switch, no build)
    assert pyinfra(target, "-y").returncode == 0
