"""Monit: which services a host's groups get, the rules rendered for them, the alert script."""

import json
import os
import re
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from operations import app, monit, render
from orchestra_infra import catalog
from orchestra_infra import config as config_module
from orchestra_infra.errors import ConfigError
from orchestra_infra.schema import validate
from orchestra_infra.secrets import MASK, NAMES, Secrets

PASSWORD = "m" * 43
SMTP_SINK = Path(__file__).parents[2] / "standins" / "smtp" / "smtp-sink"


def _config(**overrides):
    data = {**config_module.environment_data("prod"), "weaviate_sha256": "0" * 64}
    return validate({**data, **overrides}, NAMES)


def _groups(data=True, app_host=True, edge=True) -> list[str]:
    return [g for g, on in (("data", data), ("app", app_host), ("edge", edge)) if on]


def _services(config, data=True, app_host=True, edge=True):
    groups = _groups(data, app_host, edge)
    return {s["name"]: s for s in monit.services(config, groups, 15)}


def _checks(config, **groups) -> str:
    services = list(_services(config, **groups).values())
    return render.render("monit/etc/monit/orchestra/checks.conf.j2", {
        "config": config, "alert": monit.ALERT_SCRIPT, "services": services,
        "filesystems": {"fs-root": "/", "fs-data": "/data"}})


def _block(text: str, name: str) -> list[str]:
    """The lines of one `check` block."""
    blocks = re.split(r"\n(?=check )", text)
    found = [b for b in blocks if b.split("\n", 1)[0].split()[2:3] == [name]]
    assert len(found) == 1, name
    return [line.strip() for line in found[0].strip().splitlines()]


def test_each_group_gets_its_own_services():
    config = _config()
    assert list(_services(config, data=True, app_host=False, edge=False)) == [
        "postgres", "redis", "weaviate"]
    assert list(_services(config, data=False, app_host=True, edge=False)) == [
        "supervisord", "api-0", "api-1", "mcp-memory", "mcp-memory-1", "mcp-task", "mcp-task-1",
        "mcp-agent", "mcp-agent-1", "mcp-data", "mcp-data-1", "mcp-monitor", "mcp-monitor-1",
        "admin"]
    assert list(_services(config, data=False, app_host=False, edge=True)) == ["nginx"]


def test_a_new_mcp_server_is_checked_without_more_data():
    config = _config(mcp_servers={"memory": {"port": 8003}, "search": {"port": 8011}})
    services = _services(config)
    assert services["mcp-search"]["health"] == [
        'failed host 127.0.0.1 port 8011 protocol http request "/health" status < 600']
    assert services["mcp-search-1"]["health"] == [
        'failed host 127.0.0.1 port 8021 protocol http request "/health" status < 600']


def test_program_patterns_match_supervisor_command_lines_only():
    config = _config()
    services = _services(config)
    current = app.current_link(config)
    for program in app.programs(config):
        pattern = re.compile(services[program["name"]]["matching"])
        command = (f"{current}/venv/bin/python -m {program['module']} --host 127.0.0.1 "
                   f"--port {program['port']}")
        assert pattern.search(command), program["name"]
        # The launcher before it execs, and the same program on another port.
        assert pattern.search(f"/bin/sh {app.launcher(config)} {program['env_file']} {command}")
        assert not pattern.search(command + "0")
        assert not pattern.search(command.replace(f"--port {program['port']}", "--port 8090"))
    assert not re.search(services["api-0"]["matching"],
                         f"{current}/venv/bin/python -m api --host 127.0.0.1 --port 8001")


def test_posix_escape():
    assert catalog.posix_escape("mcp.server --name a-b") == r"mcp\.server --name a-b"
    assert catalog.posix_escape("(x)[y]{z}|*+?^$\\") == r"\(x\)\[y\]\{z\}\|\*\+\?\^\$\\"


