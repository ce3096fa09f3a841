"""The configuration schema: every environment validates, every bad input is named exactly."""

import os

import pytest
from click.testing import CliRunner

from orchestra_infra import config, secrets
from orchestra_infra.cli import main
from orchestra_infra.errors import ConfigError
from orchestra_infra.schema import Config, parse_size, validate

PINNED = {"weaviate_sha256": "0" * 64}  # real environments pin the release's checksum


def _problems(env="prod", **overrides):
    with pytest.raises(ConfigError) as raised:
        validate({**config.environment_data(env), **PINNED, **overrides}, secrets.NAMES)
    return raised.value.problems


@pytest.mark.parametrize("env", ["prod", "staging", "sandbox"])
def test_every_environment_validates(env):
    data = {**config.environment_data(env), **(PINNED if env != "sandbox" else {})}
    assert validate(data, secrets.NAMES).environment == env


def test_weaviate_download_needs_a_pinned_checksum():
    with pytest.raises(ConfigError) as raised:
        validate(config.environment_data("prod"), secrets.NAMES)
    assert raised.value.problems == [
        "weaviate_sha256: required to download Weaviate 1.38.2: copy it from the release's "
        "weaviate-v1.38.2-linux-amd64.tar.gz.sha256"
    ]


def test_all_py_documents_every_key():
    """Each key has a comment above it, or sits in a block of one-line keys under one."""
    source = (config.project_root() / "group_data" / "all.py").read_text().splitlines()
    for number, line in enumerate(source):
        if line and line[0].isalpha() and " = " in line:
            above = source[number - 1]
            documented = above.startswith("#") or (above[:1].isalpha() and " = " in above)
            assert documented, f"group_data/all.py:{number + 1} ({line}) has no comment"


NODE_URL = ("a plain https URL (https://host[:port]/path; letters, digits and . _ ~ % / - in "
            "the path)")
CONTROL = "contains the control character "
CONTROL_END = (": no value may hold a newline, carriage return, NUL, escape or other control "
               "character")
