"""`orchestra-infra status`: the probe's output, recorded on a sandbox host, read into rows.

tests/unit/status/ holds outputs of the status script recorded on d-monit (a Debian 12
sandbox host running the whole stack; see its README). Failure pictures that were not
caught live are made from the healthy recording by replacing the exact lines the failure
changes, each edit written out in the test.
"""

import json
import subprocess
import xmlrpc.client
from pathlib import Path

import pytest
from click.testing import CliRunner

from orchestra_infra import config, status, status_hosts, status_probe
from orchestra_infra.cli import main
from orchestra_infra.schema import validate
from orchestra_infra.secrets import NAMES
from orchestra_infra.status_probe import parse

RECORDED = Path(__file__).parent / "status"
ALL = ("edge", "app", "data")


# The recordings (tests/unit/status/) were made on hosts with one instance per MCP server.
RECORDED_WITH = {"mcp_instances": 1}


@pytest.fixture(scope="module")
def sandbox_config():
    return validate(config.environment_data("sandbox", RECORDED_WITH), NAMES)


def recorded(name: str) -> str:
    return (RECORDED / name).read_text()


def edit(text: str, *replacements: tuple[str, str]) -> str:
    for old, new in replacements:
        assert old in text, old
        text = text.replace(old, new)
    return text


def rows_of(text: str, cfg, groups=ALL) -> dict[str, status.Row]:
    return {r.service: r for r in status.host_rows(cfg, "d-monit", groups, parse(text))}


def with_program(text: str, name: str, **fields) -> str:
    """The recording with supervisord's answer about one program changed."""
    start = text.index("@@ supervisor\n") + len("@@ supervisor\n")
    end = text.index("\nrc=", start)
    (programs,), _ = xmlrpc.client.loads(text[start:end])
    programs = [{**p, **fields} if p["name"] == name else p for p in programs
                if not (p["name"] == name and fields.get("statename") == "gone")]
    answer = xmlrpc.client.dumps((programs,), methodresponse=True)
    return text[:start] + answer + text[end:]


HEALTHY = recorded("healthy.txt")
NOW = 1795882669


# --- parsing ---------------------------------------------------------------------------------


def test_recorded_output_is_read_section_by_section():
    probe = parse(HEALTHY)
    assert (probe.now, probe.monotonic) == (NOW, 12048.27)
    assert probe.units["nginx.service"]["ActiveState"] == "active"
    assert probe.units["prometheus.service"]["LoadState"] == "not-found"
    assert "postgresql@15-main.service" in probe.units
    assert probe.supervisor["api-0"] == {"state": "RUNNING", "pid": 18134, "uptime": 105,
                                         "detail": ""}
    assert len(probe.supervisor) == 7
    assert probe.supervisor_crashes == {"api-0": 1, "api-1": 1}  # two drills: SIGKILL
    assert probe.processes[18134] == status_probe.Process(9198, 73144, "S", "supervisor.service")
    assert probe.pss[18134] == 52371
    assert probe.http["http://127.0.0.1:8000/api/health/"] == (200, 0)
    assert probe.http["http://127.0.0.1:9090/-/ready"] == (0, 7)  # no Prometheus (yet)
    assert probe.postgres == 0
    assert probe.redis == (0, "NOAUTH Authentication required.")
    assert [p["name"] for p in probe.pm2] == ["orchestra-admin", "pm2-logrotate"]
    assert probe.disks[0] == {"path": "/", "mount": "/", "size": 270553174016,
                              "used": 35262525440, "percent": 33}
    assert probe.backup is None
    assert probe.monit["postgres"] == "OK" and len(probe.monit) == 15


def test_supervisorctl_output_is_read_too():
    # killed-api-1.txt was recorded by the script's fallback, `supervisorctl status`
    probe = parse(recorded("killed-api-1.txt"))
    assert probe.supervisor["api-0"] == {"state": "RUNNING", "pid": 18134, "uptime": 70,
                                         "detail": ""}
    assert probe.supervisor["api-1"]["state"] == "STARTING"