def test_api_instance_rules():
    config = _config()
    assert _block(_checks(config), "api-0") == [
        'check process api-0 matching "-m api --host 127\\.0\\.0\\.1 --port 8000$"',
        "group app",
        'start program = "/usr/bin/supervisorctl start orchestra:api-0" with timeout 13 seconds',
        'stop program = "/usr/bin/supervisorctl stop orchestra:api-0" with timeout 13 seconds',
        'restart program = "/usr/bin/supervisorctl signal KILL orchestra:api-0" '
        "with timeout 13 seconds",
        "if does not exist for 2 cycles then start",
        'if does not exist for 2 cycles then exec "/usr/local/lib/orchestra/monit-alert start" '
        'else if succeeded then exec "/usr/local/lib/orchestra/monit-alert"',
        'if failed host 127.0.0.1 port 8000 protocol http request "/api/health/" status < 600 '
        "with timeout 5 seconds for 2 cycles then restart",
        'if failed host 127.0.0.1 port 8000 protocol http request "/api/health/" status < 600 '
        'with timeout 5 seconds for 2 cycles then exec "/usr/local/lib/orchestra/monit-alert '
        'restart" else if succeeded then exec "/usr/local/lib/orchestra/monit-alert"',
        'if totalmemory > 40% for 6 cycles then exec "/usr/local/lib/orchestra/monit-alert" '
        'else if succeeded then exec "/usr/local/lib/orchestra/monit-alert"',
        'if totalcpu > 90% for 6 cycles then exec "/usr/local/lib/orchestra/monit-alert" '
        'else if succeeded then exec "/usr/local/lib/orchestra/monit-alert"',
        # Monit evaluates these bottom-up: the alert goes out before monitoring stops.
        "if 3 restarts within 20 cycles then unmonitor",
        'if 3 restarts within 20 cycles then exec "/usr/local/lib/orchestra/monit-alert '
        'unmonitor"',
    ]


def test_data_and_edge_rules():
    config = _config(monit_health_timeout=4, monit_failed_cycles=3, monit_restart_window=12)
    checks = _checks(config)
    postgres = _block(checks, "postgres")
    assert postgres[0] == "check process postgres with pidfile /var/run/postgresql/15-main.pid"
    assert ('restart program = "/bin/systemctl restart postgresql@15-main" with timeout 60 '
            "seconds") in postgres
    assert ("if failed host 127.0.0.1 port 5432 protocol pgsql with timeout 4 seconds "
            "for 3 cycles then restart") in postgres
    assert not any("totalmemory" in line for line in postgres)
    redis = _block(checks, "redis")
    assert ('if failed host 127.0.0.1 port 6379 send "PING\\r\\n" expect "^(\\+PONG|-NOAUTH)" '
            "with timeout 4 seconds for 3 cycles then restart") in redis
    weaviate = _block(checks, "weaviate")
    assert weaviate[0] == 'check process weaviate matching "/opt/weaviate/current/weaviate --host "'
    assert any('"/v1/.well-known/live" with timeout 4 seconds for 3 cycles then restart' in line
               for line in weaviate)
    # Not ready only alerts, after the resource rounds.
    assert [line for line in weaviate if "ready" in line] == [
        'if failed host 127.0.0.1 port 8080 protocol http request "/v1/.well-known/ready" '
        'with timeout 4 seconds for 6 cycles then exec "/usr/local/lib/orchestra/monit-alert" '
        'else if succeeded then exec "/usr/local/lib/orchestra/monit-alert"']
    nginx = _block(checks, "nginx")
    assert nginx[0] == "check process nginx with pidfile /run/nginx.pid"
    assert any('port 8088 protocol http request "/stub_status" with timeout 4' in line
               for line in nginx)
    admin = _block(checks, "admin")
    assert admin[0] == "check process admin with pidfile /var/lib/orchestra/pm2/pm2.pid"
    assert admin[4] == (
        'restart program = "/usr/sbin/runuser -u orchestra -- /usr/bin/env '
        'HOME=/var/lib/orchestra PM2_HOME=/var/lib/orchestra/pm2 /usr/local/bin/pm2 restart '
        'orchestra-admin" with timeout 60 seconds')


