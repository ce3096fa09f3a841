"""Metrics: arguments per distro, targets from the port table, rules, Alertmanager, the
pg_monitor grant. promtool and amtool check the rendered files when they are installed."""

import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from pyinfra.api import DeployError
from pyinfra.context import ctx_host, ctx_state
from pyinfra_testing.operations import parse_commands
from pyinfra_testing.util import FakeState, create_host

from operations import prometheus, render
from orchestra_infra import config as config_module
from orchestra_infra.errors import ConfigError
from orchestra_infra.schema import validate
from orchestra_infra.secrets import MASK, NAMES, Secrets

ALL = ("data", "app", "edge", "metrics")
WEBHOOK = "https://hooks.example.invalid/services/T0/B0/abcdefghijklmnop"


@pytest.fixture(scope="module")
def config():
    data = config_module.environment_data("prod", {"weaviate_sha256": "ab" * 32})
    return validate(data, NAMES)


def _with(config, **changes):
    return config.model_copy(update=changes)


# --- what differs between the distros ---------------------------------------------------------


def test_both_supported_distros_have_a_flavour():
    assert set(prometheus.FLAVOURS) == {("Debian", 12), ("Ubuntu", 22)}
    assert prometheus.FLAVOURS["Debian", 12].versions["prometheus"] == "2.42"
    assert prometheus.FLAVOURS["Ubuntu", 22].versions["prometheus"] == "2.31"


@pytest.mark.parametrize(("distro", "major"), [(("Debian", 12), 15), (("Ubuntu", 22), 14)])
def test_daemon_args_on_each_distro(config, distro, major):
    units = prometheus.watched_units(config, ALL, major)
    args = prometheus.daemon_args(config, ALL, prometheus.FLAVOURS[distro], units)
    assert args == {
        "prometheus": "--config.file=/etc/prometheus/prometheus.yml "
                      "--web.listen-address=127.0.0.1:9090 "
                      "--storage.tsdb.path=/var/lib/prometheus/metrics2/ "
                      "--storage.tsdb.retention.time=15d --storage.tsdb.retention.size=2GB",
        "prometheus-alertmanager": "--config.file=/etc/prometheus/alertmanager.yml "
                                   "--storage.path=/var/lib/prometheus/alertmanager/ "
                                   "--web.listen-address=127.0.0.1:9093 "
                                   "--cluster.listen-address=",
        "prometheus-node-exporter": "--web.listen-address=127.0.0.1:9100 "
                                    "--collector.textfile.directory="
                                    "/var/lib/prometheus/node-exporter --collector.systemd "
                                    "--collector.systemd.unit-include=(nginx|pm2-orchestra|"
                                    f"postgresql@{major}-main|redis-server|supervisor|"
                                    "weaviate)[.]service",
        "prometheus-blackbox-exporter": "--config.file=/etc/prometheus/blackbox.yml "
                                        "--web.listen-address=127.0.0.1:9115",
        "prometheus-postgres-exporter": "--web.listen-address=127.0.0.1:9187",
        "prometheus-redis-exporter": "--web.listen-address=127.0.0.1:9121",
        # nginx exporter 0.x on both: Go's flag package, one dash.
        "prometheus-nginx-exporter": "-nginx.scrape-uri=http://127.0.0.1:8088/stub_status "
                                     "-web.listen-address=127.0.0.1:9113",
    }


def test_every_listener_is_on_loopback(config):
    args = prometheus.daemon_args(config, ALL, prometheus.FLAVOURS["Debian", 12], ["nginx"])
    for line in args.values():
        for word in line.split():
            if "listen-address=" in word and word.split("=", 1)[1]:
                assert word.split("=", 1)[1].startswith("127.0.0.1:"), word


def test_unknown_distro_stops_the_deploy():
    state = FakeState()
    host = create_host(state, facts={"server.LinuxDistribution": {"name": "CentOS", "major": 9}})
    with ctx_state.use(state), ctx_host.use(host), pytest.raises(DeployError, match="CentOS 9"):
        prometheus.flavour()


