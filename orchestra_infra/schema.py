"""The typed schema of all deploy data, and the checks that span several keys.

The schema holds types and constraints only; every default lives, documented, in
``group_data/all.py``. A key missing there is a bug this module reports.
"""

from __future__ import annotations

import ipaddress
import posixpath
import re
import zoneinfo
from collections.abc import Collection
from difflib import get_close_matches
from pathlib import PurePosixPath
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from . import catalog
from .errors import ConfigError

# Keys pyinfra itself reads from host data (connection settings, global operation
# arguments) and keys the inventories attach to hosts: not ours to validate.
PYINFRA_DATA_PREFIXES = ("ssh_", "_")
INVENTORY_KEYS = {"sandbox_name"}

_SIZE = re.compile(r"^(\d+)([KMGT])$")
_SIZE_FACTORS = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_NAME = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
_PATH = re.compile(r"^[A-Za-z0-9._+@/-]+$")
_TIMESPAN = re.compile(r"^\d+(s|min|h|day|week|month|year)$")
_LOCALE = re.compile(r"^(C|[a-z]{2,3}_[A-Z]{2})\.UTF-8$")


def parse_size(value: str) -> int:
    """``"512M"`` -> bytes. Sizes are whole numbers with a K, M, G or T suffix."""
    match = _SIZE.match(value)
    if not match:
        raise ValueError(f"{value!r} is not a size (use a whole number and K, M, G or T: 512M, 2G)")
    number, unit = match.groups()
    return int(number) * _SIZE_FACTORS[unit]


def _size(value: str) -> str:
    parse_size(value)
    return value


def _absolute_path(value: str) -> str:
    # Paths are joined ("<install_root>/releases"), compared as text and written unquoted
    # into shell commands and unit files: one spelling of each, and no character the shell
    # or systemd would split on. "/" would make the deploy chmod the whole filesystem.
    if not PurePosixPath(value).is_absolute():
        raise ValueError(f"{value!r} is not an absolute path")
    normal = "/" + posixpath.normpath(value).lstrip("/")
    if value != normal:
        raise ValueError(f"{value!r} is not a normalised path (write {normal!r})")
    if value == "/":
        raise ValueError("'/' is the filesystem root, not a directory of its own")
    if not _PATH.match(value):
        raise ValueError(f"{value!r} has a character other than letters, digits and . _ - + @ /")
    return value


def _posix_name(value: str) -> str:
    if not _NAME.match(value):
        raise ValueError(f"{value!r} is not a valid user or group name")
    return value


def _timezone(value: str) -> str:
    if value not in zoneinfo.available_timezones():
        raise ValueError(f"{value!r} is not a known time zone (e.g. UTC, Europe/Berlin)")
    return value


def _locale(value: str) -> str:
    if not _LOCALE.match(value):
        raise ValueError(f"{value!r} is not a UTF-8 locale (e.g. en_US.UTF-8, C.UTF-8)")
    return value


def _timespan(value: str) -> str:
    if not _TIMESPAN.match(value):
        raise ValueError(f"{value!r} is not a time span (e.g. 2week, 1month)")
    return value


def _network(value: str) -> str:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise ValueError(f"{value!r} is not an IP address or network") from None
    return value


def _ca_file(value: str) -> str:
    try:
        with open(value, encoding="ascii") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else "not a text file"
        raise ValueError(f"cannot read {value}: {reason}") from None
    if "-----BEGIN CERTIFICATE-----" not in text:
        raise ValueError(f"{value} holds no PEM certificate")
    return value


Port = Annotated[int, Field(strict=True, ge=1, le=65535)]
Size = Annotated[str, AfterValidator(_size)]
AbsolutePath = Annotated[str, AfterValidator(_absolute_path)]
PosixName = Annotated[str, AfterValidator(_posix_name)]
Network = Annotated[str, AfterValidator(_network)]
CaFile = Annotated[str, AfterValidator(_ca_file)]


# A plain http(s) URL: nothing that could end an apt source line or a shell word.
_APT_URL = r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~%/-]*)?$"