BAD_INPUTS = [
    # Hostile input (issue 11): the rules every value obeys. The corpus in
    # tests/unit/hostile_corpus.py tries each against every template and command.
    ({"backup_host_name": "gpu-1\nExecStart=/bin/sh"}, f"backup_host_name: {CONTROL}'\\n'"
     f"{CONTROL_END}"),
    ({"postgres_roles": [{"name": "x\x1b[31m", "password_secret": "postgres_app_password"}]},
     f"postgres_roles[0].name: {CONTROL}'\\x1b'{CONTROL_END}"),
    ({"install_root": "/opt"}, "install_root: '/opt' is a system directory: the deploy chowns "
     "and chmods this directory, so name a dedicated subdirectory (e.g. /opt/orchestra)"),
    ({"backup_work_dir": "/var/backups"}, "backup_work_dir: '/var/backups' is a system "
     "directory: the deploy chowns and chmods this directory, so name a dedicated "
     "subdirectory (e.g. /var/backups/orchestra)"),
    ({"log_root": "/srv/../var/log"},
     "log_root: '/srv/../var/log' is not a normalised path (write '/var/log')"),
    ({"service_user": "root"}, "service_user: 'root' is reserved: the service user owns the "
     "app's files; never root, the login user or nobody"),
    ({"redis_app_user": "default"}, "redis_app_user: 'default' is reserved: Redis's own user "
     "and the ones this deploy defines"),
    ({"postgres_roles": [{"name": "pg_monitor", "password_secret": "postgres_app_password"}],
      "postgres_databases": [{"name": "orchestra", "owner": "orchestra"}]},
     "postgres_roles[0].name: 'pg_monitor' is reserved: PostgreSQL's own (postgres, pg_*, "
     "public) or the metrics exporter's role"),
    ({"postgres_databases": [{"name": "postgres", "owner": "orchestra"}]},
     "postgres_databases[0].name: 'postgres' is reserved: PostgreSQL's own database"),
    ({"base_packages": ["curl", "-oAPT::Update::Pre-Invoke::=id"]},
     "base_packages[1]: '-oAPT::Update::Pre-Invoke::=id' is not a Debian package name (lower "
     "case letters, digits, + - .; starting with a letter or digit)"),
    ({"weaviate_url": "http://example.com/w.tgz"}, "weaviate_url: 'http://example.com/w.tgz' "
     "is not https: plain http is accepted only on loopback"),
    ({"nginx_letsencrypt_email": "ops@example.com;id"},
     "nginx_letsencrypt_email: 'ops@example.com;id' is not an e-mail address "
     "(name@example.com)"),
    ({"api_port": 80}, "api_port: 80 is below 1024: an internal service's port is 1024-65535 "
     "(it runs unprivileged)"),
    ({"postgres_work_mem": "32K"}, "postgres_work_mem: '32K' is below PostgreSQL's minimum "
     "of 64kB"),
    ({"postgres_version": 12, "postgres_apt_repository": "https://apt.example.com/pg",
      "postgres_apt_key_url": "https://apt.example.com/key.asc"},
     "postgres_version: 12 must be at least 13"),
    ({"app_source": "--upload-pack=touch /tmp/pwn"}, "app_source: '--upload-pack=touch "
     "/tmp/pwn' is not a checkout path (letters, digits and . _ - + @ /, no .., not starting "
     "with -) nor a git URL"),
    ({"postgress_port": 5432}, "postgress_port: unknown key (did you mean postgres_port?)"),
    ({"redis_port": "6379"}, "redis_port: expected an integer, got str '6379'"),
    ({"api_port": 70000}, "api_port: 70000 is not a valid port (1-65535)"),
    ({"firewall_allow_tcp_ports": [8443, 0]},
     "firewall_allow_tcp_ports[1]: 0 is not a valid port (1-65535)"),
    ({"redis_port": 5432}, "redis_port: 5432 is already used by postgres_port"),
    ({"mcp_servers": {"memory": {"port": 8003}, "task": {"port": 8003}}},
     "mcp_servers.task.port: 8003 is already used by mcp_servers.memory"),
    ({"admin_port": 8001}, "admin_port: 8001 is already used by api_port+1"),
    ({"admin_port": 8013},
     "mcp_servers.memory.port (instance 1: + 1 * mcp_instance_port_step): 8013 is already "
     "used by admin_port"),
    ({"mcp_instance_port_step": 6},
     "mcp_servers.monitor.port: 8009 is already used by mcp_servers.memory+1"),
    ({"mcp_instances": 9}, "mcp_instances: 9 must be at most 8"),
    ({"mcp_servers": {"memory": {"port": 8003, "workers": 2}}},
     "mcp_servers.memory.workers: unknown key"),
    ({"journald_max_use": "1.5G"},
     "journald_max_use: '1.5G' is not a size (use a whole number and K, M, G or T: 512M, 2G)"),
    ({"timezone": "Mars/Olympus"},
     "timezone: 'Mars/Olympus' is not a known time zone (e.g. UTC, Europe/Berlin)"),
    ({"locale": "en_US.ISO-8859-1"},
     "locale: 'en_US.ISO-8859-1' is not a UTF-8 locale (e.g. en_US.UTF-8, C.UTF-8)"),
    ({"extra_ca_certificates": ["/nonexistent/corp-ca.crt"]},
     "extra_ca_certificates[0]: cannot read /nonexistent/corp-ca.crt: No such file or directory"),
    ({"install_root": "opt/orchestra"}, "install_root: 'opt/orchestra' is not an absolute path"),
    ({"config_root": "/etc/orchestra/"},
     "config_root: '/etc/orchestra/' is not a normalised path (write '/etc/orchestra')"),
    ({"log_root": "/var/log//orchestra"},
     "log_root: '/var/log//orchestra' is not a normalised path (write '/var/log/orchestra')"),
    ({"state_root": "/var/lib/../lib/orchestra-infra"},
     "state_root: '/var/lib/../lib/orchestra-infra' is not a normalised path "
     "(write '/var/lib/orchestra-infra')"),
    ({"install_root": "//opt/orchestra"},
     "install_root: '//opt/orchestra' is not a normalised path (write '/opt/orchestra')"),
    ({"config_root": "/"}, "config_root: '/' is the filesystem root, not a directory of its own"),
    ({"install_root": "/opt/my orchestra"},
     "install_root: '/opt/my orchestra' has a character other than letters, digits and "
     ". _ - + @ /"),
    ({"require_gpu": "yes"}, "require_gpu: expected true or false, got str 'yes'"),
    ({"firewall_trusted_networks": ["10.0.0.0/33"]},
     "firewall_trusted_networks[0]: '10.0.0.0/33' is not an IP address or network"),
    ({"api_instances": 0}, "api_instances: 0 must be at least 1"),
    ({"service_user": "Orchestra!"},
     "service_user: 'Orchestra!' is not a valid user or group name"),
    ({"base_packages": "curl"}, "base_packages: expected a list, got str 'curl'"),
    ({"redis_maxmemory": "lots"},
     "redis_maxmemory: 'lots' is not a size (use a whole number and K, M, G or T: 512M, 2G)"),
    ({"redis_maxmemory_policy": "lru"},
     "redis_maxmemory_policy: 'lru' is not one of 'noeviction', 'allkeys-lru', 'allkeys-lfu', "
     "'allkeys-random', 'volatile-lru', 'volatile-lfu', 'volatile-random' or 'volatile-ttl'"),
    ({"postgres_databases": [{"name": "orchestra", "owner": "orchestra"},
                             {"name": "orchestra", "owner": "orchestra"}]},
     "postgres_databases[1].name: 'orchestra' is defined twice"),
    ({"postgres_roles": [
        {"name": "orchestra", "password_secret": "postgres_app_password"},
        {"name": "orchestra", "password_secret": "postgres_app_password"}]},
     "postgres_roles[1].name: 'orchestra' is defined twice"),
    ({"postgres_roles": [{"name": "orchestra", "password_secret": "postgres_app_password",
                          "connect": ["analytics"]}]},
     "postgres_roles[0].connect: database 'analytics' is not in postgres_databases"),
    ({"postgres_databases": [{"name": "orchestra", "owner": "ghost"}]},
     "postgres_databases[0].owner: role 'ghost' is not in postgres_roles"),
    ({"postgres_roles": [{"name": "orchestra", "password_secret": "db_password"}]},
     "postgres_roles[0].password_secret: 'db_password' is not a secret orchestra-infra knows"),
    ({"postgres_version": 16},
     "postgres_version: pinning a major version needs postgres_apt_repository "
     "(the distro ships one version)"),
    ({"weaviate_sha256": "ABC"}, "weaviate_sha256: 'ABC' does not match ^[0-9a-f]{64}$"),
    ({"weaviate_source": "upload", "weaviate_local_tarball": None},
     "weaviate_local_tarball: required when weaviate_source is 'upload'"),
    ({"monit_paused": ["redsi"]},
     "monit_paused[0]: 'redsi' is not a service Monit watches (did you mean redis?)"),
    ({"node_source": "nvm"}, "node_source: 'nvm' is not one of 'nodesource' or 'distro'"),
    ({"node_major": 12}, "node_major: 12 must be at least 18"),
    ({"apt_lock_timeout": -1}, "apt_lock_timeout: -1 must be at least 0"),
    ({"apt_lock_timeout": "600"}, "apt_lock_timeout: expected an integer, got str '600'"),
    ({"node_apt_repository": "https://node.invalid/node_22.x"},
     "node_apt_repository: set it together with node_apt_key_url"),
    # An extra line or word in the apt source, or a shell word in the key download.
    ({"node_apt_repository": "https://node.invalid/node_22.x\ndeb http://evil.invalid/ x main",
      "node_apt_key_url": "https://node.invalid/key"},
     f"node_apt_repository: {CONTROL}'\\n'{CONTROL_END}"),
    ({"node_apt_repository": "https://node.invalid/node_22.x nodistro main [trusted=yes]",
      "node_apt_key_url": "https://node.invalid/key"},
     "node_apt_repository: 'https://node.invalid/node_22.x nodistro main [trusted=yes]' "
     f"is not {NODE_URL}"),
    ({"node_apt_repository": "https://node.invalid/node_22.x",
      "node_apt_key_url": "https://node.invalid/key;id"},
     f"node_apt_key_url: 'https://node.invalid/key;id' is not {NODE_URL}"),
    ({"node_apt_repository": "https://node.invalid/node_22.x\n",
      "node_apt_key_url": "https://node.invalid/key"},
     f"node_apt_repository: {CONTROL}'\\n'{CONTROL_END}"),
    ({"node_apt_repository": "http://node.invalid/node_22.x",
      "node_apt_key_url": "https://node.invalid/key"},
     "node_apt_repository: 'http://node.invalid/node_22.x' is not https: plain http is "
     "accepted only on loopback or a private network's IP address"),
    ({"app_source": "git@git.example.invalid:org/orchestra.git",
      "app_source_known_hosts": ["git.example.invalid ssh-ed25519 AAAA"]},
     "app_source_ref: required when app_source is a git URL (a branch, tag or commit)"),
    ({"app_source": "ssh://git@git.example.invalid/org/orchestra.git", "app_source_ref": "main"},
     "app_source_known_hosts: required for an SSH git URL (the git host's key lines, as "
     "`ssh-keyscan HOST` prints them)"),
]