def test_system_and_volume_rules():
    checks = _checks(_config(monit_disk_alert_percent=80, monit_load_per_core=1.5))
    alert = ('exec "/usr/local/lib/orchestra/monit-alert" else if succeeded then exec '
             '"/usr/local/lib/orchestra/monit-alert"')
    assert _block(checks, "$HOST") == [
        "check system $HOST",
        "group system",
        f"if loadavg (5min) per core > 1.5 for 6 cycles then {alert}",
        f"if memory usage > 90% for 6 cycles then {alert}",
    ]
    assert _block(checks, "fs-data") == [
        "check filesystem fs-data with path /data",
        "group system",
        f"if space usage > 80% then {alert}",
        f"if inode usage > 85% then {alert}",
    ]


def test_only_the_host_groups_are_rendered():
    checks = _checks(_config(), data=False, app_host=False, edge=True)
    assert re.findall(r"^check (\w+) (\S+)", checks, re.M) == [
        ("system", "$HOST"), ("filesystem", "fs-root"), ("filesystem", "fs-data"),
        ("process", "nginx")]


def test_volume_paths_and_names():
    config = _config(monit_extra_filesystems=["/home/ubuntu/backups"])
    assert monit.volume_paths(config, _groups(data=False, edge=False)) == [
        "/", "/var/log/orchestra", "/var/log", "/var/lib/orchestra-infra", "/opt/orchestra",
        "/home/ubuntu/backups"]
    assert "/var/lib/postgresql" in monit.volume_paths(config, _groups(app_host=False, edge=False))
    assert monit.filesystem_name("/") == "fs-root"
    assert monit.filesystem_name("/var/lib/postgresql") == "fs-var-lib-postgresql"
    assert monit.filesystem_name("/home/ubuntu/my_fs") == "fs-home-ubuntu-my-fs"


def test_monit_service_names_are_the_names_of_its_checks():
    config = _config()
    assert sorted(_services(config)) == sorted(config.monit_service_names())


def _settings(config, masked=False) -> str:
    render.use_secrets(Secrets("test", {"monit_password": PASSWORD}))
    return render.render("monit/etc/monit/orchestra/settings.conf.j2", {"config": config},
                         masked=masked)


def test_settings_loopback_web_interface_and_no_email_by_default():
    text = _settings(_config())
    assert "set daemon 10 with start delay 30\n" in text
    assert ("set httpd port 2812 and use address 127.0.0.1\n"
            f'    allow monit:"{PASSWORD}"\n') in text
    assert "mailserver" not in text and "set alert" not in text
    assert PASSWORD not in _settings(_config(), masked=True)
    assert f'allow monit:"{MASK}(monit_password)"' in _settings(_config(), masked=True)


def test_email_is_not_monits_own():
    """monit-alert mails the alerts: Monit's `set alert` would send one per rule."""
    text = _settings(_config(alert_smtp_host="smtp.example.com", alert_smtp_port=587,
                             alert_email_to=["ops@example.com"]))
    assert "mailserver" not in text and "set alert" not in text


def test_schema_checks():
    with pytest.raises(ConfigError) as raised:
        _config(alert_email_to=["ops@example.com"])
    assert raised.value.problems == [
        "alert_email_to: email alerts need alert_smtp_host (an SMTP relay)"]
    with pytest.raises(ConfigError) as raised:
        _config(monit_restart_limit=5, monit_restart_window=10)
    assert raised.value.problems == [
        "monit_restart_window: 10 rounds can never hold 5 restarts that each follow 2 failed "
        "rounds: use at least 15"]
    with pytest.raises(ConfigError) as raised:
        _config(monit_disk_alert_percent=0, alert_email_to=["not-an-address"],
                alert_smtp_host="smtp.example.com")
    assert raised.value.problems[0] == "monit_disk_alert_percent: 0 must be at least 1"
    assert raised.value.problems[1].startswith(
        "alert_email_to[0]: 'not-an-address' is not an e-mail")