class _Block(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class BaseData(_Block):
    environment: Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]*$")]
    timezone: Annotated[str, AfterValidator(_timezone)]
    locale: Annotated[str, AfterValidator(_locale)]
    apt_cache_time: Annotated[int, Field(ge=0)]
    apt_lock_timeout: Annotated[int, Field(ge=0, le=7200)]
    base_packages: list[str]
    unattended_upgrades: bool
    unattended_upgrades_reboot: bool
    service_user: PosixName
    install_root: AbsolutePath
    config_root: AbsolutePath
    log_root: AbsolutePath
    state_root: AbsolutePath
    journald_max_use: Size
    journald_max_file_size: Size
    journald_max_retention: Annotated[str, AfterValidator(_timespan)]
    extra_ca_certificates: list[CaFile]
    require_gpu: bool


class SecurityData(_Block):
    sshd_port: Port
    sshd_allow_users: list[PosixName]
    sshd_max_auth_tries: Annotated[int, Field(ge=1, le=10)]
    sshd_ciphers: list[str]
    sshd_kex_algorithms: list[str]
    sshd_macs: list[str]
    firewall_enabled: bool
    firewall_allow_tcp_ports: list[Port]
    firewall_trusted_networks: list[Network]
    sysctl_settings: dict[str, int | str]


def _banner(value: str) -> str:
    # getty expands backslash escapes in /etc/issue; sshd sends the text as it is.
    if not value.strip():
        raise ValueError("is empty: write the text every login shows")
    if "\\" in value or any(not (c.isprintable() or c == "\n") for c in value):
        raise ValueError("may hold printable characters and newlines only, no backslash")
    return value


_MODULE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


def _module(value: str) -> str:
    if not _MODULE.match(value):
        raise ValueError(f"{value!r} is not a kernel module name")
    return value


class HardeningData(_Block):
    """Host hardening beyond sshd and the firewall (Lynis): see group_data/all.py."""

    login_banner: Annotated[str, Field(max_length=2000), AfterValidator(_banner)]
    sshd_max_sessions: Annotated[int, Field(ge=1, le=10)]
    disabled_kernel_modules: list[Annotated[str, AfterValidator(_module)]]
    core_dumps: bool
    login_umask: Annotated[str, Field(pattern=r"^0?[0-7]{3}$")]
    password_max_days: Annotated[int, Field(ge=1, le=99999)]
    password_min_days: Annotated[int, Field(ge=0, le=99999)]
    password_warn_days: Annotated[int, Field(ge=0, le=99999)]
    password_hash_rounds: Annotated[int, Field(ge=5000, le=999_999_999)]
    auditd_enabled: bool
    process_accounting: bool
    fail2ban_enabled: bool
    fail2ban_max_retry: Annotated[int, Field(ge=1, le=100)]
    fail2ban_ban_seconds: Annotated[int, Field(ge=60, le=365 * 86400)]
    fail2ban_ignore_networks: list[Network]
    hardening_packages: list[Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9.+-]+$")]]


class McpServer(_Block):
    port: Port


class PortsData(_Block):
    nginx_http_port: Port
    nginx_https_port: Port
    api_port: Port
    api_instances: Annotated[int, Field(ge=1, le=32)]
    admin_port: Port
    postgres_port: Port
    redis_port: Port
    weaviate_port: Port
    weaviate_grpc_port: Port
    monit_port: Port
    prometheus_port: Port
    alertmanager_port: Port
    node_exporter_port: Port
    postgres_exporter_port: Port
    redis_exporter_port: Port
    nginx_exporter_port: Port
    blackbox_exporter_port: Port
    mtail_port: Port
    mcp_servers: dict[Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]*$")], McpServer]
    ports_auto_reassign: bool
    ports_reassign_range: tuple[Port, Port]


_SQL_NAME = r"^[a-z_][a-z0-9_]{0,62}$"
SqlName = Annotated[str, Field(pattern=_SQL_NAME)]
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class PostgresRole(_Block):
    name: SqlName
    password_secret: str
    connect: list[SqlName] = []