# --- what each group runs -----------------------------------------------------------------------


def _on(groups, label=None, address="127.0.0.1"):
    """One host of these groups, as prometheus.targets lists it."""
    return [(tuple(groups), label, address, None)]


def test_packages_by_group(config):
    assert prometheus.packages(config, ["app"]) == [
        "prometheus-node-exporter", "prometheus-blackbox-exporter", "dbus"]
    assert prometheus.packages(config, ["app", "metrics"]) == [
        "prometheus", "prometheus-alertmanager", "prometheus-node-exporter",
        "prometheus-blackbox-exporter", "dbus"]
    everything = prometheus.packages(config, ALL)
    assert {"prometheus-postgres-exporter", "prometheus-redis-exporter",
            "prometheus-nginx-exporter", "mtail", "prometheus"} <= set(everything)


def test_scrape_jobs_by_group(config):
    jobs = {job["name"]: [t["address"] for t in job["targets"]]
            for job in prometheus.scrape_jobs(config, _on(["data", "metrics"]))}
    assert jobs == {"prometheus": ["127.0.0.1:9090"], "alertmanager": ["127.0.0.1:9093"],
                    "node": ["127.0.0.1:9100"], "blackbox": ["127.0.0.1:9115"],
                    "postgres": ["127.0.0.1:9187"], "redis": ["127.0.0.1:9121"]}
    edge = {job["name"] for job in prometheus.scrape_jobs(config, _on(["edge"]))}
    assert {"nginx", "mtail"} <= edge and not {"redis", "prometheus"} & edge


def test_several_hosts_are_scraped_at_their_address_with_their_label(config):
    hosts = [*_on(["edge", "app", "metrics"], "a", "10.0.0.1"), *_on(["data"], "c", "10.0.0.3")]
    jobs = {job["name"]: job["targets"] for job in prometheus.scrape_jobs(config, hosts)}
    assert jobs["node"] == [{"address": "10.0.0.1:9100", "host": "a"},
                            {"address": "10.0.0.3:9100", "host": "c"}]
    # Prometheus itself on the metrics host's loopback; the stores' exporters on c alone.
    assert jobs["prometheus"] == [{"address": "127.0.0.1:9090", "host": "a"}]
    assert jobs["redis"] == [{"address": "10.0.0.3:9121", "host": "c"}]
    # The catalogue's order, whatever the hosts' order.
    assert list(jobs) == ["prometheus", "alertmanager", "node", "blackbox", "postgres",
                          "redis", "nginx", "mtail"]
    probes = prometheus.probes(config, hosts)
    assert {(p["service"], p["host"], p["blackbox"]) for p in probes
            if p["service"] in ("nginx", "weaviate")} == {("nginx", "a", "10.0.0.1:9115"),
                                                         ("weaviate", "c", "10.0.0.3:9115")}


def test_probes_cover_every_health_endpoint_of_the_port_table(config):
    probes = {p["service"]: (p["url"], p["module"]) for p in prometheus.probes(config, _on(ALL))}
    assert probes == {
        "api-0": ("http://127.0.0.1:8000/api/health/", "http_2xx"),
        "api-1": ("http://127.0.0.1:8001/api/health/", "http_2xx"),
        "mcp-memory": ("http://127.0.0.1:8003/health", "http_2xx"),
        "mcp-task": ("http://127.0.0.1:8006/health", "http_2xx"),
        "mcp-agent": ("http://127.0.0.1:8007/health", "http_2xx"),
        "mcp-data": ("http://127.0.0.1:8008/health", "http_2xx"),
        "mcp-monitor": ("http://127.0.0.1:8009/health", "http_2xx"),
        "mcp-memory-1": ("http://127.0.0.1:8013/health", "http_2xx"),
        "mcp-task-1": ("http://127.0.0.1:8016/health", "http_2xx"),
        "mcp-agent-1": ("http://127.0.0.1:8017/health", "http_2xx"),
        "mcp-data-1": ("http://127.0.0.1:8018/health", "http_2xx"),
        "mcp-monitor-1": ("http://127.0.0.1:8019/health", "http_2xx"),
        "admin": ("http://127.0.0.1:3000/", "http_2xx"),
        "weaviate": ("http://127.0.0.1:8080/v1/.well-known/ready", "http_2xx"),
        "nginx": ("https://127.0.0.1:443/api/health/", "https_edge"),
    }