@pytest.mark.parametrize(("override", "message"), BAD_INPUTS,
                         ids=[m.split(":")[0] for _, m in BAD_INPUTS])
def test_bad_input_is_named_exactly(override, message):
    assert _problems(**override) == [message]


def test_unreadable_and_non_pem_ca_files(tmp_path):
    not_pem = tmp_path / "ca.crt"
    not_pem.write_text("hello\n")
    assert _problems(extra_ca_certificates=[str(not_pem)]) == [
        f"extra_ca_certificates[0]: {not_pem} holds no PEM certificate"
    ]
    locked = tmp_path / "locked.crt"
    locked.write_text("-----BEGIN CERTIFICATE-----\n")
    locked.chmod(0)
    if os.access(locked, os.R_OK):  # root reads anything: nothing more to check here
        return
    (problem,) = _problems(extra_ca_certificates=[str(locked)])
    assert problem.startswith(f"extra_ca_certificates[0]: cannot read {locked}: ")


def test_every_problem_is_reported_at_once():
    problems = _problems(api_port=0, sshd_port="22", nginx_port=80)
    assert problems == [
        "api_port: 0 is below 1024: an internal service's port is 1024-65535 (it runs "
        "unprivileged)",
        "sshd_port: expected an integer, got str '22'",
        "nginx_port: unknown key (did you mean nginx_http_port?)",
    ]