class PostgresDatabase(_Block):
    name: SqlName
    owner: SqlName
    extensions: list[SqlName] = []


class PostgresData(_Block):
    postgres_version: Annotated[int, Field(ge=12, le=18)] | None
    postgres_apt_repository: str | None
    postgres_apt_key_url: str | None
    postgres_listen_addresses: list[str]
    postgres_allowed_networks: list[Network]
    postgres_max_connections: Annotated[int, Field(ge=10, le=10000)]
    postgres_shared_buffers: Size | None
    postgres_effective_cache_size: Size | None
    postgres_work_mem: Size | None
    postgres_maintenance_work_mem: Size | None
    postgres_pgvector: bool
    postgres_roles: list[PostgresRole]
    postgres_databases: list[PostgresDatabase]


class RedisData(_Block):
    redis_bind: list[str]
    redis_maxmemory: Size
    redis_maxmemory_policy: Literal[
        "noeviction", "allkeys-lru", "allkeys-lfu", "allkeys-random",
        "volatile-lru", "volatile-lfu", "volatile-random", "volatile-ttl",
    ]
    redis_app_user: PosixName


class WeaviateData(_Block):
    weaviate_version: Annotated[str, Field(pattern=r"^\d+\.\d+\.\d+$")]
    weaviate_url: str
    weaviate_sha256: Sha256 | None
    weaviate_source: Literal["download", "upload"]
    weaviate_local_tarball: str | None
    weaviate_data_dir: AbsolutePath
    weaviate_backup_dir: AbsolutePath
    weaviate_memory_max: Size
    weaviate_limit_nofile: Annotated[int, Field(ge=1024)]
    weaviate_keep_versions: Annotated[int, Field(ge=1, le=10)]


class NginxData(_Block):
    nginx_server_name: Annotated[str, Field(pattern=r"^(_|[A-Za-z0-9.-]+)$")]
    nginx_tls: Literal["selfsigned", "letsencrypt", "none"]
    nginx_letsencrypt_email: str | None
    nginx_api_rate: Annotated[str, Field(pattern=r"^\d+r/[sm]$")]
    nginx_api_burst: Annotated[int, Field(ge=0)]
    nginx_client_max_body_size: Annotated[str, Field(pattern=r"^\d+[kmg]?$")]
    nginx_stub_status_port: Port


class AppData(_Block):
    app_source: str
    app_source_ref: str | None
    app_source_known_hosts: list[str]
    app_releases_keep: Annotated[int, Field(ge=2, le=50)]
    app_preflight_port: Port
    app_health_timeout: Annotated[int, Field(ge=5, le=600)]
    supervisor_startsecs: Annotated[int, Field(ge=0, le=120)]
    supervisor_startretries: Annotated[int, Field(ge=1, le=100)]
    supervisor_stopwaitsecs: Annotated[int, Field(ge=1, le=600)]
    node_source: Literal["nodesource", "distro"]
    node_major: Annotated[int, Field(ge=18, le=40)]
    node_apt_repository: Annotated[str, Field(pattern=_APT_URL)] | None
    node_apt_key_url: Annotated[str, Field(pattern=_APT_URL)] | None
    pm2_version: Annotated[str, Field(pattern=r"^\d+\.\d+\.\d+$")]
    pm2_logrotate_version: Annotated[str, Field(pattern=r"^\d+\.\d+\.\d+$")]
    admin_instances: Annotated[int, Field(ge=1, le=32)]
    admin_max_memory_restart: Annotated[str, Field(pattern=r"^\d+[KMG]$")]


_SFTP_URL = re.compile(r"^sftp://(?:(?P<user>[^@/\s]+)@)?(?P<host>\[[0-9A-Fa-f:]+\]|[^/:\s\[\]]+)"
                       r"(?::(?P<port>\d{1,5}))?/(?P<path>\S+)$")