def test_a_sixth_mcp_server_is_probed_with_no_change_here(config):
    servers = {**config.mcp_servers,
               "search": config.mcp_servers["task"].model_copy(update={"port": 8010})}
    probes = prometheus.probes(_with(config, mcp_servers=servers), _on(["app"]))
    assert {"service": "mcp-search", "url": "http://127.0.0.1:8010/health",
            "module": "http_2xx", "host": None, "blackbox": "127.0.0.1:9115"} in probes


def test_plain_http_edge_is_probed_over_http(config):
    probes = prometheus.probes(_with(config, nginx_tls="none"), _on(["edge"]))
    assert probes == [{"service": "nginx", "url": "http://127.0.0.1:80/api/health/",
                       "module": "http_2xx", "host": None, "blackbox": "127.0.0.1:9115"}]


def test_tls_verification_follows_the_certificate(config):
    assert prometheus.skip_tls_verify(config) is True  # selfsigned by default
    assert prometheus.skip_tls_verify(_with(config, nginx_tls="letsencrypt")) is False
    forced = _with(config, prometheus_probe_skip_tls_verify=False)
    assert prometheus.skip_tls_verify(forced) is False


# --- rendered files -----------------------------------------------------------------------------


def _render(src, context, secrets=None):
    render.use_secrets(Secrets("test", secrets or {}))
    return render.render(f"prometheus/{src}", context)


def _prometheus_yml(config, hosts=None):
    hosts = hosts or _on(ALL)
    return _render("etc/prometheus/prometheus.yml.j2", {
        "config": config, "jobs": prometheus.scrape_jobs(config, hosts),
        "probes": prometheus.probes(config, hosts), "rules": prometheus.RULES,
        "host_label": "203.0.113.10", "hosts": len(hosts) > 1})


def test_prometheus_yml_scrapes_loopback_and_probes_through_blackbox(config):
    parsed = yaml.safe_load(_prometheus_yml(config))
    assert parsed["global"]["external_labels"] == {"environment": "prod",
                                                   "host": "203.0.113.10"}
    assert parsed["rule_files"] == ["/etc/prometheus/rules/orchestra.yml"]
    jobs = {job["job_name"]: job for job in parsed["scrape_configs"]}
    assert jobs["redis"]["static_configs"] == [{"targets": ["127.0.0.1:9121"]}]
    probe = jobs["probe"]
    assert probe["metrics_path"] == "/probe"
    assert {"targets": ["http://127.0.0.1:8003/health"],
            "labels": {"service": "mcp-memory", "__param_module": "http_2xx"}} \
        in probe["static_configs"]
    assert probe["relabel_configs"][-1] == {"target_label": "__address__",
                                            "replacement": "127.0.0.1:9115"}


def _rules(config, data=True, edge=True, several=False):
    units = prometheus.watched_units(config, ("app", "data", "edge"), 15)
    return _render("etc/prometheus/rules/orchestra.yml.j2",
                   {"config": config, "data": data, "edge": edge,
                    "units_regex": prometheus.units_regex(units), "several": several})


def _alerts(text):
    return [(rule["alert"], rule["expr"], rule.get("for"))
            for group in yaml.safe_load(text)["groups"] for rule in group["rules"]]


