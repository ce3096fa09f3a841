"""The ops layer on the converged host: Monit, Prometheus, bounded logs, status, backups."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from .conftest import REPO, converge, on

pytestmark = pytest.mark.e2e


def test_monit_watches_every_service_and_only_on_loopback(target, provisioned,
                                                          testinfra_host):
    assert testinfra_host.service("monit").is_enabled
    names = ["api-0", "api-1", *(f"mcp-{name}{instance}"
                                 for name in ("memory", "task", "agent", "data", "monitor")
                                 for instance in ("", "-1")),
             "admin", "nginx", "postgres", "redis", "weaviate"]

    def not_ok() -> list[str]:
        summary = on(target, "monit summary").splitlines()
        lines = {name: next((line for line in summary if f" {name} " in f" {line} "), "")
                 for name in names}
        return [line or name for name, line in lines.items()
                if not ("OK" in line or "Initializing" in line)]

    # A restart just before (a release, a drill) shows for a cycle or two: bounded wait.
    deadline = time.monotonic() + 60
    while not_ok() and time.monotonic() < deadline:
        time.sleep(2)
    assert not not_ok(), not_ok()
    sockets = on(target, "ss -Htlnp 'sport = :2812'")
    assert sockets and all("127.0.0.1:2812" in line for line in sockets.splitlines())
    for path in on(target, "ls /etc/monit/orchestra").split():
        assert testinfra_host.file(f"/etc/monit/orchestra/{path}").mode == 0o600


def test_monit_paused_is_left_alone_and_the_rest_is_armed_again(target, provisioned):
    def status() -> str:  # Monit acts on `monit (un)monitor` within a moment: bounded wait
        deadline = time.monotonic() + 15
        while "pending" in (line := on(target, "monit -B summary | grep ' mcp-agent '")) \
                and time.monotonic() < deadline:
            time.sleep(1)
        return line

    paused = ("--data", 'monit_paused=["mcp-agent"]')
    assert "Monit | Pause the checks of monit_paused: mcp-agent" in \
        converge(target, *paused).changed
    assert "Not monitored" in status()
    assert converge(target, *paused).changed == []
    assert "Monit | Watch again what Monit stopped watching: mcp-agent" in \
        converge(target).changed
    assert "Not monitored" not in status()
    assert converge(target).changed == []


def test_prometheus_scrapes_every_target_and_loads_the_rules(target, provisioned):
    targets = json.loads(on(target, "curl -fsS http://127.0.0.1:9090/api/v1/targets",
                            sudo=False))["data"]["activeTargets"]
    down = [(t["labels"].get("job"), t["scrapeUrl"], t["lastError"]) for t in targets
            if t["health"] != "up"]
    # A target scraped for the first time may still be "unknown": give it one interval.
    if down:
        on(target, "sleep 20")
        targets = json.loads(on(target, "curl -fsS http://127.0.0.1:9090/api/v1/targets",
                                sudo=False))["data"]["activeTargets"]
        down = [(t["labels"].get("job"), t["scrapeUrl"], t["lastError"]) for t in targets
                if t["health"] != "up"]
    assert len(targets) >= 15 and not down, down
    rules = json.loads(on(target, "curl -fsS http://127.0.0.1:9090/api/v1/rules",
                          sudo=False))["data"]["groups"]
    names = {rule["name"] for group in rules for rule in group["rules"]}
    assert {"ServiceDown", "HealthProbeFailing", "Nginx5xxRatioHigh", "DiskAlmostFull",
            "MemoryAlmostFull", "BackupTooOld"} <= names


def test_metrics_listen_on_loopback_only(target, provisioned):
    ports = [9090, 9093, 9100, 9187, 9121, 9113, 9115, 3903]
    listening = on(target, "ss -Htln")
    for port in ports:
        lines = [line for line in listening.splitlines() if f":{port} " in line]
        assert lines and all("127.0.0.1:" in line for line in lines), (port, lines)
    assert ":9094 " not in listening  # Alertmanager's cluster port stays closed


def test_logs_are_bounded(target, provisioned, testinfra_host):
    journald = on(target, "systemd-analyze cat-config systemd/journald.conf")
    assert "Storage=persistent" in journald and "SystemMaxUse=" in journald
    for rotated in ["nginx", "monit"]:
        assert testinfra_host.file(f"/etc/logrotate.d/{rotated}").exists, rotated
    # supervisord rotates its own log (logfile_maxbytes, logfile_backups: 50MB x 10 by
    # default) and, below, every program's.
    supervisord = on(target, "cat /etc/supervisor/supervisord.conf")
    assert "logfile_maxbytes=0" not in supervisord
    on(target, "logrotate --debug /etc/logrotate.conf >/dev/null 2>&1")  # every file parses
    supervisor = testinfra_host.file("/etc/supervisor/conf.d/orchestra.conf").content_string
    # Two API instances, two of each of the five MCP servers: every program is bounded.
    assert supervisor.count("stdout_logfile_maxbytes=") == supervisor.count("[program:") == 12
    modules = on(target, "runuser -u orchestra -- env HOME=/var/lib/orchestra "
                         "PM2_HOME=/var/lib/orchestra/pm2 pm2 jlist")
    assert any(app["name"] == "pm2-logrotate" for app in json.loads(modules))


def test_backups_are_scheduled_once_the_host_may_back_up(target, provisioned):
    # A new host's timers wait for a restore or --start-empty (tests/e2e/test_backups.py).
    if not on(target, "cat /var/lib/orchestra-infra/backup/ready 2>/dev/null; true").strip():
        assert "enabled" not in on(target, "systemctl is-enabled orchestra-backup.timer; true")
        on(target, "/usr/local/lib/orchestra/orchestra-backup start-empty")
    timers = on(target, "systemctl list-timers --all --no-legend")
    assert "orchestra-backup.timer" in timers and "orchestra-backup-check.timer" in timers
    assert converge(target).changed == []


def test_status_shows_a_healthy_host(target, provisioned):
    result = subprocess.run([sys.executable, "-m", "orchestra_infra", "status", "sandbox"],
                            cwd=REPO, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "ORCHESTRA_SANDBOX_HOSTS": target.name})
    assert result.returncode == 0, result.stdout + result.stderr
    for service in ["api-0", "mcp-task", "orchestra-admin", "nginx", "postgresql@", "monit"]:
        assert service in result.stdout, service