_SFTP_SHORT = re.compile(r"^sftp:(?:(?P<user>[^@/\s]+)@)?(?P<host>[^/:@\s]+):(?P<path>\S+)$")
_S3 = re.compile(r"^s3:(https?://)?[^/\s]+/\S+$")
_CALENDAR = re.compile(r"^[A-Za-z0-9*:,./~ -]+$")
_READ_SUBSET = re.compile(r"^(?:(\d+)/(\d+)|(\d+(?:\.\d+)?)%)$")


def sftp_endpoint(repository: str) -> dict[str, Any] | None:
    """``sftp:user@host:/path`` or ``sftp://user@host:port//path`` -> user, host, port;
    None for any other repository."""
    match = _SFTP_URL.match(repository) or _SFTP_SHORT.match(repository)
    if not match:
        return None
    parts = match.groupdict()
    return {"user": parts["user"], "host": parts["host"].strip("[]"),
            "port": int(parts.get("port") or 22)}


def _restic_repository(value: str) -> str:
    if value.startswith("/") and not re.search(r"\s", value):
        return value
    if value.startswith("sftp:") and sftp_endpoint(value):
        return value
    if _S3.match(value):
        return value
    raise ValueError(f"{value!r} is not a restic repository this deploy supports: an absolute "
                     "path, sftp:user@host:/path, sftp://user@host:port//path or "
                     "s3:https://endpoint/bucket[/prefix]")


def _calendar(value: str) -> str:
    if not _CALENDAR.match(value):
        raise ValueError(f"{value!r} is not a systemd calendar expression (e.g. "
                         "'*-*-* 03:15:00', 'Sun *-*-* 05:30:00', 'daily')")
    return value


def _read_subset(value: str) -> str:
    # Both forms work with restic 0.12 (Ubuntu 22.04) and 0.14 (Debian 12); sizes need 0.13.
    match = _READ_SUBSET.match(value)
    if match and match.group(1):
        if 1 <= int(match.group(1)) <= int(match.group(2)):
            return value
    elif match and 0 < float(match.group(3)) <= 100:
        return value
    raise ValueError(f"{value!r} is not a read subset: 'x%' (0 < x <= 100) or 'n/t' "
                     "(1 <= n <= t)")


class BackupData(_Block):
    backup_enabled: bool
    restic_repository: Annotated[str, AfterValidator(_restic_repository)]
    restic_repository_version: Literal[1, 2]
    backup_host_name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")] | None
    backup_sftp_known_hosts: list[Annotated[str, Field(pattern=r"^[^\s#]+ [a-z0-9@.-]+ \S+")]]
    backup_on_calendar: Annotated[str, AfterValidator(_calendar)]
    backup_randomized_delay: Annotated[str, AfterValidator(_timespan)]
    backup_keep_daily: Annotated[int, Field(ge=0, le=1000)]
    backup_keep_weekly: Annotated[int, Field(ge=0, le=1000)]
    backup_keep_monthly: Annotated[int, Field(ge=0, le=1000)]
    backup_check_on_calendar: Annotated[str, AfterValidator(_calendar)]
    backup_check_read_subset: Annotated[str, AfterValidator(_read_subset)]
    backup_work_dir: AbsolutePath
    backup_wait_timeout: Annotated[int, Field(ge=10, le=86400)]


def _backup_problems(config: Config) -> list[str]:
    problems = []
    if sftp_endpoint(config.restic_repository) and not config.backup_sftp_known_hosts:
        problems.append("backup_sftp_known_hosts: required for an sftp: restic_repository (the "
                        "server's host key lines, e.g. from `ssh-keyscan -t ed25519 HOST`)")
    if not (config.backup_keep_daily or config.backup_keep_weekly or config.backup_keep_monthly):
        problems.append("backup_keep_daily: backup_keep_daily, backup_keep_weekly and "
                        "backup_keep_monthly are all 0: `restic forget` would keep nothing")
    repository = config.restic_repository.rstrip("/")
    work = config.backup_work_dir.rstrip("/")
    if repository.startswith("/") and (repository == work or repository.startswith(work + "/")):
        problems.append(f"restic_repository: {repository} is inside backup_work_dir {work}, "
                        "which every backup empties")
    return problems