def test_supervisord_fault():
    fault = xmlrpc.client.dumps(xmlrpc.client.Fault(1, "UNKNOWN_METHOD"), methodresponse=True)
    assert status_probe.parse_supervisor([*fault.splitlines(), "rc=0"]) == (
        None, "supervisord: UNKNOWN_METHOD")


@pytest.mark.parametrize("line, expected", [
    ("orchestra:api-0   RUNNING   pid 812, uptime 1 day, 2:03:04",
     {"state": "RUNNING", "pid": 812, "uptime": 93784, "detail": ""}),
    ("orchestra:api-0   RUNNING   pid 812, uptime 12 days, 0:00:01",
     {"state": "RUNNING", "pid": 812, "uptime": 1036801, "detail": ""}),
    ("orchestra:api-0   STARTING  ", {"state": "STARTING", "pid": None, "uptime": None,
                                      "detail": ""}),
    ("orchestra:api-0   BACKOFF   Exited too quickly (process log may have details)",
     {"state": "BACKOFF", "pid": None, "uptime": None,
      "detail": "Exited too quickly (process log may have details)"}),
    ("orchestra:api-0   STOPPED   Nov 28 04:05 PM",
     {"state": "STOPPED", "pid": None, "uptime": None, "detail": "Nov 28 04:05 PM"}),
])
def test_supervisorctl_states(line, expected):
    programs, error = status_probe.parse_supervisorctl([line])
    assert (programs, error) == ({"api-0": expected}, None)


def test_supervisord_down_is_an_error_not_an_empty_list():
    assert status_probe.parse_supervisor(
        ["unix:///var/run/supervisor.sock no such file", "rc=4"]
    ) == (None, "unix:///var/run/supervisor.sock no such file")
    assert status_probe.parse_supervisor(["rc=124"]) == (
        None, "supervisorctl timed out (supervisord hung?)")


def test_monit_without_its_http_interface():
    # recorded on d-monit while Monit's configuration was being written
    services, error = status_probe.parse_monit([
        "Monit: the monit HTTP interface is not enabled, please add the 'set httpd' statement "
        "and use the 'allow' option to allow monit to connect", "rc=1"])
    assert services is None and error.startswith("Monit: the monit HTTP interface")


def test_monit_statuses_with_spaces_and_two_word_types():
    services, _ = status_probe.parse_monit([
        " Service Name                     Status                      Type          ",
        " api-0                            Connection failed           Process       ",
        " weaviate                         Not monitored               Process       ",
        " backup-repo                      OK                          Remote Host   ",
    ])
    assert services == {"api-0": "Connection failed", "weaviate": "Not monitored",
                        "backup-repo": "OK"}


def test_pm2_errors():
    assert status_probe.parse_pm2(["error the PM2 daemon is not running"]) == (
        None, "the PM2 daemon is not running")
    assert status_probe.parse_pm2([]) == (None, "no answer from PM2")


def test_process_memory_prefers_pss_and_counts_children():
    probe = parse(HEALTHY)
    postgres = probe.unit_processes("postgresql@15-main.service")
    assert len(postgres) > 5
    pss = sum(probe.pss[pid] for pid in postgres) * 1024
    assert probe.memory(postgres) == pss
    assert probe.memory(probe.tree(9198)) > probe.memory([18134])  # supervisord + programs
    assert probe.memory([999999]) is None


# --- rows --------------------------------------------------------------------------------------


def test_healthy_host(sandbox_config):
    rows = rows_of(HEALTHY, sandbox_config)
    assert list(rows) == [
        "nginx", "supervisor", "api-0", "api-1", "mcp-memory", "mcp-task", "mcp-agent",
        "mcp-data", "mcp-monitor", "pm2-orchestra", "orchestra-admin", "postgresql@15-main",
        "redis-server", "weaviate", "monit", "disk /", "backup", "pg-archive",
    ]
    assert {name for name, r in rows.items() if r.health != "ok"} == {"backup"}
    api = rows["api-0"]
    assert (api.state, api.uptime_seconds, api.restarts, api.port, api.pid) == (
        "RUNNING", 105, 1, 8000, 18134)
    assert api.memory_bytes == 52371 * 1024  # the python process, no children
    nginx = rows["nginx"]
    assert (nginx.state, nginx.port, nginx.uptime_seconds, nginx.restarts) == (
        "running", 443, 836, 0)
    admin = rows["orchestra-admin"]
    assert (admin.state, admin.restarts, admin.memory_bytes, admin.uptime_seconds) == (
        "online", 0, 64843776, 681)
    assert rows["postgresql@15-main"].monit == "OK" and rows["orchestra-admin"].monit == "OK"
    assert (rows["disk /"].state, rows["disk /"].health) == ("33% used", "ok")
    # Recorded on a new host: neither restored nor declared empty, its backups wait.
    assert (rows["backup"].state, rows["backup"].health) == ("waiting", "warn")
    assert "a new host backs up only once restored" in rows["backup"].notes[0]