class _Hook(BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append((self.path, self.headers["Content-Type"], json.loads(body)))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


def _alert_script(tmp_path, config) -> Path:
    script = tmp_path / "monit-alert"
    context = {**monit.alert_context(config), "webhook_config": str(tmp_path / "webhook.curl")}
    script.write_text(render.render("monit/usr/local/lib/orchestra/monit-alert.j2", context))
    return script


_EVENT = {"MONIT_HOST": "gpu-1", "MONIT_SERVICE": "api-0", "MONIT_EVENT": "Connection failed",
          "MONIT_DATE": "now",
          "MONIT_DESCRIPTION": 'failed "HTTP" \\ at\t[127.0.0.1]:8000\nsecond line\x01'}


@pytest.mark.skipif(not shutil.which("curl"), reason="curl is not installed")
def test_alert_script_posts_slack_json_with_the_url_from_a_file(tmp_path):
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url_file = tmp_path / "webhook.curl"
    url_file.write_text(f'url = "http://127.0.0.1:{server.server_port}/hook"\n')
    script = _alert_script(tmp_path, _config())
    env = {"PATH": os.environ["PATH"], **_EVENT}
    try:
        subprocess.run(["sh", str(script), "restart"], env=env, check=True, timeout=30)
        # No URL file: nothing is sent, and it is not an error.
        url_file.unlink()
        subprocess.run(["sh", str(script)], env=env, check=True, timeout=30)
    finally:
        server.shutdown()
    assert _Hook.received == [("/hook", "application/json", {
        "text": '[gpu-1] api-0: Connection failed: failed "HTTP" \\ at\t[127.0.0.1]:8000\n'
                "second line -> Monit restarts it (now)"})]


@pytest.mark.skipif(not shutil.which("curl"), reason="curl is not installed")
def test_alert_script_mails_each_event_once_to_every_address(tmp_path):
    """Through the smtp-sink stand-in: a real SMTP conversation by curl over loopback."""
    sink = subprocess.Popen([sys.executable, str(SMTP_SINK), "0", str(tmp_path / "mail")],
                            stdout=subprocess.PIPE, text=True)
    try:
        port = int(sink.stdout.readline())
        config = _config(alert_smtp_host="127.0.0.1", alert_smtp_port=port,
                         alert_email_from="monit@gpu-1.example.com",
                         alert_email_to=["ops@example.com", "on-call+ops@example.com"])
        script = _alert_script(tmp_path, config)
        env = {"PATH": os.environ["PATH"], **_EVENT, "MONIT_SERVICE": "api-0\nBcc: x@y.z"}
        subprocess.run(["sh", str(script), "restart"], env=env, check=True, timeout=30)
        # A relay that does not answer: the script fails (Monit logs it), bounded by --max-time.
        sink.terminate()
        sink.wait(timeout=10)
        assert subprocess.run(["sh", str(script)], env=env, timeout=120,
                              capture_output=True).returncode != 0
    finally:
        sink.kill()
    mails = sorted((tmp_path / "mail").glob("*.eml"))
    assert len(mails) == 1
    headers, _, body = mails[0].read_bytes().decode().partition("\r\n\r\n")
    assert headers.split("\r\n")[:3] == [
        "From: monit@gpu-1.example.com", "To: ops@example.com, on-call+ops@example.com",
        "Subject: [gpu-1] api-0Bcc: x@y.z: Connection failed"]
    assert "Bcc" not in headers.replace("api-0Bcc", "")  # no header slipped in
    assert body == ("host: gpu-1\r\nservice: api-0\r\nBcc: x@y.z\r\nevent: Connection failed\r\n"
                    "date: now\r\ndescription: failed \"HTTP\" \\ at\t[127.0.0.1]:8000\r\n"
                    "second line\x01 -> Monit restarts it\r\n")