_EMAIL = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
Percent = Annotated[int, Field(ge=1, le=100)]


class MonitData(_Block):
    monit_cycle_seconds: Annotated[int, Field(ge=1, le=60)]
    monit_start_delay: Annotated[int, Field(ge=0, le=600)]
    monit_health_timeout: Annotated[int, Field(ge=1, le=60)]
    monit_failed_cycles: Annotated[int, Field(ge=1, le=30)]
    monit_restart_limit: Annotated[int, Field(ge=1, le=30)]
    monit_restart_window: Annotated[int, Field(ge=1, le=1000)]
    monit_resource_cycles: Annotated[int, Field(ge=1, le=1000)]
    monit_disk_alert_percent: Percent
    monit_inode_alert_percent: Percent
    monit_memory_alert_percent: Percent
    monit_service_memory_alert_percent: Percent
    monit_service_cpu_alert_percent: Percent
    monit_load_per_core: Annotated[float, Field(gt=0, le=100)]
    monit_extra_filesystems: list[AbsolutePath]
    monit_paused: list[str]
    alert_smtp_host: Annotated[str, Field(pattern=r"^[A-Za-z0-9.:-]+$")] | None
    alert_smtp_port: Port
    alert_email_from: Annotated[str, Field(pattern=_EMAIL)] | None
    alert_email_to: list[Annotated[str, Field(pattern=_EMAIL)]]

    @field_validator("monit_restart_window")
    @classmethod
    def _escalation_can_happen(cls, value: int, info: ValidationInfo) -> int:
        # A restart takes monit_failed_cycles failed rounds plus the round it happens in.
        limit, failed = info.data.get("monit_restart_limit"), info.data.get("monit_failed_cycles")
        if limit and failed and value < limit * (failed + 1):
            raise ValueError(f"{value} rounds can never hold {limit} restarts that each follow "
                             f"{failed} failed rounds: use at least {limit * (failed + 1)}")
        return value

    @field_validator("alert_email_to")
    @classmethod
    def _email_needs_a_relay(cls, value: list[str], info: ValidationInfo) -> list[str]:
        if value and not info.data.get("alert_smtp_host"):
            raise ValueError("email alerts need alert_smtp_host (an SMTP relay)")
        return value


class PrometheusData(_Block):
    prometheus_retention_time: Annotated[str, Field(pattern=r"^(\d+(ms|s|m|h|d|w|y))+$")]
    prometheus_retention_size: Annotated[str, Field(pattern=r"^\d+(B|KB|MB|GB|TB|PB)$")]
    prometheus_scrape_interval: Annotated[str, Field(pattern=r"^\d+(s|m)$")]
    prometheus_probe_skip_tls_verify: bool | None
    prometheus_alert_disk_percent: Annotated[int, Field(ge=1, le=100)]
    prometheus_alert_memory_percent: Annotated[int, Field(ge=1, le=100)]
    prometheus_alert_5xx_ratio: Annotated[float, Field(gt=0, le=1)]
    prometheus_backup_max_age_hours: Annotated[int, Field(ge=1, le=24 * 30)]