def test_rules_cover_every_alert_of_the_issue(config):
    alerts = _alerts(_rules(config))
    names = {name for name, _, _ in alerts}
    assert names == {"ServiceDown", "HealthProbeFailing", "Nginx5xxRatioHigh", "DiskAlmostFull",
                     "MemoryAlmostFull", "BackupTooOld", "BackupMissing",
                     *ARCHIVE_ALERTS}
    exprs = {expr for _, expr, _ in alerts}
    assert any("> 85" in e and "node_filesystem_avail_bytes" in e for e in exprs)
    assert any("> 90" in e and "MemAvailable" in e for e in exprs)
    assert any(e.endswith("> 0.05") and 'status=~"5.."' in e for e in exprs)
    backup = [(e, f) for n, e, f in alerts if n.startswith("Backup")]
    assert backup == [
        ("time() - orchestra_backup_last_success_timestamp_seconds > 26 * 3600", "5m"),
        # Absent right after the first deploy: an alert only after 26 h without a success.
        ("absent(orchestra_backup_last_success_timestamp_seconds)", "26h"),
    ]


ARCHIVE_ALERTS = {"PostgresArchiveFailing", "PostgresArchiveErrors", "PostgresArchiveTooOld",
                  "PostgresArchiveCheckFailed", "PostgresBaseBackupTooOld", "PostgresWalGrowing",
                  "PostgresArchiveMetricsStale"}


def test_the_archive_alerts_before_the_wal_bound_and_within_minutes(config):
    alerts = {name: (expr, duration) for name, expr, duration in _alerts(_rules(config))}
    assert alerts["PostgresWalGrowing"] == (
        "orchestra_pg_wal_bytes > 0.5 * orchestra_pg_wal_bound_bytes", "2m")
    expr, duration = alerts["PostgresArchiveFailing"]
    assert "orchestra_pg_archive_oldest_pending_seconds > 180" in expr and duration == "1m"
    assert "> 3 * 3600" in alerts["PostgresArchiveTooOld"][0]
    no_archive = {n for n, _, _ in _alerts(_rules(_with(config, pg_archive_enabled=False)))}
    assert not ARCHIVE_ALERTS & no_archive
    app_only = {name for name, _, _ in _alerts(_rules(config, data=False, edge=False))}
    assert not ARCHIVE_ALERTS & app_only


def test_backup_and_5xx_rules_only_where_they_apply(config):
    app_only = {name for name, _, _ in _alerts(_rules(config, data=False, edge=False))}
    assert not {"BackupTooOld", "BackupMissing", "Nginx5xxRatioHigh"} & app_only
    no_backups = {name for name, _, _ in _alerts(_rules(_with(config, backup_enabled=False)))}
    assert not {"BackupTooOld", "BackupMissing"} & no_backups


def test_prometheus_templates_reach_prometheus_unchanged(config):
    text = _rules(config)
    assert "{{ $labels.service }} on {{ $labels.instance }} does not answer" in text


def test_alertmanager_without_webhook_uses_a_null_receiver():
    parsed = yaml.safe_load(_render("etc/prometheus/alertmanager.yml.j2", {"webhook": False}))
    assert parsed["route"]["receiver"] == "null"
    assert parsed["receivers"] == [{"name": "null"}]


def test_alertmanager_webhook_is_a_secret_masked_in_diffs():
    context = {"webhook": True}
    parsed = yaml.safe_load(_render("etc/prometheus/alertmanager.yml.j2", context,
                                    {"alert_webhook_url": WEBHOOK}))
    assert parsed["route"]["receiver"] == "webhook"
    slack = parsed["receivers"][1]["slack_configs"][0]
    assert slack["api_url"] == WEBHOOK and slack["send_resolved"] is True
    masked = render.render("prometheus/etc/prometheus/alertmanager.yml.j2", context, masked=True)
    assert WEBHOOK not in masked and f"{MASK}(alert_webhook_url)" in masked


def test_webhook_is_optional():
    render.use_secrets(Secrets("test", {}))
    assert prometheus.webhook_configured() is False
    render.use_secrets(Secrets("test", {"alert_webhook_url": WEBHOOK}))
    assert prometheus.webhook_configured() is True


