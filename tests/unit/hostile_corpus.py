"""Hostile values for every kind of key the data and the secrets hold (issue 11, section 1).

Each case names the key the check must name when it refuses the value, the value, the data
overrides (or secrets) that carry it, and a benign value of the same kind: when the value is
accepted, the deploy is captured with it and with the benign one, and the two must differ
only inside one shell word or one config value (tests/unit/test_hostile_input.py).

Grow it whenever a key appears: add its values to the block of its kind.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent.parent
# A git source the deploy can fetch without a network: the reference app, with the branches
# the cases name (make_local_repository).
LOCAL_REPOSITORY = ROOT / "build" / "hostile-app.git"


def make_local_repository() -> None:
    """The reference app as a bare git repository with branches main and release/1.2.0."""
    if (LOCAL_REPOSITORY / "HEAD").exists():
        return
    work = LOCAL_REPOSITORY.with_name("hostile-app.work")
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(ROOT / "app", work, ignore=shutil.ignore_patterns(
        "node_modules", "__pycache__", ".venv"))
    git = ["git", "-c", "user.name=hostile", "-c", "user.email=hostile@example.com",
           "-c", "init.defaultBranch=main", "-C", str(work)]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "app"],
                 ["branch", "release/1.2.0"]):
        subprocess.run([*git, *args], check=True, capture_output=True)
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(LOCAL_REPOSITORY)],
                   check=True, capture_output=True)
    shutil.rmtree(work)

# The markers: a new line, a new shell command or word, a new config directive, an option.
NEWLINE = "x\ninjected"
CRLF = "x\r\ninjected"
NUL = "x\x00y"
ESCAPE = "x\x1b[31m"
LINE_SEPARATOR = "x\u2028y"
SEMICOLON = "x;touch /tmp/pwn"
SUBSTITUTION = "$(id)"
BACKTICKS = "`id`"
DOUBLE_QUOTE = 'x" ; include /etc/passwd ; "'
SINGLE_QUOTE = "x' ; id ; '"
SPACE = "x y"
OPTION = "--upload-pack=touch /tmp/pwn"
PIPE = "x|id"
AND = "x&&id"
REDIRECT = "x>/etc/passwd"
COMMENT = "x#comment"
BRACE = "x}"
SPECIFIER = "%h"
BACKSLASH = "x\\"
GLOB = "*"
EMPTY = ""

CONTROL = [NEWLINE, CRLF, NUL, ESCAPE, LINE_SEPARATOR]
SHELL = [SEMICOLON, SUBSTITUTION, BACKTICKS, DOUBLE_QUOTE, SINGLE_QUOTE, SPACE, PIPE, AND,
         REDIRECT]


@dataclass(frozen=True)
class Case:
    kind: str
    key: str  # what a refusal must name (the start of the problem line)
    value: Any
    benign: Any
    build: Callable[[Any], dict] | None = None  # value -> data overrides
    secret: str | None = None  # a secret's name: the value is ORCHESTRA_SECRET_<NAME>
    extra: dict = field(default_factory=dict)  # overrides the case needs besides its value
    extra_secrets: dict = field(default_factory=dict)  # secrets the case needs besides it

    def data(self, value=None) -> dict:
        value = self.value if value is None else value
        if self.secret:
            return dict(self.extra)
        built = self.build(value) if self.build else {self.key: value}
        return {**self.extra, **built}

    def secrets(self, value=None) -> dict:
        value = self.value if value is None else value
        return {**self.extra_secrets, **({self.secret: value} if self.secret else {})}

    def label(self) -> str:
        return f"{self.kind}:{self.key}={self.value!r}"


def _cases(kind, key, values, benign, build=None, secret=None, extra=None,
           extra_secrets=None) -> list[Case]:
    if extra is SFTP:
        extra_secrets = {"restic_sftp_private_key": SFTP_KEY}
    return [Case(kind, key, v, benign, build, secret, extra or {}, extra_secrets or {})
            for v in values]


def _listed(key):
    return lambda value: {key: [value]}


def _in_roles(field_name):
    def build(value):
        role = {"name": "orchestra", "password_secret": "postgres_app_password"}
        db = {"name": "orchestra", "owner": "orchestra"}
        if field_name == "role":
            role["name"] = value
            db["owner"] = value
        else:
            db["name"] = value
            role["connect"] = [value]
        return {"postgres_roles": [role], "postgres_databases": [db]}
    return build


def _mcp_name(value):
    return {"mcp_servers": {"memory": {"port": 8003}, value: {"port": 8006}}}


def _mcp_port(value):
    return {"mcp_servers": {"memory": {"port": 8003}, "task": {"port": value}}}


def _sysctl_key(value):
    return {"sysctl_settings": {"vm.swappiness": 10, value: 1}}


def _sysctl_value(value):
    return {"sysctl_settings": {"vm.swappiness": 10, "net.ipv4.tcp_rmem": value}}


SMTP = {"alert_smtp_host": "smtp.example.com"}
SFTP = {"restic_repository": "sftp:backup@backup.example.com:/srv/restic"}
SFTP_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nYmVuaWdu\n-----END OPENSSH PRIVATE KEY-----\n"
KEY = "AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForTests"

NAMES = [
    *_cases("name", "service_user", [*CONTROL, *SHELL, OPTION, "root", "ubuntu", "nobody",
                                     "Orchestra", "a" * 40, "app-user_2"], "orch-svc"),
    *_cases("name", "redis_app_user", [NEWLINE, SEMICOLON, SPACE, "default", "admin",
                                       "prometheus", "app_user-2"], "orch-app",
            ),
    *_cases("name", "sshd_allow_users[1]", [NEWLINE, SPACE, SUBSTITUTION, "ops-team"],
            "ubuntu", lambda v: {"sshd_allow_users": ["ubuntu", v]}),
    *_cases("name", "environment", [NEWLINE, SEMICOLON, SPACE, "Prod", "prod-eu-1"], "golden"),
    *_cases("name", "postgres_roles[0].name", [NEWLINE, SEMICOLON, DOUBLE_QUOTE, "postgres",
                                               "pg_monitor", "prometheus", "public",
                                               "app_rw"], "orch_rw", _in_roles("role")),
    *_cases("name", "postgres_databases[0].name", [NEWLINE, SINGLE_QUOTE, "postgres",
                                                   "template1", "orchestra_2"], "orch_db",
            _in_roles("db")),
    *_cases("name", "mcp_servers", [NEWLINE, SEMICOLON, "Memory", "../x", "x" * 40,
                                    "vector-search"], "search", _mcp_name),
    *_cases("name", "backup_host_name", [NEWLINE, SEMICOLON, SPACE, "-x", "gpu-1.example"],
            "orchestra-golden"),
    *_cases("name", "nginx_server_name", [NEWLINE, "x; include /etc/passwd", SPACE, BRACE,
                                          "orchestra.example.com"], "api.example.com"),
    *_cases("name", "monit_paused[0]", [NEWLINE, SEMICOLON, "redsi"], "redis",
            _listed("monit_paused")),
    *_cases("name", "timezone", [NEWLINE, "../../etc/passwd", "Europe/Berlin"], "UTC"),
    *_cases("name", "locale", [NEWLINE, SEMICOLON, "de_DE.UTF-8"], "en_GB.UTF-8"),
    *_cases("name", "app_source_ref", [OPTION, "-x", "a..b", SPACE, "release/1.2.0"], "main",
            extra={"app_source": f"file://{LOCAL_REPOSITORY}"}),
]

PATHS = [
    _cases("path", key, [*CONTROL[:2], SEMICOLON, SPACE, "relative/dir", "/srv/../etc",
                         "/srv//x", "/srv/x/", system, f"/srv/orch+{key}@1"], f"/srv/{key}")
    for key, system in (("install_root", "/opt"), ("config_root", "/etc"),
                        ("log_root", "/var/log"), ("state_root", "/var/lib"))
]
PATHS = [case for group in PATHS for case in group] + [
    *_cases("path", "weaviate_data_dir", ["/", "/var", "/tmp", SUBSTITUTION, "/srv/weaviate"],
            "/srv/wv-data"),
    *_cases("path", "weaviate_backup_dir", ["/home", "/usr", BACKTICKS], "/srv/wv-backup"),
    *_cases("path", "backup_work_dir", ["/var/backups", "/tmp", NEWLINE, "/srv/bk work"],
            "/srv/bk-work"),
    *_cases("path", "monit_extra_filesystems[0]", [NEWLINE, SPACE, "data", "/mnt/data"],
            "/mnt/benign", _listed("monit_extra_filesystems")),
    *_cases("path", "restic_repository", [NEWLINE, "/srv/re stic", "s3:https://x/b\ny",
                                          "sftp:u@h:/p;id", "rclone:x", "/var/backups",
                                          "/srv/x/../y"],
            "/srv/restic"),
    # pgBackRest: a path or s3 (no sftp before 2.46), never overlapping the restic repository.
    *_cases("path", "pg_archive_repository", [NEWLINE, "/srv/pg ar", "sftp:u@h:/srv/pg",
                                              "s3:https://x/B;id", "/var/backups",
                                              "/var/backups/orchestra/restic/pg",
                                              "/srv/pgbackrest"], "/srv/pg-archive"),
    *_cases("path", "pg_archive_repository_mount", [NEWLINE, "/srv/m;id", "var/backups",
                                                    "/srv/elsewhere"], "/var/backups/orchestra"),
    *_cases("path", "extra_ca_certificates[0]", [NEWLINE, "/nonexistent/ca.crt"],
            "/nonexistent/benign.crt", _listed("extra_ca_certificates")),
    *_cases("path", "app_source", [OPTION, "-x.git", "http://git.example.com/app.git",
                                   "git://git.example.com/app.git", "ext::sh -c id",
                                   "../outside"], "app"),
]

URLS = [
    *_cases("url", "weaviate_url", [NEWLINE, "http://example.com/w.tgz", "ftp://x/y",
                                    "https://x/y z", "https://x/$(id)", "https://x/y;id",
                                    "https://x/y'z", "https://user:pw@x/y",
                                    "https://x/y?a=b"], "https://example.com/w.tgz"),
    *_cases("url", "node_apt_repository", [
        "https://x/node nodistro main [trusted=yes]", "https://x/y\ndeb http://evil/ x main",
        "http://deb.example.com/node", "http://127.0.0.1:8080/node",
        "http://10.213.0.25:8765/node_22.x", "http://203.0.113.7/node"],
        "https://deb.example.com/node",
        extra={"node_apt_key_url": "https://deb.example.com/key.gpg"}),
    *_cases("url", "postgres_apt_repository", [
        "https://x/pg [trusted=yes]", "http://apt.example.com/pg", "https://x/pg#x"],
        "https://apt.example.com/pg",
        extra={"postgres_apt_key_url": "https://apt.example.com/key.asc",
               "postgres_version": 16}),
    *_cases("url", "postgres_version", [12, 9], 16,
            extra={"postgres_apt_repository": "https://apt.example.com/pg",
                   "postgres_apt_key_url": "https://apt.example.com/key.asc"}),
]

EMAILS = [
    *_cases("email", "nginx_letsencrypt_email", [NEWLINE, "not-an-address", "a b@example.com",
                                                 "x@y", "$(id)@example.com",
                                                 "a'b@example.com", "--x@example.com;",
                                                 "ops+tls@example.com"],
            "ops@example.com", extra={"nginx_tls": "letsencrypt",
                                      "nginx_server_name": "orchestra.example.com"}),
    *_cases("email", "alert_email_to[0]", [NEWLINE, "a@b.c\nBcc: x@y.z", "o'neil@example.com",
                                           "a\"b@example.com", "on-call%team@example.com"],
            "ops@example.com", _listed("alert_email_to"), extra=SMTP),
    *_cases("email", "alert_email_from", ["Orchestra <monit@example.com>", "monit@x;id",
                                          "monit@example.com"], "alerts@example.com",
            extra=SMTP),
]

SIZES = [
    *_cases("size", "journald_max_use", [NEWLINE, "1G;", "1 G", "-1G", "1g", "512K", "2G"],
            "1G"),
    *_cases("size", "redis_maxmemory", ["0M", "512K", "1.5G", "768M"], "512M"),
    *_cases("size", "weaviate_memory_max", ["1M", "infinity", "4G"], "8G"),
    *_cases("size", "postgres_work_mem", ["32K", "512K", "64M"], "4M"),
    *_cases("size", "postgres_maintenance_work_mem", ["512K", "1536K"], "64M"),
    *_cases("size", "postgres_shared_buffers", ["64K", "1G"], "256M"),
    *_cases("size", "admin_max_memory_restart", ["300M;", "1T", "512M"], "300M"),
    *_cases("size", "nginx_client_max_body_size", ["10m; include x", "10 m", "20m"], "10m"),
    *_cases("size", "prometheus_retention_size", ["10GB\n", "10 GB", "20GB"], "10GB"),
    *_cases("size", "pg_archive_queue_max", ["4G;id", "4 G", "1M", "8G"], "6G"),
]

PORTS = [
    *_cases("port", "api_port", [0, 80, 1023, 70000, "8000", True, 9100, 18000], 8000),
    *_cases("port", "redis_port", [22, 6380], 6379),
    *_cases("port", "mcp_servers.task.port", [443, 8001, 8105], 8006, _mcp_port),
    *_cases("port", "firewall_allow_tcp_ports[0]", [0, "8443", 8443], 9443,
            _listed("firewall_allow_tcp_ports")),
    *_cases("port", "sshd_port", [0, 65536, 2222], 22),
]

TIMES = [
    *_cases("calendar", "backup_on_calendar", [NEWLINE, "daily;id", "$(id)", "*-*-* 03:15:00\n",
                                               "daily\nExecStart=/bin/sh", "Mon..Fri 04:00",
                                               "*-*-* 01,13:00:00"], "daily"),
    *_cases("calendar", "backup_check_on_calendar", ["weekly'", "Sun *-*-* 05:30:00"],
            "weekly"),
    *_cases("calendar", "pg_archive_full_on_calendar", ["Sun 02:30;id", NEWLINE],
            "Sat *-*-* 01:00:00"),
    *_cases("calendar", "pg_archive_diff_on_calendar", ["$(id)", "daily;"], "Mon..Fri 01:00"),
    *_cases("calendar", "pg_archive_check_on_calendar", ["hourly\nExecStart=/bin/sh",
                                                         "*:0/30"], "hourly"),
    *_cases("number", "pg_archive_timeout", [0, 61, "30;", 10], 30),
    *_cases("timespan", "backup_redis_interval", ["15 min", "15min\nExecStart=/bin/sh", "0"],
            "30min"),
    *_cases("timespan", "backup_weaviate_interval", ["1h;id", "$(id)"], "2h"),
    *_cases("duration", "backup_store_keep_within", ["2d;id", "2 d", "-2d", "0d", "3d12h"],
            "2d"),
    *_cases("timespan", "backup_randomized_delay", ["15 min", "15min;", "1h"], "30min"),
    *_cases("timespan", "journald_max_retention", ["1month\n", "forever", "2week"], "1month"),
    *_cases("timespan", "prometheus_retention_time", ["15d;", "15 d", "30d"], "15d"),
    *_cases("timespan", "prometheus_scrape_interval", ["15s\n", "1h", "30s"], "15s"),
]

SYSCTL = [
    *_cases("sysctl", "sysctl_settings", ["vm.swappiness\nkernel.x", "vm swappiness",
                                          "../../proc/x", "vm.swappiness=1;id",
                                          "net.core.rmem_max"], "net.core.wmem_max",
            _sysctl_key),
    *_cases("sysctl", "sysctl_settings.net.ipv4.tcp_rmem", ["1\nkernel.x = 1", "1;id",
                                                            "$(id)", "4096 87380 6291456"],
            "4096 65536 4194304", _sysctl_value),
]

PACKAGES = [
    *_cases("package", "base_packages[0]", ["-oAPT::Update::Pre-Invoke::=id", "--force-yes",
                                            "curl wget", "curl;id", "Curl", "c",
                                            "libstdc++6"], "htop",
            lambda v: {"base_packages": [v, "curl"]}),
]

KNOWN_HOSTS = [
    *_cases("known_hosts", "backup_sftp_known_hosts[0]", [
        f"h ssh-ed25519 {KEY}\n@cert-authority * ssh-ed25519 {KEY}",
        f"@revoked * ssh-ed25519 {KEY}", "h ssh-ed25519", f"h ssh-ed25519 {KEY}'x",
        f"h ssh-ed25519 {KEY} comment with $(id) and `id`",
        f"[backup.example.com]:2222,10.0.0.5 ssh-ed25519 {KEY}"],
        f"backup.example.com ssh-ed25519 {KEY}", _listed("backup_sftp_known_hosts"),
        extra=SFTP),
    *_cases("known_hosts", "app_source_known_hosts[0]", [
        f"git.example.com ssh-ed25519 {KEY}\nevil ssh-rsa AAAA", "git.example.com ssh-ed25519"],
        f"git.example.com ssh-ed25519 {KEY}", _listed("app_source_known_hosts"),
        extra={"app_source": "git@git.example.com:org/app.git", "app_source_ref": "main"}),
]

CIPHERS = [
    *_cases("cipher", "sshd_ciphers[0]", ["aes256-ctr\nPermitRootLogin yes", "aes256-ctr,3des",
                                          "aes256-ctr PermitRootLogin", "+aes128-cbc",
                                          "aes128-gcm@openssh.com"], "aes256-ctr",
            _listed("sshd_ciphers")),
    *_cases("cipher", "sshd_kex_algorithms[0]", ["curve25519-sha256\nMatch all", "-x"],
            "curve25519-sha256", _listed("sshd_kex_algorithms")),
    *_cases("cipher", "sshd_macs[0]", ["hmac-sha2-256 ; x", "umac-128-etm@openssh.com"],
            "hmac-sha2-256", _listed("sshd_macs")),
]

OTHERS = [
    *_cases("network", "firewall_trusted_networks[0]", ["10.0.0.0/8;", "10.0.0.0/8 accept",
                                                        "10.0.0.0/8"], "192.0.2.0/24",
            _listed("firewall_trusted_networks")),
    *_cases("address", "postgres_listen_addresses[0]", ["127.0.0.1'", "127.0.0.1 ; x"],
            "127.0.0.1", _listed("postgres_listen_addresses")),
    *_cases("address", "redis_bind[0]", ["127.0.0.1\nprotected-mode no", "0.0.0.0 x"],
            "127.0.0.1", _listed("redis_bind")),
    # The WireGuard mesh (issue 12).
    *_cases("network", "mesh_network", ["10.210.0.0/16;", "10.210.0.0/16 accept",
                                        "10.210.0.0/16\nx", "8.8.0.0/16", "10.210.0.1/16",
                                        "fd00::/64", "10.210.0.0/30"], "10.211.0.0/16"),
    *_cases("name", "wireguard_interface", ["wg0;id", "wg0 x", "wg0\nx", "../wg0",
                                            "averyveryverylongname", "-wg0"], "wg1"),
    *_cases("address", "alert_smtp_host", ["smtp.example.com;id", "smtp example"],
            "smtp.example.com"),
    *_cases("region", "pg_archive_s3_region", ["us-east-1;id", NEWLINE, "US EAST"],
            "us-east-2"),
    *_cases("rate", "nginx_api_rate", ["20r/s; include x", "20r/s"], "10r/s"),
    *_cases("number", "nginx_api_read_timeout", ["60s", "60; proxy_pass x", 0, "60"], 90),
    *_cases("number", "nginx_api_idempotent_read_timeout", ["5s;", 0, True], 4),
    *_cases("rate", "nginx_mcp_rate", ["30r/s;", "30r/s limit_conn x 1"], "20r/s"),
    # The edge (issue 11, section 4).
    *_cases("name", "edge_auth_user", [NEWLINE, "x:y", SPACE, "x;y"], "operator"),
    *_cases("network", "edge_allow_networks[0]", ["10.0.0.0/8;", "10.0.0.0/8 all",
                                                  "10.0.0.0/8\ndeny all"], "192.0.2.0/24",
            lambda value: {"edge_allow_networks": [value], "edge_auth": {
                "admin": ["allowlist"], "mcp": ["basic"], "api": []}}),
    *_cases("path", "edge_public_api_paths[0]", ["/api/x;", "/api/x {", "/api/x y",
                                                 "/api/health/"], "/api/status/",
            _listed("edge_public_api_paths")),
]

PASSWORD = "A1b2C3d4E5f6G7h8"
SECRETS = [
    _cases("secret", f"secrets.{name}", [
        PASSWORD + "\n", PASSWORD + "\ninjected", PASSWORD + "$(touch /tmp/pwn)",
        PASSWORD + "`id`", PASSWORD + "'quote", PASSWORD + '"quote', PASSWORD + " space",
        PASSWORD + "@host:1/db", PASSWORD + "#frag", PASSWORD + "\\", PASSWORD + "~._-"],
        PASSWORD + "benign", secret=name)
    for name in ("postgres_app_password", "redis_app_password", "monit_password",
                 "weaviate_api_key", "restic_password", "pg_archive_cipher_pass")
]
SECRETS = [case for group in SECRETS for case in group] + [
    *_cases("secret", "secrets.redis_admin_password", [PASSWORD + "';id;'", "short"],
            PASSWORD, secret="redis_admin_password"),
    *_cases("secret", "secrets.alert_webhook_url", [
        "https://hooks.example.com/x'\nrm", "https://hooks.example.com/x\" y",
        "http://hooks.example.com/x", "https://hooks.example.com/$(id)",
        "https://hooks.example.com/services/T0/B0/abc?x=1&y=2", "http://127.0.0.1:9/hook",
        "http://127.0.0.1.evil.example/hook"],
        "https://hooks.example.com/services/T1/B1/benign", secret="alert_webhook_url"),
    *_cases("secret", "secrets.restic_s3_secret_access_key", [
        "abc'def", "abc def", "abc/def+ghi="], "benignSecretKey",
        secret="restic_s3_secret_access_key",
        extra={"restic_repository": "s3:https://s3.example.com/bucket"},
        extra_secrets={"restic_s3_access_key_id": "AKIABENIGN"}),
    *_cases("secret", "secrets.restic_sftp_private_key", [
        "-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n-----END OPENSSH PRIVATE KEY-----\n"
        "Host *\n  ProxyCommand id",
        "-----BEGIN OPENSSH PRIVATE KEY-----\r\nabc\r\n-----END OPENSSH PRIVATE KEY-----\r\n"],
        "-----BEGIN OPENSSH PRIVATE KEY-----\nYmVuaWdu\n-----END OPENSSH PRIVATE KEY-----\n",
        secret="restic_sftp_private_key",
        extra={**SFTP, "backup_sftp_known_hosts": [f"backup.example.com ssh-ed25519 {KEY}"]}),
    *_cases("secret", "secrets.lambda_api_key", ["key with space", "key$(id)"],
            "secret_benign.key", secret="lambda_api_key"),
    *_cases("secret", "secrets.edge_password", [PASSWORD + ":x", PASSWORD + "'$(id)'",
                                                PASSWORD * 5],
            PASSWORD + "benign", secret="edge_password"),
]

CORPUS: list[Case] = [*NAMES, *PATHS, *URLS, *EMAILS, *SIZES, *PORTS, *TIMES, *SYSCTL,
                      *PACKAGES, *KNOWN_HOSTS, *CIPHERS, *OTHERS, *SECRETS]