class Config(BaseData, SecurityData, HardeningData, PortsData, PostgresData, RedisData,
             WeaviateData, NginxData, AppData, BackupData, MonitData, PrometheusData):
    """Everything a deploy reads. Field order follows ``group_data/all.py``."""

    def port_table(self) -> dict[str, int]:
        """Every port the stack uses, keyed by the data path that sets it."""
        ports = {
            "sshd_port": self.sshd_port,
            "nginx_http_port": self.nginx_http_port,
            "nginx_https_port": self.nginx_https_port,
        }
        for i in range(self.api_instances):
            ports["api_port" if i == 0 else f"api_port+{i}"] = self.api_port + i
        for key in ("admin_port", "postgres_port", "redis_port", "weaviate_port",
                    "weaviate_grpc_port", "monit_port", "nginx_stub_status_port",
                    "app_preflight_port", "prometheus_port", "alertmanager_port",
                    "node_exporter_port", "postgres_exporter_port", "redis_exporter_port",
                    "nginx_exporter_port", "blackbox_exporter_port", "mtail_port"):
            ports[key] = getattr(self, key)
        for name, server in self.mcp_servers.items():
            ports[f"mcp_servers.{name}"] = server.port
        return ports

    def monit_service_names(self) -> list[str]:
        """What Monit calls the services it may watch, on a host of every group."""
        return [s.monit for s in catalog.services(self) if s.monit]

    def public_tcp_ports(self) -> list[int]:
        """Ports the firewall opens to everyone; SSH is always among them."""
        ports = {self.sshd_port, self.nginx_http_port, self.nginx_https_port}
        ports.update(self.firewall_allow_tcp_ports)
        return sorted(ports)


def _port_conflicts(config: Config) -> list[str]:
    seen: dict[int, str] = {}
    problems = []
    for key, port in config.port_table().items():
        if port > 65535:
            problems.append(f"{key}: {port} is above 65535 (api_port + api_instances overflows)")
        elif port in seen:
            path = f"{key}.port" if key.startswith("mcp_servers.") else key
            problems.append(f"{path}: {port} is already used by {seen[port]}")
        else:
            seen[port] = key
    return problems


def _data_service_problems(config: Config, secret_names: Collection[str]) -> list[str]:
    problems = []
    roles = [role.name for role in config.postgres_roles]
    databases = [db.name for db in config.postgres_databases]
    problems += _duplicates("postgres_roles", roles)
    problems += _duplicates("postgres_databases", databases)
    for i, role in enumerate(config.postgres_roles):
        if role.password_secret not in secret_names:
            problems.append(f"postgres_roles[{i}].password_secret: {role.password_secret!r} is "
                            "not a secret orchestra-infra knows")
        for db in role.connect:
            if db not in databases:
                problems.append(f"postgres_roles[{i}].connect: database {db!r} is not in "
                                "postgres_databases")
    for i, db in enumerate(config.postgres_databases):
        if db.owner not in roles:
            problems.append(f"postgres_databases[{i}].owner: role {db.owner!r} is not in "
                            "postgres_roles")
    if config.postgres_version is not None and config.postgres_apt_repository is None:
        problems.append("postgres_version: pinning a major version needs "
                        "postgres_apt_repository (the distro ships one version)")
    if config.weaviate_source == "download" and config.weaviate_sha256 is None:
        problems.append(f"weaviate_sha256: required to download Weaviate "
                        f"{config.weaviate_version}: copy it from the release's "
                        f"weaviate-v{config.weaviate_version}-linux-amd64.tar.gz.sha256")
    if config.nginx_tls == "letsencrypt" and (config.nginx_server_name == "_" or
                                              not config.nginx_letsencrypt_email):
        problems.append("nginx_tls: 'letsencrypt' needs nginx_server_name (a DNS name) and "
                        "nginx_letsencrypt_email")
    if bool(config.node_apt_repository) != bool(config.node_apt_key_url):
        problems.append("node_apt_repository: set it together with node_apt_key_url")
    problems += _app_source_problems(config)
    low, high = config.ports_reassign_range
    if low >= high:
        problems.append(f"ports_reassign_range: {low} is not below {high}")
    if config.weaviate_source == "upload" and config.weaviate_local_tarball is None:
        problems.append("weaviate_local_tarball: required when weaviate_source is 'upload'")
    return problems


GIT_PREFIXES = ("git@", "ssh://", "https://", "http://", "git://", "file://")


def is_git(source: str) -> bool:
    """Is ``app_source`` a git URL (fetched on the control machine) rather than a checkout?"""
    return source.startswith(GIT_PREFIXES) or source.endswith(".git")


def uses_ssh(source: str) -> bool:
    """Does git reach ``source`` over SSH (and so need the host's pinned key)?"""
    return source.startswith(("git@", "ssh://"))