def test_exporter_passwords_stay_in_root_only_env_files(config):
    secrets = {"postgres_exporter_password": "pg-secret-" + "x" * 20,
               "redis_exporter_password": "redis-secret-" + "y" * 20}
    context = {"config": config, "args": "--web.listen-address=127.0.0.1:9187",
               "user": "prometheus"}
    pg = _render("etc/default/prometheus-postgres-exporter.j2", context, secrets)
    assert ("DATA_SOURCE_NAME='postgresql://prometheus:pg-secret-" + "x" * 20 +
            "@localhost:5432/postgres?host=/run/postgresql&sslmode=disable'") in pg
    assert 'ARGS="--web.listen-address=127.0.0.1:9187"' in pg
    redis = _render("etc/default/prometheus-redis-exporter.j2", context, secrets)
    assert "REDIS_USER=prometheus\n" in redis
    assert "REDIS_PASSWORD=redis-secret-" + "y" * 20 + "\n" in redis
    # The ARGS (visible in ps) never hold a password.
    assert all("secret" not in line for line in (pg + redis).splitlines()
               if line.startswith("ARGS="))


def test_blackbox_skips_verification_only_when_told(config):
    skipped = yaml.safe_load(_render("etc/prometheus/blackbox.yml.j2",
                                     {"config": config, "skip_verify": True}))
    tls = skipped["modules"]["https_edge"]["http"]["tls_config"]
    assert tls == {"insecure_skip_verify": True}
    named = _with(config, nginx_tls="letsencrypt", nginx_server_name="orchestra.example.com")
    verified = yaml.safe_load(_render("etc/prometheus/blackbox.yml.j2",
                                      {"config": named, "skip_verify": False}))
    assert verified["modules"]["https_edge"]["http"]["tls_config"] == {
        "insecure_skip_verify": False, "server_name": "orchestra.example.com"}


# --- schema -------------------------------------------------------------------------------------


def test_metrics_ports_are_in_the_port_table(config):
    table = config.port_table()
    for key, port in {"prometheus_port": 9090, "alertmanager_port": 9093,
                      "node_exporter_port": 9100, "postgres_exporter_port": 9187,
                      "redis_exporter_port": 9121, "nginx_exporter_port": 9113,
                      "blackbox_exporter_port": 9115, "mtail_port": 3903}.items():
        assert table[key] == port


def test_bad_metrics_settings_are_named():
    data = config_module.environment_data("prod", {
        "weaviate_sha256": "ab" * 32, "prometheus_retention_size": "2G",
        "prometheus_alert_5xx_ratio": 0, "node_exporter_port": 9090})
    with pytest.raises(ConfigError) as e:
        validate(data, NAMES)
    text = "\n".join(e.value.problems)
    assert "prometheus_retention_size: '2G' does not match" in text
    assert "prometheus_alert_5xx_ratio" in text
    data = config_module.environment_data("prod", {"weaviate_sha256": "ab" * 32,
                                                   "node_exporter_port": 9090})
    with pytest.raises(ConfigError, match="node_exporter_port: 9090 is already used by "
                                          "prometheus_port"):
        validate(data, NAMES)


# --- the pg_monitor grant -----------------------------------------------------------------------


def _grant(member_of_now):
    state = FakeState()
    host = create_host(state, facts={"facts.PostgresRoleMembership": {
        "role=prometheus": member_of_now}})
    with ctx_state.use(state), ctx_host.use(host):
        commands = list(prometheus.role_membership._inner(role="prometheus",
                                                          member_of="pg_monitor"))
    return [str(c) for c in parse_commands(commands)], host


def test_pg_monitor_is_granted_once():
    commands, _ = _grant([])
    assert commands == ["sh -c 'cd / && runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 "
                        "-d postgres -c \"GRANT \\\"pg_monitor\\\" TO \\\"prometheus\\\"\"'"]
    commands, host = _grant(["pg_monitor"])
    assert commands == []
    assert host.noop_description == "prometheus is a member of pg_monitor"


# --- the real tools, when this machine has them (Debian: prometheus, prometheus-alertmanager,
# mtail) -----------------------------------------------------------------------------------------


def _tool(name):
    path = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if not path:
        if os.environ.get("CI"):  # scripts/setup installs them: never skip there
            pytest.fail(f"{name} is not installed (scripts/setup unpacks it into .venv/bin)")
        pytest.skip(f"{name} is not installed")
    return path