def test_pyinfra_connection_keys_are_not_ours():
    data = {**config.environment_data("prod"), **PINNED, "ssh_user": "ubuntu", "_sudo": True,
            "sandbox_name": "orch-1"}
    assert validate(data, secrets.NAMES).sshd_port == 22


def test_secret_names_come_from_the_caller():
    data = {**config.environment_data("prod"), **PINNED}
    with pytest.raises(ConfigError) as raised:
        validate(data, secrets.NAMES - {"postgres_app_password"})
    assert raised.value.problems == [
        "postgres_roles[0].password_secret: 'postgres_app_password' is not a secret "
        "orchestra-infra knows"
    ]


def test_unknown_environment():
    with pytest.raises(ConfigError) as raised:
        config.environment_data("prdo")
    assert raised.value.problems == [
        "environment: unknown environment 'prdo' (known: prod, sandbox, staging)"
    ]


def test_sizes():
    assert parse_size("512M") == 512 << 20
    assert parse_size("2G") == 2 << 30


def test_port_table_feeds_the_firewall():
    cfg = validate({**config.environment_data("prod"), **PINNED,
                    "firewall_allow_tcp_ports": [8443]}, secrets.NAMES)
    assert cfg.public_tcp_ports() == [22, 80, 443, 8443]
    assert cfg.port_table()["api_port+1"] == 8001
    assert cfg.port_table()["mcp_servers.monitor"] == 8009