def _app_source_problems(config: Config) -> list[str]:
    if not is_git(config.app_source):
        return []
    problems = []
    if not config.app_source_ref:
        problems.append("app_source_ref: required when app_source is a git URL (a branch, tag "
                        "or commit)")
    if uses_ssh(config.app_source) and not config.app_source_known_hosts:
        problems.append("app_source_known_hosts: required for an SSH git URL (the git host's "
                        "key lines, as `ssh-keyscan HOST` prints them)")
    return problems


def _monit_problems(config: Config) -> list[str]:
    known = config.monit_service_names()
    problems = []
    for i, name in enumerate(config.monit_paused):
        if name not in known:
            hint = get_close_matches(name, known, n=1)
            suffix = f" (did you mean {hint[0]}?)" if hint else f" (one of {', '.join(known)})"
            problems.append(f"monit_paused[{i}]: {name!r} is not a service Monit watches{suffix}")
    return problems


def _duplicates(key: str, names: list[str]) -> list[str]:
    seen: set[str] = set()
    problems = []
    for i, name in enumerate(names):
        if name in seen:
            problems.append(f"{key}[{i}].name: {name!r} is defined twice")
        seen.add(name)
    return problems


def _describe(error: dict[str, Any], known_keys: list[str]) -> str:
    path = _format_path(error["loc"])
    kind, value = error["type"], error.get("input")
    if kind == "extra_forbidden":
        parent = error["loc"][:-1]
        candidates = known_keys if not parent else []
        hint = get_close_matches(str(error["loc"][-1]), candidates, n=1)
        suffix = f" (did you mean {hint[0]}?)" if hint else ""
        return f"{path}: unknown key{suffix}"
    if kind == "missing":
        return f"{path}: missing (every key needs a value in group_data/all.py)"
    if kind in ("greater_than_equal", "less_than_equal"):
        if "port" in path.rsplit(".", 1)[-1]:
            return f"{path}: {value} is not a valid port (1-65535)"
        bound = error["ctx"].get("ge", error["ctx"].get("le"))
        relation = "at least" if kind == "greater_than_equal" else "at most"
        return f"{path}: {value!r} must be {relation} {bound}"
    if kind == "literal_error":
        return f"{path}: {value!r} is not one of {error['ctx']['expected']}"
    if kind == "string_pattern_mismatch":
        return f"{path}: {value!r} does not match {error['ctx']['pattern']}"
    if kind == "value_error":
        return f"{path}: {error['ctx']['error']}"
    expected = _EXPECTED.get(kind)
    if expected:
        return f"{path}: expected {expected}, got {type(value).__name__} {value!r}"
    return f"{path}: {error['msg']}"


_EXPECTED = {
    "int_type": "an integer",
    "int_parsing": "an integer",
    "bool_type": "true or false",
    "string_type": "a string",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
}


def _format_path(loc: tuple) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part in ("int", "str"):  # pydantic names the arm of a union: noise here
            continue
        else:
            path += f".{part}" if path else str(part)
    return path or "(top level)"


def validate(data: dict[str, Any], secret_names: Collection[str]) -> Config:
    """Validate deploy data; raise ConfigError listing every problem with its key path.

    ``secret_names`` are the secrets a key such as ``postgres_roles[].password_secret`` may
    name (``secrets.NAMES``): the caller passes them so the schema never imports the
    module that loads secrets.
    """
    ours = {
        key: value
        for key, value in data.items()
        if not key.startswith(PYINFRA_DATA_PREFIXES) and key not in INVENTORY_KEYS
    }
    try:
        config = Config(**ours)
    except ValidationError as e:
        known = list(Config.model_fields)
        problems = [_describe(error, known) for error in e.errors()]
        raise ConfigError(_unique(problems)) from None
    problems = _port_conflicts(config) + _data_service_problems(config, secret_names)
    problems += _backup_problems(config) + _monit_problems(config)
    if problems:
        raise ConfigError(problems)
    return config


def _unique(lines: list[str]) -> list[str]:
    return list(dict.fromkeys(lines))