def test_a_host_that_may_back_up_but_has_not_yet(sandbox_config):
    text = recorded("healthy.txt") + "@@ backup-ready\nstart-empty 2026-01-02T03:04:05Z\n"
    row = rows_of(text, sandbox_config)["backup"]
    assert (row.state, row.health) == ("never", "warn")


def test_killed_program_restarting_recorded(sandbox_config):
    # Recorded after Monit killed a hung mcp-task: Supervisor is starting it again (its
    # new process answers already), Monit's last look still saw the connection fail, and
    # the host's load crossed Monit's threshold.
    rows = rows_of(recorded("killed-mcp-task.txt"), sandbox_config)
    task = rows["mcp-task"]
    assert (task.state, task.health, task.restarts, task.pid) == ("STARTING", "fail", 1, 27912)
    assert task.note == "restarting after a crash; monit: Connection failed"
    assert (rows["monit"].health, rows["monit"].note) == (
        "warn", "monit reports d-monit (Resource limit matched)")


def test_killed_api_instance_recorded_through_supervisorctl(sandbox_config):
    api = rows_of(recorded("killed-api-1.txt"), sandbox_config)["api-1"]
    assert (api.state, api.health, api.restarts, api.note, api.pid) == (
        "STARTING", "fail", 1, "restarting after a crash", None)


def test_hung_api_instance_recorded(sandbox_config):
    # Recorded during a SIGSTOP drill of api-1: Supervisor still says RUNNING, the process
    # is stopped and its port silent; requests through nginx that land on it time out too.
    rows = rows_of(recorded("sigstop-api-1.txt"), sandbox_config)
    api = rows["api-1"]
    assert (api.state, api.health, api.pid) == ("RUNNING", "fail", 19338)
    assert api.note == ("process 19338 is stopped (SIGSTOP); "
                        "health :8001/api/health/: timed out (process up: hung?)")
    assert rows["nginx"].note == "requests through it fail: :443/api/health/: timed out"
    assert {name for name, r in rows.items() if r.health == "fail"} == {"api-1", "nginx"}
    assert rows["api-0"].health == "ok"


def test_fatal_program(sandbox_config):
    text = with_program(HEALTHY, "mcp-task", statename="FATAL", state=200, pid=0,
                        description="Exited too quickly (process log may have details)")
    task = rows_of(text, sandbox_config)["mcp-task"]
    assert (task.state, task.health, task.pid, task.uptime_seconds) == ("FATAL", "fail", None,
                                                                         None)
    assert task.note == ("Supervisor gave up after 10 failed starts; "
                         "see /var/log/orchestra/mcp-task.log")


def test_backoff_program(sandbox_config):
    text = with_program(HEALTHY, "api-1", statename="BACKOFF", state=30, pid=0,
                        description="Exited too quickly (process log may have details)")
    api = rows_of(text, sandbox_config)["api-1"]
    assert (api.state, api.health, api.note) == ("BACKOFF", "fail", "restarting after a crash")