# --- orchestra-infra check ---------------------------------------------------------------------


def test_check_valid(secrets_dir):
    secrets.init("staging")
    pinned = f"weaviate_sha256={'ab' * 32}"
    result = CliRunner().invoke(main, ["check", "staging", "--data", pinned])
    assert result.exit_code == 0, result.output
    data = {**config.environment_data("staging"), "weaviate_sha256": "ab" * 32}
    settings, ports = len(Config.model_fields), len(validate(data, secrets.NAMES).port_table())
    generated = len([s for s in secrets.SPECS if s.generate])
    assert result.output == (f"staging: valid ({settings} settings, {ports} ports, "
                             f"{generated} secrets)\n")


def test_check_reports_data_and_secret_problems_together(secrets_dir):
    result = CliRunner().invoke(main, ["check", "prod", "--data", "redis_port=99999"])
    assert result.exit_code == 2
    lines = result.output.splitlines()
    assert lines[0] == "redis_port: 99999 is not a valid port (1-65535)"
    assert lines[1].startswith("secrets.postgres_app_password: missing (run 'orchestra-infra "
                               "secrets init prod' or set ORCHESTRA_SECRET_POSTGRES_APP_PASSWORD)")


def test_check_rejects_malformed_data_override(secrets_dir):
    result = CliRunner().invoke(main, ["check", "prod", "--data", "redis_port"])
    assert result.exit_code == 2
    assert result.output == "--data 'redis_port': expected key=value\n"


def test_check_unknown_environment(secrets_dir):
    result = CliRunner().invoke(main, ["check", "production"])
    assert result.exit_code == 2
    assert "unknown environment 'production'" in result.output


def test_the_login_user_is_not_the_service_user():
    assert _problems(service_user="deploy", ssh_user="deploy") == [
        "service_user: 'deploy' is the login user (ssh_user): the service user owns the "
        "app's files and must be a user of its own"]


def test_postgres_sizes_keep_their_unit():
    """512K must not round down to 0MB: sizes reach postgresql.conf in kB unless whole MB."""
    from operations.postgres import tuning

    cfg = validate({**config.environment_data("prod"), **PINNED, "postgres_work_mem": "512K",
                    "postgres_maintenance_work_mem": "1536K",
                    "postgres_shared_buffers": "1G"}, secrets.NAMES)
    settings = tuning(cfg, 8192)
    assert settings["work_mem"] == "512kB"
    assert settings["maintenance_work_mem"] == "1536kB"
    assert settings["shared_buffers"] == "1024MB"


def test_a_secret_outside_its_character_set_is_named_not_shown(tmp_path, monkeypatch):
    env = {secrets.env_var(s.name): f"valid-{s.name}-0123456789" for s in secrets.SPECS
           if s.required}
    env["ORCHESTRA_SECRET_REDIS_APP_PASSWORD"] = "A1b2C3d4E5f6G7h8$(reboot)"
    env["ORCHESTRA_SECRET_ALERT_WEBHOOK_URL"] = "https://hooks.example.com/x'\nrm -rf /"
    monkeypatch.setenv("ORCHESTRA_SECRETS_DIR", str(tmp_path))
    with pytest.raises(ConfigError) as raised:
        secrets.load("prod", env)
    assert raised.value.problems == [
        "secrets.redis_app_password: has a character outside its set (letters, digits and "
        ". _ ~ - (what `secrets init` generates)); no control character, quote, space, $ or "
        "backslash",
        "secrets.alert_webhook_url: has a character outside its set (an https URL (http only "
        "on loopback) without quotes, spaces, $ or backslashes); no control character, quote, "
        "space, $ or backslash"]
    assert "reboot" not in " ".join(raised.value.problems)


def test_generated_secrets_keep_to_their_character_set():
    for _ in range(50):
        assert secrets.character_problems(secrets.SPEC_BY_NAME["monit_password"],
                                          secrets.generate()) == []