def test_promtool_accepts_config_and_rules(config, tmp_path):
    promtool = _tool("promtool")
    rules = tmp_path / "orchestra.yml"
    rules.write_text(_rules(config))
    (tmp_path / "several-rules.yml").write_text(_rules(config, several=True))
    several = [*_on(["edge", "app", "metrics"], "203.0.113.10", "10.210.0.1"),
               *_on(["app"], "203.0.113.11", "10.210.0.2"),
               *_on(["data"], "203.0.113.12", "10.210.0.3")]
    for name, hosts in (("prometheus.yml", None), ("several.yml", several)):
        text = _prometheus_yml(config, hosts).replace(prometheus.RULES, str(rules))
        (tmp_path / name).write_text(text)
    for args in (["check", "rules", str(rules)],
                 ["check", "rules", str(tmp_path / "several-rules.yml")],
                 ["check", "config", str(tmp_path / "prometheus.yml")],
                 ["check", "config", str(tmp_path / "several.yml")]):
        result = subprocess.run([promtool, *args], capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr


def test_rules_fire_as_intended(config, tmp_path):
    """promtool's rule unit tests: a stopped Redis, a failing probe, a full disk, a stale
    backup and a first deploy that has not backed up yet."""
    promtool = _tool("promtool")
    (tmp_path / "orchestra.yml").write_text(_rules(config))
    (tmp_path / "test.yml").write_text(textwrap.dedent("""\
        rule_files: [orchestra.yml]
        evaluation_interval: 1m
        tests:
          - interval: 1m
            input_series:
              - series: 'redis_up{job="redis", instance="127.0.0.1:9121"}'
                values: '1 0 0 0'
              - series: 'probe_success{job="probe", service="mcp-task", instance="http://127.0.0.1:8006/health"}'
                values: '0x4'
              - series: 'node_filesystem_avail_bytes{fstype="ext4", mountpoint="/"}'
                values: '10x10'
              - series: 'node_filesystem_size_bytes{fstype="ext4", mountpoint="/"}'
                values: '100x10'
              - series: 'orchestra_backup_last_success_timestamp_seconds'
                values: '0x10'
              # A unit of the stack stopped, and one of the host's own units inactive (a
              # freshly installed exporter reports every unit): only the first alerts.
              - series: 'node_systemd_unit_state{name="weaviate.service", state="active"}'
                values: '1 0 0 0'
              - series: 'node_systemd_unit_state{name="rescue.service", state="active"}'
                values: '0x4'
            alert_rule_test:
              - eval_time: 3m
                alertname: ServiceDown
                exp_alerts:
                  - exp_labels: {severity: critical, service: redis, job: redis,
                                 instance: "127.0.0.1:9121"}
                    exp_annotations: {summary: "redis is down: its exporter cannot reach it"}
                  - exp_labels: {severity: critical, service: weaviate, name: weaviate.service,
                                 state: active}
                    exp_annotations: {summary: "systemd unit weaviate.service is not active"}
              - eval_time: 3m
                alertname: HealthProbeFailing
                exp_alerts:
                  - exp_labels: {severity: critical, service: mcp-task, job: probe,
                                 instance: "http://127.0.0.1:8006/health"}
                    exp_annotations:
                      summary: "mcp-task health check http://127.0.0.1:8006/health fails"
              - eval_time: 6m
                alertname: DiskAlmostFull
                exp_alerts:
                  - exp_labels: {severity: warning, service: disk, fstype: ext4, mountpoint: /}
                    exp_annotations: {summary: "/ is 90 % full (over 85 %)"}
          - interval: 5m
            input_series:
              - series: 'orchestra_backup_last_success_timestamp_seconds'
                values: '0x400'
            alert_rule_test:
              - eval_time: 25h
                alertname: BackupTooOld
                exp_alerts: []
              - eval_time: 28h
                alertname: BackupTooOld
                exp_alerts:
                  - exp_labels: {severity: critical, service: backup}
                    exp_annotations:
                      summary: "the last successful backup is 1d 4h 0m 0s old (over 26 h)"
          - interval: 1h
            input_series:
              - series: 'up{job="node"}'
                values: '1x30'
            alert_rule_test:
              - eval_time: 25h
                alertname: BackupMissing
                exp_alerts: []
              - eval_time: 27h
                alertname: BackupMissing
                exp_alerts:
                  - exp_labels: {severity: critical, service: backup}
                    exp_annotations: {summary: "no successful backup recorded in 26 h"}
        """))
    result = subprocess.run([promtool, "test", "rules", "test.yml"], cwd=tmp_path,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_amtool_accepts_both_alertmanager_configs(tmp_path):
    amtool = _tool("amtool")
    for webhook in (False, True):
        path = tmp_path / f"alertmanager-{webhook}.yml"
        path.write_text(_render("etc/prometheus/alertmanager.yml.j2", {"webhook": webhook},
                                {"alert_webhook_url": WEBHOOK}))
        result = subprocess.run([amtool, "check-config", str(path)], capture_output=True,
                                text=True)
        assert result.returncode == 0, result.stdout + result.stderr


def test_mtail_counts_statuses_and_each_upstreams_time_from_the_sites_log_format(tmp_path):
    """The rendered mtail program over lines in the format the site's nginx writes (the
    log_format rendered, filled in as nginx would): statuses, and the time of the upstream
    that answered, the last one after a retry."""
    mtail = _tool("mtail")
    progs = tmp_path / "progs"
    progs.mkdir()
    (progs / "orchestra-nginx.mtail").write_text(
        render.render("prometheus/etc/mtail/orchestra-nginx.mtail.j2", {}))
    http_level = render.render("nginx/etc/nginx/conf.d/orchestra.conf.j2", {
        "config": validate(config_module.environment_data("sandbox"), NAMES),
        "api_servers": ["127.0.0.1:8000"], "admin_servers": ["127.0.0.1:3000"],
        "mcp_servers": {}})
    log_format = "".join(re.findall(r"'([^']*)'", http_level.split("log_format orchestra", 1)[1]
                                    .split(";", 1)[0]))
    fields = {"remote_addr": "192.0.2.1", "remote_user": "-", "time_local":
              "30/Nov/2026:09:00:00 +0000", "request": "GET /api/health/ HTTP/2.0",
              "body_bytes_sent": "15", "http_referer": "-", "http_user_agent": "curl/7.81.0"}

    def line(status, upstream, seconds):
        values = {**fields, "status": status, "upstream_addr": upstream,
                  "upstream_response_time": seconds}
        return re.sub(r"\$(\w+)", lambda m: values[m.group(1)], log_format)

    log = tmp_path / "access.log"
    log.write_text("\n".join([line("200", "127.0.0.1:8000", "0.004"),
                              line("200", "127.0.0.1:8001, 127.0.0.1:8000", "5.001, 0.020"),
                              line("301", "-", "-"), line("502", "127.0.0.1:8001", "0.300")])
                   + "\n")
    result = subprocess.run([mtail, "--progs", str(progs), "--logs", str(log), "--one_shot",
                             "--one_shot_format", "prometheus", "--logtostderr"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = {}
    for printed in result.stdout.splitlines():
        if printed and not printed.startswith("#"):
            key, value = printed.rsplit(" ", 1)
            metrics[re.sub(r'prog="[^"]*",?', "", key)] = float(value)
    assert metrics['orchestra_nginx_responses_total{status="200"}'] == 2
    assert metrics['orchestra_nginx_responses_total{status="301"}'] == 1
    count = 'orchestra_nginx_upstream_seconds_count{upstream="%s"}'
    assert metrics[count % "127.0.0.1:8000"] == 2
    assert metrics[count % "127.0.0.1:8001"] == 1
    assert metrics['orchestra_nginx_upstream_seconds_sum{upstream="127.0.0.1:8000"}'] == \
        pytest.approx(0.024)
    assert metrics['orchestra_nginx_upstream_seconds_bucket{upstream="127.0.0.1:8001",'
                   'le="0.25"}'] == 0