def test_stopped_data_service(sandbox_config):
    redis_unit = parse(HEALTHY).units["redis-server.service"]
    text = edit(HEALTHY,
                (f"MainPID={redis_unit['MainPID']}\nResult=success\nNRestarts=0\n"
                 "MemoryCurrent=[not set]\nId=redis-server.service\nLoadState=loaded\n"
                 "ActiveState=active\nSubState=running",
                 "MainPID=0\nResult=success\nNRestarts=0\nMemoryCurrent=[not set]\n"
                 "Id=redis-server.service\nLoadState=loaded\nActiveState=inactive\n"
                 "SubState=dead"),
                ("NOAUTH Authentication required.\n\nrc=0",
                 "Could not connect to Redis at 127.0.0.1:6379: Connection refused\nrc=1"))
    redis = rows_of(text, sandbox_config)["redis-server"]
    assert (redis.state, redis.health, redis.note, redis.uptime_seconds) == (
        "inactive", "fail", "stopped", None)


def test_systemd_restarting_after_a_crash(sandbox_config):
    text = edit(HEALTHY, ("Id=weaviate.service\nLoadState=loaded\nActiveState=active\n"
                          "SubState=running",
                          "Id=weaviate.service\nLoadState=loaded\nActiveState=activating\n"
                          "SubState=auto-restart"))
    weaviate = rows_of(text, sandbox_config)["weaviate"]
    assert (weaviate.state, weaviate.note) == ("activating/auto-restart",
                                               "restarting after a crash")


@pytest.mark.parametrize("percent, health, note", [
    (84, "ok", "25G of 252G"),
    (85, "fail", "25G of 252G; above the 85% alert threshold"),
    (97, "fail", "25G of 252G; above the 85% alert threshold"),
])
def test_disk_above_the_alert_threshold(sandbox_config, percent, health, note):
    text = HEALTHY.replace("71954852      33% /", f"71954852      {percent}% /")
    text = text.replace(" 34436060 ", " 26214400 ")
    disk = rows_of(text, sandbox_config)["disk /"]
    assert (disk.state, disk.health, disk.note) == (f"{percent}% used", health, note)


@pytest.mark.parametrize("age, state, health", [
    (2 * 3600, "2h00m ago", "ok"),
    (25 * 3600 + 59 * 60, "1d01h ago", "ok"),
    (27 * 3600, "1d03h ago", "fail"),
])
def test_backup_age(sandbox_config, age, state, health):
    text = HEALTHY.replace("@@ backup\n", f"@@ backup\n{NOW - age}\n")
    backup = rows_of(text, sandbox_config)["backup"]
    assert (backup.state, backup.health) == (state, health)


def test_pm2_daemon_down(sandbox_config):
    start = HEALTHY.index("@@ pm2\n") + len("@@ pm2\n")
    end = HEALTHY.index("@@ monit")
    text = HEALTHY[:start] + "error the PM2 daemon is not running\n" + HEALTHY[end:]
    rows = rows_of(text, sandbox_config)
    assert rows["orchestra-admin"].note == "PM2 does not answer: the PM2 daemon is not running"
    assert rows["pm2-orchestra"].health == "fail"


def test_monit_failing_check_is_a_warning_next_to_ours(sandbox_config):
    text = edit(HEALTHY, (" api-1                            OK",
                          " api-1                            Connection failed"),
                (" fs-root                          OK",
                 " fs-root                          Resource limit matched"))
    rows = rows_of(text, sandbox_config)
    assert (rows["api-1"].health, rows["api-1"].note) == ("warn", "monit: Connection failed")
    assert rows["monit"].note == "monit reports fs-root (Resource limit matched)"


def test_groups_decide_the_services(sandbox_config):
    edge = rows_of(HEALTHY, sandbox_config, groups=("edge",))
    assert list(edge) == ["nginx", "monit", "disk /"]  # no backup row: no data here


def test_missing_services_fail(sandbox_config):
    text = edit(HEALTHY, ("Id=weaviate.service\nLoadState=loaded",
                          "Id=weaviate.service\nLoadState=not-found"),
                )
    text = with_program(text, "api-0", statename="gone")
    rows = rows_of(text, sandbox_config)
    assert (rows["weaviate"].state, rows["weaviate"].note) == (
        "not installed", "weaviate.service is not installed")
    assert rows["api-0"].note == "not a Supervisor program (run the deploy)"


# --- the script ----------------------------------------------------------------------------------


def test_script_is_valid_sh_and_asks_for_what_the_groups_run(sandbox_config):
    script = status_probe.script(status.plan(sandbox_config, ALL))
    subprocess.run(["sh", "-n"], input=script, text=True, check=True)
    assert "redis-cli --no-auth-warning -h 127.0.0.1 -p 6379 ping" in script
    assert "pg_isready -q -h 127.0.0.1 -p 5432 -t 2" in script
    assert "-o /dev/null http://127.0.0.1:8000/api/health/" in script
    assert "runuser -u orchestra -- env HOME=/var/lib/orchestra" in script
    assert ("for p in / /var/log/orchestra /opt/orchestra /var/lib/postgresql /var/lib/redis "
            "/var/lib/weaviate /var/backups/weaviate /var/backups/orchestra/restic; do") in script
    edge = status_probe.script(status.plan(sandbox_config, ("edge",)))
    assert "supervisorctl" not in edge and "pg_isready" not in edge and "runuser" not in edge


def test_script_holds_no_secret(sandbox_config):
    script = status_probe.script(status.plan(sandbox_config, ALL))
    for word in ("password", "REDISCLI_AUTH", "AUTH ", "secret", ".env"):
        assert word not in script


# --- hosts, output, exit status -------------------------------------------------------------


def test_inventory_groups_as_pyinfra_reads_them():
    namespace = {
        "_hidden": ["x"],
        "edge": ["203.0.113.1", ("203.0.113.2", {"ssh_port": 2222})],
        "data": (["203.0.113.2"], {"ssh_user": "admin"}),
        "note": "not a group",
    }
    assert status_hosts.inventory_groups(namespace) == {
        "edge": [("203.0.113.1", {}), ("203.0.113.2", {"ssh_port": 2222})],
        "data": [("203.0.113.2", {"ssh_user": "admin"})],
    }


def test_an_unreachable_host_is_a_row():
    target = status_hosts.Target("127.0.0.1", ALL, {"ssh_port": 1, "ssh_user": "ubuntu",
                                                    "ssh_config_file": "/dev/null"})
    out, error = status_hosts.run_script(target, "true")
    assert out is None and error.startswith("cannot connect to 127.0.0.1:1: ")
    row = status.unreachable_row(target.label, error)
    assert (row.service, row.state, row.health) == ("ssh", "unreachable", "fail")


def _fake_environment(monkeypatch, answers):
    targets = [status_hosts.Target(name, ALL, {}) for name in answers]
    monkeypatch.setattr(status_hosts, "targets", lambda env, data: targets)
    monkeypatch.setattr(status_hosts, "run_everywhere",
                        lambda hosts, script_for: {t.name: answers[t.name] for t in hosts})


def test_exit_status_and_table(monkeypatch):
    _fake_environment(monkeypatch, {"10.0.0.2": (HEALTHY, None),
                                    "10.0.0.1": (None, "cannot connect: timed out")})
    printed = []
    assert status.run("sandbox", as_json=False, echo=printed.append,
                      overrides=RECORDED_WITH) == 1
    lines = printed[0].splitlines()
    assert lines[0].split() == ["HOST", "SERVICE", "MANAGER", "STATE", "UPTIME", "RESTARTS",
                                "HEALTH", "PORT", "MEMORY", "NOTE"]
    assert lines[1].split() == ["10.0.0.1", "ssh", "-", "unreachable", "-", "-", "FAIL", "-",
                                "-", "cannot", "connect:", "timed", "out"]
    assert lines[4].split() == ["10.0.0.2", "api-0", "supervisor", "RUNNING", "1m45s", "1",
                                "ok", "8000", "51M"]
    health = lines[0].index("HEALTH")
    assert all(line[health:].split()[0] in ("HEALTH", "ok", "WARN", "FAIL") for line in lines)
    assert printed[2].startswith("19 rows on 2 host(s): 17 ok, 1 warn, 1 failing")


def test_all_healthy_exits_zero_and_json_lists_objects(monkeypatch):
    _fake_environment(monkeypatch, {"10.0.0.2": (HEALTHY, None)})
    printed = []
    assert status.run("sandbox", as_json=True, echo=printed.append,
                      overrides=RECORDED_WITH) == 0
    rows = json.loads(printed[0])
    api = next(r for r in rows if r["service"] == "api-0")
    assert api == {"host": "10.0.0.2", "service": "api-0", "manager": "supervisor",
                   "layer": "app", "state": "RUNNING", "uptime_seconds": 105, "restarts": 1,
                   "health": "ok", "port": 8000, "memory_bytes": 52371 * 1024, "pid": 18134,
                   "note": "", "monit": "OK"}


def test_invalid_configuration_exits_2():
    result = CliRunner().invoke(main, ["status", "nope"])
    assert result.exit_code == 2
    assert "unknown environment 'nope'" in result.output


@pytest.mark.parametrize("seconds, text", [(None, "-"), (0, "0s"), (59, "59s"), (61, "1m01s"),
                                           (3600, "1h00m"), (90061, "1d01h")])
def test_durations(seconds, text):
    assert status.format_duration(seconds) == text


def test_connection_settings_follow_pyinfra_host_data(tmp_path):
    factory = object()
    target = status_hosts.Target("203.0.113.10", ALL, {
        "ssh_user": "ubuntu", "ssh_key": "~/.ssh/lambda", "ssh_port": 2222,
        "ssh_config_file": str(tmp_path / "none"),
        "ssh_paramiko_connect_kwargs": {"transport_factory": factory},
    })
    hostname, kwargs = status_hosts._connect_kwargs(target)
    assert hostname == "203.0.113.10"
    assert (kwargs["username"], kwargs["port"], kwargs["allow_agent"]) == ("ubuntu", 2222, False)
    assert kwargs["key_filename"].endswith("/.ssh/lambda")
    assert kwargs["transport_factory"] is factory


def test_ssh_config_fills_what_the_data_leaves_out(tmp_path):
    ssh_config = tmp_path / "config"
    ssh_config.write_text("Host gpu-1\n  HostName 203.0.113.20\n  User ubuntu\n  Port 2200\n")
    target = status_hosts.Target("gpu-1", ALL, {"ssh_config_file": str(ssh_config)})
    hostname, kwargs = status_hosts._connect_kwargs(target)
    assert (hostname, kwargs["username"], kwargs["port"]) == ("203.0.113.20", "ubuntu", 2200)


def test_the_archive_row_shows_the_last_wal_and_fails_when_wal_waits(sandbox_config):
    def row(text: str):
        return rows_of(text, sandbox_config)["pg-archive"]

    ok = row(HEALTHY)
    assert (ok.state, ok.health) == ("WAL 19s ago", "ok")
    assert "base backup 22h57m ago" in ok.note and "checked 44m29s ago" in ok.note
    failing = row(HEALTHY.replace("pg-archive-last 1795882650 0 0 0",
                                  f"pg-archive-last {NOW - 900} {NOW - 10} 12 600"))
    assert failing.health == "fail" and "12 WAL segment(s) waiting" in failing.note
    checked = row(HEALTHY.replace("pg-archive-check ok 1795880000",
                                  f"pg-archive-check failed {NOW - 60} repository unreachable"))
    assert checked.health == "fail" and "repository unreachable" in checked.note
    waiting = row(HEALTHY.replace("archive-ready start-empty", "x-archive-ready start-empty"))
    assert waiting.state == "waiting" and waiting.health == "warn"


def test_the_newest_copy_of_each_store_is_shown_and_old_ones_warn(sandbox_config):
    copies = (f"store-redis-last-success {NOW - 300} abcd\n"
              f"store-weaviate-last-success {NOW - 4 * 3600} abcd\n")
    text = HEALTHY.replace("@@ backup\n", f"@@ backup\n{NOW - 7200}\n", 1).replace(
        "@@ archive\n", f"@@ archive\n{copies}", 1)
    row = rows_of(text, sandbox_config)["store-copies"]
    assert row.state == "redis 5m00s ago, weaviate 4h00m ago"
    assert row.health == "warn" and "weaviate: no copy for 4h00m" in row.note
    assert "store-copies" not in rows_of(HEALTHY, sandbox_config)  # no backup yet
