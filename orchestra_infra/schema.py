"""The typed schema of all deploy data, and the checks that span several keys.

The schema holds types and constraints only; every default lives, documented, in
``group_data/all.py``. A key missing there is a bug this module reports.
"""

from __future__ import annotations

import ipaddress
import posixpath
import re
import unicodedata
import zoneinfo
from collections.abc import Callable, Collection
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
# Host data the inventories set themselves: a sandbox host's name; a host marked `drain` in
# hosts/ENV (still in the mesh, no longer among the edge's upstreams).
INVENTORY_KEYS = {"sandbox_name", "drain"}

_SIZE = re.compile(r"^(\d+)([KMGT])$")
_SIZE_FACTORS = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_NAME = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
_PATH = re.compile(r"^[A-Za-z0-9._+@/-]+$")
_TIMESPAN = re.compile(r"^\d+(s|min|h|day|week|month|year)$")
_LOCALE = re.compile(r"^(C|[a-z]{2,3}_[A-Z]{2})\.UTF-8$")


# --- Hostile input: rules every value obeys, whatever its key -------------------------
# Values reach root shells, unit files and config files whose syntax is line-based: a
# newline, carriage return, NUL or escape in any string would start a new directive or
# command there. Every string of the data (at any depth) and every secret is checked here,
# so a key added later is covered without a rule of its own.


def control_character(value: str) -> str | None:
    """The first control character (or Unicode line/paragraph separator) in value, as
    ``repr`` shows it; None when there is none."""
    for char in value:
        if unicodedata.category(char) in ("Cc", "Zl", "Zp"):
            return repr(char)
    return None


def control_character_problems(value: Any, path: str) -> list[str]:
    """One line per string below ``value`` (dicts, lists, tuples) holding a control
    character, named by its key path (``postgres_roles[0].name``)."""
    if isinstance(value, str):
        char = control_character(value)
        return [f"{path}: contains the control character {char}: no value may hold a "
                "newline, carriage return, NUL, escape or other control character"] if char else []
    problems: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str) and control_character(key):
                problems.append(f"{path}: the key {key!r} contains a control character")
            problems += control_character_problems(item, f"{path}.{key}")
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            problems += control_character_problems(item, f"{path}[{i}]")
    return problems


# Directories the deploy creates, chowns and chmods: never a system directory itself.
SYSTEM_DIRECTORIES = frozenset({
    "/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib64", "/media", "/mnt", "/opt",
    "/proc", "/root", "/run", "/sbin", "/srv", "/sys", "/tmp", "/usr", "/usr/bin",
    "/usr/lib", "/usr/local", "/usr/local/bin", "/usr/local/lib", "/usr/local/sbin",
    "/usr/sbin", "/usr/share", "/var", "/var/backups", "/var/cache", "/var/lib",
    "/var/lib/private", "/var/log", "/var/run", "/var/spool", "/var/tmp", "/var/www",
})


def parse_size(value: str) -> int:
    """``"512M"`` -> bytes. Sizes are whole numbers with a K, M, G or T suffix."""
    match = _SIZE.fullmatch(value)
    if not match:
        raise ValueError(f"{value!r} is not a size (use a whole number and K, M, G or T: 512M, 2G)")
    number, unit = match.groups()
    return int(number) * _SIZE_FACTORS[unit]


def _size(value: str) -> str:
    parse_size(value)
    return value


def _at_least(minimum: str, why: str):
    def check(value: str) -> str:
        if parse_size(value) < parse_size(minimum):
            raise ValueError(f"{value!r} is below {minimum}: {why}")
        return value
    return check


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
    if not _PATH.fullmatch(value):
        raise ValueError(f"{value!r} has a character other than letters, digits and . _ - + @ /")
    return value


def _dedicated_directory(value: str) -> str:
    _absolute_path(value)
    if value in SYSTEM_DIRECTORIES:
        raise ValueError(f"{value!r} is a system directory: the deploy chowns and chmods this "
                         f"directory, so name a dedicated subdirectory (e.g. {value}/orchestra)")
    return value


# Debian policy 5.6.1: lower case letters, digits, + - . ; at least two characters;
# starts with a letter or digit (so never with "-": apt would read an option).
_APT_PACKAGE = re.compile(r"[a-z0-9][a-z0-9+.-]+")


def _apt_package(value: str) -> str:
    if not _APT_PACKAGE.fullmatch(value):
        raise ValueError(f"{value!r} is not a Debian package name (lower case letters, digits, "
                         "+ - .; starting with a letter or digit)")
    return value


# The common subset of RFC 5321's dot-atom local part and a DNS domain with a top-level
# label: what certbot and an SMTP relay accept, and nothing a config file or a shell would
# read as syntax.
_EMAIL_ADDRESS = re.compile(
    r"[A-Za-z0-9_%+-]+(\.[A-Za-z0-9_%+-]+)*"
    r"@([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}")


def _email(value: str) -> str:
    if len(value) > 254 or not _EMAIL_ADDRESS.fullmatch(value):
        raise ValueError(f"{value!r} is not an e-mail address (name@example.com)")
    return value


_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST_NAME = rf"{_LABEL}(\.{_LABEL})*"
_URL = re.compile(r"(?P<scheme>https?)://(?P<host>" + _HOST_NAME + r"|\[[0-9A-Fa-f:.]+\])"
                  r"(:(?P<port>[0-9]{1,5}))?(?P<path>/[A-Za-z0-9._~%/{}+=-]*)?")
LOOPBACK_NAMES = ("localhost", "ip6-localhost")


def is_loopback(host_name: str) -> bool:
    host_name = host_name.strip("[]")
    if host_name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host_name).is_loopback
    except ValueError:
        return False


PRIVATE_NETWORKS = tuple(ipaddress.ip_network(n) for n in (
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "fc00::/7",
    "fe80::/10"))


def is_private_address(host_name: str) -> bool:
    """An IP literal of a private network (RFC 1918, fc00::/7, link-local): never a name,
    which DNS could point anywhere."""
    try:
        address = ipaddress.ip_address(host_name.strip("[]"))
    except ValueError:
        return False
    return any(address in network for network in PRIVATE_NETWORKS)


def _url(value: str, http_on: Callable[[str], bool] = is_loopback) -> str:
    # Only https, except to this host itself: an http URL on the internet can be answered
    # by anyone on the path. No query, credentials or fragment: nothing a config file, an
    # apt source line or a shell word would split on.
    match = _URL.fullmatch(value)
    if not match:
        raise ValueError(f"{value!r} is not a plain https URL (https://host[:port]/path; "
                         "letters, digits and . _ ~ % / - in the path)")
    if match["scheme"] == "http" and not http_on(match["host"]):
        where = ("loopback" if http_on is is_loopback else
                 "loopback or a private network's IP address")
        raise ValueError(f"{value!r} is not https: plain http is accepted only on {where}")
    if match["port"] and not 1 <= int(match["port"]) <= 65535:
        raise ValueError(f"{value!r} has no valid port")
    return value


def _apt_url(value: str) -> str:
    # An apt source or its key: https, or plain http on loopback or a private network's IP
    # literal (a local mirror, the sandbox's NodeSource stand-in on its gateway), where apt
    # still checks every index against the signed-by key.
    return _url(value, lambda host: is_loopback(host) or is_private_address(host))


# A git ref as `git check-ref-format` allows it, a commit id included; never an option.
_GIT_REF = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._/-]*")
_GIT_URL = re.compile(r"(git@[A-Za-z0-9.-]+:|(ssh|https|file)://)[A-Za-z0-9._~%/:@+-]+")


def _git_ref(value: str) -> str:
    if not _GIT_REF.fullmatch(value) or ".." in value or value.endswith((".", "/", ".lock")):
        raise ValueError(f"{value!r} is not a git branch, tag or commit (letters, digits and "
                         ". _ / -, not starting with - or .)")
    return value


def _app_source(value: str) -> str:
    # git reads an argument starting with "-" as an option (--upload-pack=COMMAND runs it
    # on this machine): a source is a checkout path or a git URL, never anything else.
    if value.startswith(("git@", "ssh://", "https://", "file://")):
        if not _GIT_URL.fullmatch(value):
            raise ValueError(f"{value!r} is not a git URL this deploy fetches (git@host:path, "
                             "ssh://, https:// or file://, without spaces or quotes)")
        return value
    if value.startswith(("http://", "git://")):
        raise ValueError(f"{value!r}: unauthenticated git transports are refused; use "
                         "https:// or ssh://")
    if value.startswith("-") or not _PATH.fullmatch(value) or ".." in value.split("/"):
        raise ValueError(f"{value!r} is not a checkout path (letters, digits and . _ - + @ /, "
                         "no .., not starting with -) nor a git URL")
    return value


def _no_reserved(reserved: Collection[str], prefixes: tuple[str, ...], why: str):
    def check(value: str) -> str:
        if value in reserved or value.startswith(prefixes):
            raise ValueError(f"{value!r} is reserved: {why}")
        return value
    return check


def _posix_name(value: str) -> str:
    if not _NAME.fullmatch(value):
        raise ValueError(f"{value!r} is not a valid user or group name")
    return value


def _timezone(value: str) -> str:
    if value not in zoneinfo.available_timezones():
        raise ValueError(f"{value!r} is not a known time zone (e.g. UTC, Europe/Berlin)")
    return value


def _locale(value: str) -> str:
    if not _LOCALE.fullmatch(value):
        raise ValueError(f"{value!r} is not a UTF-8 locale (e.g. en_US.UTF-8, C.UTF-8)")
    return value


def _timespan(value: str) -> str:
    if not _TIMESPAN.fullmatch(value):
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
# Services only the stack reaches run unprivileged: never a port below 1024.
InternalPort = Annotated[int, Field(strict=True, ge=1024, le=65535)]
Size = Annotated[str, AfterValidator(_size)]
AbsolutePath = Annotated[str, AfterValidator(_absolute_path)]
DedicatedDirectory = Annotated[str, AfterValidator(_dedicated_directory)]
AptPackage = Annotated[str, AfterValidator(_apt_package)]
Email = Annotated[str, AfterValidator(_email)]
Url = Annotated[str, AfterValidator(_url)]
AptUrl = Annotated[str, AfterValidator(_apt_url)]
PosixName = Annotated[str, AfterValidator(_posix_name)]
Network = Annotated[str, AfterValidator(_network)]
CaFile = Annotated[str, AfterValidator(_ca_file)]


# "ssh -Q cipher" names: letters, digits and . @ - only.
SshAlgorithm = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9.@-]*$")]
# net.ipv4.conf.all.rp_filter; a slash form (net/ipv4/...) is sysctl's too, but one spelling.
SysctlKey = Annotated[str, Field(pattern=r"^[a-z0-9_]+(\.[A-Za-z0-9_-]+)+$")]
SysctlValue = Annotated[str, Field(pattern=r"^[A-Za-z0-9_. :/-]+$")]
ListenAddress = Annotated[str, Field(pattern=r"^(\*|[0-9A-Fa-f.:]+|[A-Za-z0-9.-]+)$")]
# An OpenSSH known_hosts line: host pattern(s), key type, base64 key, optional comment;
# no marker (@revoked/@cert-authority) and nothing but printable text.
KnownHostsLine = Annotated[str, Field(
    pattern=r"^[A-Za-z0-9.:\[\],*?!_-]+ [a-z0-9@.-]+ [A-Za-z0-9+/]+=*( [ -~]*)?$")]
# DROP DATABASE ... WITH (FORCE), used by restores, is PostgreSQL 13's.
POSTGRES_MIN_VERSION = 13
# Redis's own default user and the ACL users this deploy defines itself.
REDIS_RESERVED_USERS = frozenset({"default", "admin", "prometheus"})


class _Block(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class BaseData(_Block):
    environment: Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]*$")]
    timezone: Annotated[str, AfterValidator(_timezone)]
    locale: Annotated[str, AfterValidator(_locale)]
    apt_cache_time: Annotated[int, Field(ge=0)]
    apt_lock_timeout: Annotated[int, Field(ge=0, le=7200)]
    base_packages: list[AptPackage]
    unattended_upgrades: bool
    unattended_upgrades_reboot: bool
    service_user: Annotated[PosixName, AfterValidator(_no_reserved(
        {"root", "ubuntu", "nobody"}, (), "the service user owns the app's files; never root, "
        "the login user or nobody"))]
    install_root: DedicatedDirectory
    config_root: DedicatedDirectory
    log_root: DedicatedDirectory
    state_root: DedicatedDirectory
    journald_max_use: Annotated[Size, AfterValidator(_at_least("16M", "journald needs room "
                                                                "for a few journal files"))]
    journald_max_file_size: Annotated[Size, AfterValidator(_at_least("1M", "journald's own "
                                                                     "smallest file"))]
    journald_max_retention: Annotated[str, AfterValidator(_timespan)]
    extra_ca_certificates: list[CaFile]
    require_gpu: bool


class SecurityData(_Block):
    sshd_port: Port
    sshd_allow_users: list[PosixName]
    sshd_max_auth_tries: Annotated[int, Field(ge=1, le=10)]
    sshd_ciphers: list[SshAlgorithm]
    sshd_kex_algorithms: list[SshAlgorithm]
    sshd_macs: list[SshAlgorithm]
    firewall_enabled: bool
    firewall_allow_tcp_ports: list[Port]
    firewall_trusted_networks: list[Network]
    sysctl_settings: dict[SysctlKey, int | SysctlValue]


MCP_NAME = re.compile(r"^[a-z][a-z0-9-]{0,31}$")


def _banner(lines: list[str]) -> list[str]:
    # getty expands backslash escapes in /etc/issue; sshd sends the text as it is.
    if not "".join(lines).strip():
        raise ValueError("is empty: write the text every login shows")
    if any("\\" in line or not line.isprintable() for line in lines):
        raise ValueError("may hold printable characters only (a line each), no backslash")
    return lines


_MODULE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


def _module(value: str) -> str:
    if not _MODULE.match(value):
        raise ValueError(f"{value!r} is not a kernel module name")
    return value


class HardeningData(_Block):
    """Host hardening beyond sshd and the firewall (Lynis): see group_data/all.py."""

    login_banner: Annotated[list[Annotated[str, Field(max_length=200)]],
                            Field(min_length=1, max_length=20), AfterValidator(_banner)]
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
    port: InternalPort


class PortsData(_Block):
    nginx_http_port: Port
    nginx_https_port: Port
    api_port: InternalPort
    api_instances: Annotated[int, Field(ge=1, le=32)]
    admin_port: InternalPort
    postgres_port: InternalPort
    redis_port: InternalPort
    weaviate_port: InternalPort
    weaviate_grpc_port: InternalPort
    monit_port: InternalPort
    prometheus_port: InternalPort
    alertmanager_port: InternalPort
    node_exporter_port: InternalPort
    postgres_exporter_port: InternalPort
    redis_exporter_port: InternalPort
    nginx_exporter_port: InternalPort
    blackbox_exporter_port: InternalPort
    mtail_port: InternalPort
    status_share_port: InternalPort
    mcp_servers: dict[Annotated[str, Field(pattern=MCP_NAME.pattern)], McpServer]
    mcp_instances: Annotated[int, Field(ge=1, le=8)]
    mcp_instance_port_step: Annotated[int, Field(ge=1, le=1000)]
    ports_auto_reassign: bool
    ports_reassign_range: tuple[InternalPort, InternalPort]


_SQL_NAME = r"^[a-z_][a-z0-9_]{0,62}$"
SqlName = Annotated[str, Field(pattern=_SQL_NAME)]
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


# PostgreSQL's superuser, its predefined roles and the exporter's role are the deploy's.
PostgresRoleName = Annotated[SqlName, AfterValidator(_no_reserved(
    {"postgres", "prometheus", "public"}, ("pg_",), "PostgreSQL's own (postgres, pg_*, "
    "public) or the metrics exporter's role"))]
PostgresDatabaseName = Annotated[SqlName, AfterValidator(_no_reserved(
    {"postgres", "template0", "template1"}, (), "PostgreSQL's own database"))]


class PostgresRole(_Block):
    name: PostgresRoleName
    password_secret: str
    connect: list[PostgresDatabaseName] = []


class PostgresDatabase(_Block):
    name: PostgresDatabaseName
    owner: PostgresRoleName
    extensions: list[SqlName] = []


# PostgreSQL's own minimum of each memory setting (postgresql.conf, in kB).
POSTGRES_SIZE_MINIMUMS_KB = {"postgres_shared_buffers": 128, "postgres_effective_cache_size": 8,
                             "postgres_work_mem": 64, "postgres_maintenance_work_mem": 1024}


class PostgresData(_Block):
    postgres_version: Annotated[int, Field(ge=POSTGRES_MIN_VERSION, le=18)] | None
    postgres_apt_repository: AptUrl | None
    postgres_apt_key_url: AptUrl | None
    postgres_listen_addresses: list[ListenAddress]
    postgres_allowed_networks: list[Network]
    postgres_max_connections: Annotated[int, Field(ge=10, le=10000)]
    postgres_shared_buffers: Size | None
    postgres_effective_cache_size: Size | None
    postgres_work_mem: Size | None
    postgres_maintenance_work_mem: Size | None
    postgres_pgvector: bool
    postgres_roles: list[PostgresRole]
    postgres_databases: list[PostgresDatabase]

    @field_validator(*POSTGRES_SIZE_MINIMUMS_KB)
    @classmethod
    def _postgres_minimum(cls, value: str | None, info: ValidationInfo) -> str | None:
        # Written in kB (postgres.tuning), so no size rounds down to a smaller one.
        minimum = POSTGRES_SIZE_MINIMUMS_KB[info.field_name]
        if value is not None and parse_size(value) < minimum * 1024:
            raise ValueError(f"{value!r} is below PostgreSQL's minimum of {minimum}kB")
        if value is not None and parse_size(value) > (2**31 - 1) * 1024:
            raise ValueError(f"{value!r} is above PostgreSQL's maximum of 2147483647kB")
        return value


class RedisData(_Block):
    redis_bind: list[Annotated[str, Field(pattern=r"^-?[0-9A-Fa-f.:]+$")]]
    redis_maxmemory: Annotated[Size, AfterValidator(_at_least("1M", "Redis needs room for its "
                                                               "own structures"))]
    redis_maxmemory_policy: Literal[
        "noeviction", "allkeys-lru", "allkeys-lfu", "allkeys-random",
        "volatile-lru", "volatile-lfu", "volatile-random", "volatile-ttl",
    ]
    redis_app_user: Annotated[PosixName, AfterValidator(_no_reserved(
        REDIS_RESERVED_USERS, (), "Redis's own user and the ones this deploy defines"))]


class WeaviateData(_Block):
    weaviate_version: Annotated[str, Field(pattern=r"^\d+\.\d+\.\d+$")]
    weaviate_url: Url
    weaviate_sha256: Sha256 | None
    weaviate_source: Literal["download", "upload"]
    weaviate_local_tarball: AbsolutePath | None
    weaviate_data_dir: DedicatedDirectory
    weaviate_backup_dir: DedicatedDirectory
    weaviate_memory_max: Annotated[Size, AfterValidator(_at_least("256M", "Weaviate does not "
                                                                   "start in less"))]
    weaviate_limit_nofile: Annotated[int, Field(ge=1024)]
    weaviate_keep_versions: Annotated[int, Field(ge=1, le=10)]


class NginxData(_Block):
    nginx_server_name: Annotated[str, Field(pattern=r"^(_|[A-Za-z0-9.-]+)$")]
    nginx_tls: Literal["selfsigned", "letsencrypt", "none"]
    nginx_letsencrypt_email: Email | None
    nginx_api_rate: Annotated[str, Field(pattern=r"^\d+r/[sm]$")]
    nginx_api_burst: Annotated[int, Field(ge=0)]
    nginx_api_read_timeout: Annotated[int, Field(strict=True, ge=1, le=86400)]
    nginx_api_idempotent_read_timeout: Annotated[int, Field(strict=True, ge=1, le=86400)]
    nginx_client_max_body_size: Annotated[str, Field(pattern=r"^\d+[kmg]?$")]
    nginx_stub_status_port: InternalPort


EdgeCheck = Literal["basic", "mtls", "allowlist"]


class EdgeAuth(_Block):
    """What a request must pass, per group of routes (every check listed; [] = public)."""
    admin: list[EdgeCheck]
    mcp: list[EdgeCheck]
    api: list[EdgeCheck]


class EdgeData(_Block):
    edge_auth: EdgeAuth
    edge_auth_user: Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]{1,64}$")]
    edge_auth_bcrypt_cost: Annotated[int, Field(ge=4, le=14)]
    edge_public_api_paths: list[Annotated[str, Field(pattern=r"^/api/([A-Za-z0-9._~-]+/)*$")]]
    edge_client_ca: CaFile | None
    edge_allow_networks: list[Network]
    nginx_mcp_rate: Annotated[str, Field(pattern=r"^\d+r/[sm]$")]
    nginx_mcp_burst: Annotated[int, Field(ge=0)]
    nginx_mcp_connections: Annotated[int, Field(ge=1, le=100000)]


def _edge_problems(config: Config) -> list[str]:
    problems = []
    used: set[str] = set()
    for group, checks in config.edge_auth:
        used.update(checks)
        if len(set(checks)) != len(checks):
            problems.append(f"edge_auth.{group}: a check is listed twice")
    if "mtls" in used and config.nginx_tls == "none":
        problems.append("edge_auth: 'mtls' needs TLS at nginx (nginx_tls is 'none')")
    if "mtls" in used and config.edge_client_ca is None:
        problems.append("edge_client_ca: required by 'mtls' in edge_auth (the PEM file of the "
                        "CA that signs client certificates)")
    if "allowlist" in used and not config.edge_allow_networks:
        problems.append("edge_allow_networks: required by 'allowlist' in edge_auth (the "
                        "addresses or networks allowed)")
    if "/api/" in config.edge_public_api_paths and config.edge_auth.api:
        problems.append("edge_public_api_paths: '/api/' makes every API route public; say so "
                        "with edge_auth.api = [] instead")
    return problems


class AppData(_Block):
    app_source: Annotated[str, AfterValidator(_app_source)]
    app_source_ref: Annotated[str, AfterValidator(_git_ref)] | None
    app_source_known_hosts: list[KnownHostsLine]
    app_releases_keep: Annotated[int, Field(ge=2, le=50)]
    app_preflight_port: InternalPort
    app_health_timeout: Annotated[int, Field(ge=5, le=600)]
    supervisor_startsecs: Annotated[int, Field(ge=0, le=120)]
    supervisor_startretries: Annotated[int, Field(ge=1, le=100)]
    supervisor_stopwaitsecs: Annotated[int, Field(ge=1, le=600)]
    node_source: Literal["nodesource", "distro"]
    node_major: Annotated[int, Field(ge=18, le=40)]
    node_apt_repository: AptUrl | None
    node_apt_key_url: AptUrl | None
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
    match = _SFTP_URL.fullmatch(repository) or _SFTP_SHORT.fullmatch(repository)
    if not match:
        return None
    parts = match.groupdict()
    return {"user": parts["user"], "host": parts["host"].strip("[]"),
            "port": int(parts.get("port") or 22)}


# Nothing a shell, an env file or restic's own option parsing would read as syntax.
_RESTIC_REPOSITORY = re.compile(r"[A-Za-z0-9._~%/+@:\[\]=-]+")


def _restic_repository(value: str) -> str:
    if not _RESTIC_REPOSITORY.fullmatch(value):
        raise ValueError(f"{value!r} has a character other than letters, digits and "
                         ". _ ~ % / + @ : [ ] = -")
    if value.startswith("/"):
        return _dedicated_directory(value)  # the deploy creates and owns it
    if value.startswith("sftp:") and sftp_endpoint(value):
        return value
    if _S3.fullmatch(value):
        return value
    raise ValueError(f"{value!r} is not a restic repository this deploy supports: an absolute "
                     "path, sftp:user@host:/path, sftp://user@host:port//path or "
                     "s3:https://endpoint/bucket[/prefix]")


def _calendar(value: str) -> str:
    if not _CALENDAR.fullmatch(value):
        raise ValueError(f"{value!r} is not a systemd calendar expression (e.g. "
                         "'*-*-* 03:15:00', 'Sun *-*-* 05:30:00', 'daily')")
    return value


def _read_subset(value: str) -> str:
    # Both forms work with restic 0.12 (Ubuntu 22.04) and 0.14 (Debian 12); sizes need 0.13.
    match = _READ_SUBSET.fullmatch(value)
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
    backup_sftp_known_hosts: list[KnownHostsLine]
    backup_on_calendar: Annotated[str, AfterValidator(_calendar)]
    backup_randomized_delay: Annotated[str, AfterValidator(_timespan)]
    backup_keep_daily: Annotated[int, Field(ge=0, le=1000)]
    backup_keep_weekly: Annotated[int, Field(ge=0, le=1000)]
    backup_keep_monthly: Annotated[int, Field(ge=0, le=1000)]
    # Issue 11: the newest snapshots survive whatever the calendar rules say.
    backup_keep_last: Annotated[int, Field(ge=3, le=1000)]
    restic_repository_mount: AbsolutePath | None
    backup_start_empty: bool
    backup_check_on_calendar: Annotated[str, AfterValidator(_calendar)]
    backup_check_read_subset: Annotated[str, AfterValidator(_read_subset)]
    backup_work_dir: DedicatedDirectory
    backup_wait_timeout: Annotated[int, Field(ge=10, le=86400)]
    backup_redis_interval: Annotated[str, AfterValidator(_timespan)]
    backup_weaviate_interval: Annotated[str, AfterValidator(_timespan)]
    backup_store_keep_within: Annotated[str, Field(pattern=r"^(?:[1-9][0-9]{0,3}[ymdh]){1,4}$")]


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
    mount = (config.restic_repository_mount or "").rstrip("/")
    if mount and not (repository.startswith(mount + "/")):
        problems.append(f"restic_repository_mount: the repository {repository} is not below "
                        f"{mount} (an absolute restic_repository inside the mount point)")
    return problems


# pgBackRest's repository types on both distros' packages (2.38, 2.45): posix and s3. SFTP
# arrived in 2.46; a repository host over SSH needs pgBackRest on that host.
_PG_ARCHIVE_S3 = re.compile(r"^s3:https://(?P<endpoint>[A-Za-z0-9.-]+(?::\d{1,5})?)/"
                            r"(?P<bucket>[a-z0-9][a-z0-9.-]{1,62})(?P<path>(?:/[A-Za-z0-9._-]+)*)$")


def pg_archive_s3(repository: str) -> dict[str, str] | None:
    """``s3:https://endpoint/bucket/prefix`` -> endpoint, bucket, path; None for a path."""
    match = _PG_ARCHIVE_S3.fullmatch(repository)
    if not match:
        return None
    return {"endpoint": match["endpoint"], "bucket": match["bucket"],
            "path": match["path"] or "/"}


def _pg_archive_repository(value: str) -> str:
    if value.startswith("/"):
        return _dedicated_directory(value)
    if pg_archive_s3(value):
        return value
    if value.startswith("sftp:"):
        raise ValueError(f"{value!r}: pgBackRest reads SFTP repositories from 2.46 on, and "
                         "Ubuntu 22.04 ships 2.38, Debian 12 2.45: use a path on a persistent "
                         "file system (pg_archive_repository_mount) or s3:")
    raise ValueError(f"{value!r} is not a pgBackRest repository this deploy supports: an "
                     "absolute path or s3:https://endpoint/bucket[/prefix]")


class PgArchiveData(_Block):
    pg_archive_enabled: bool
    pg_archive_repository: Annotated[str, AfterValidator(_pg_archive_repository)]
    pg_archive_repository_mount: AbsolutePath | None
    pg_archive_s3_region: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,31}$")]
    # The recovery point of an instance loss: 60 s at most (issue 13).
    pg_archive_timeout: Annotated[int, Field(ge=1, le=60)]
    pg_archive_full_on_calendar: Annotated[str, AfterValidator(_calendar)]
    pg_archive_diff_on_calendar: Annotated[str, AfterValidator(_calendar)]
    pg_archive_keep_full: Annotated[int, Field(ge=1, le=100)]
    pg_archive_keep_diff: Annotated[int, Field(ge=1, le=1000)]
    pg_archive_check_on_calendar: Annotated[str, AfterValidator(_calendar)]
    pg_archive_queue_max: Size

    @field_validator("pg_archive_queue_max")
    @classmethod
    def _queue_max(cls, value: str) -> str:
        if parse_size(value) < 256 * 1024 * 1024:
            raise ValueError(f"{value!r} is below 256M (16 WAL segments)")
        return value


def _pg_archive_problems(config: Config) -> list[str]:
    problems = []
    repository = config.pg_archive_repository
    mount = (config.pg_archive_repository_mount or "").rstrip("/")
    if mount and not repository.startswith(mount + "/"):
        problems.append(f"pg_archive_repository_mount: the repository {repository} is not below "
                        f"{mount} (an absolute pg_archive_repository inside the mount point)")
    for key in ("restic_repository", "backup_work_dir"):
        other = getattr(config, key).rstrip("/")
        if repository.startswith("/") and (repository == other
                                           or repository.startswith(other + "/")
                                           or other.startswith(repository + "/")):
            problems.append(f"pg_archive_repository: {repository} overlaps {key} {other}")
    return problems


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
    alert_email_from: Email | None
    alert_email_to: list[Email]

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


def _mesh_network(value: str) -> str:
    network = ipaddress.ip_network(value, strict=False)
    if network.version != 4 or not network.is_private or network.prefixlen > 28:
        raise ValueError(f"{value!r} is not a private IPv4 network of at least 16 addresses "
                         "(e.g. 10.210.0.0/16)")
    if str(network) != value:
        raise ValueError(f"{value!r} has host bits set: write {network}")
    return value


class WireguardData(_Block):
    mesh_network: Annotated[Network, AfterValidator(_mesh_network)]
    wireguard_port: Port
    # A Linux interface name: at most 15 characters.
    wireguard_interface: Annotated[str, Field(pattern=r"^[a-z][a-z0-9]{0,14}$")]
    wireguard_userspace: bool


class Config(BaseData, SecurityData, HardeningData, PortsData, PostgresData, RedisData,
             WeaviateData, NginxData, EdgeData, AppData, BackupData, PgArchiveData, MonitData,
             PrometheusData, WireguardData):
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
                    "nginx_exporter_port", "blackbox_exporter_port", "mtail_port",
                    "status_share_port"):
            ports[key] = getattr(self, key)
        for name in self.mcp_servers:
            for i, port in enumerate(self.mcp_ports(name)):
                ports[f"mcp_servers.{name}" + (f"+{i}" if i else "")] = port
        return ports

    def mcp_offsets(self) -> list[int]:
        """How far each instance of an MCP server is from its first one's port."""
        return [i * self.mcp_instance_port_step for i in range(self.mcp_instances)]

    def mcp_ports(self, name: str) -> list[int]:
        """The port of each instance of MCP server `name`."""
        return [self.mcp_servers[name].port + offset for offset in self.mcp_offsets()]

    def monit_service_names(self) -> list[str]:
        """What Monit calls the services it may watch, on a host of every group."""
        return [s.monit for s in catalog.services(self) if s.monit]

    def public_tcp_ports(self) -> list[int]:
        """Ports the firewall opens to everyone; SSH is always among them."""
        ports = {self.sshd_port, self.nginx_http_port, self.nginx_https_port}
        ports.update(self.firewall_allow_tcp_ports)
        return sorted(ports)


def _port_path(key: str) -> str:
    """A port table key as the data path to fix: ``mcp_servers.task+1`` is instance 1 of
    ``mcp_servers.task.port``."""
    if not key.startswith("mcp_servers."):
        return key
    name, _, instance = key.partition("+")
    return f"{name}.port" + (f" (instance {instance}: + {instance} * mcp_instance_port_step)"
                             if instance else "")


def port_conflicts(config: Config) -> list[str]:
    seen: dict[int, str] = {}
    problems = []
    pairs = set()  # (key, key) without instances: task on memory's port collides twice
    for key, port in config.port_table().items():
        if port in seen:
            pair = (key.partition("+")[0], seen[port].partition("+")[0])
            if pair in pairs:
                continue
            pairs.add(pair)
        if port > 65535:
            problems.append(f"{key}: {port} is above 65535 (the first instance's port plus "
                            "the instances overflows)")
        elif port in seen:
            problems.append(f"{_port_path(key)}: {port} is already used by {seen[port]}")
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
            if error["ctx"].get("ge") == 1024:
                return (f"{path}: {value} is below 1024: an internal service's port is "
                        "1024-65535 (it runs unprivileged)")
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
    # Before the types: a control character anywhere is reported once, by its key path,
    # whatever the key (so keys added later are covered too).
    problems = [line for key, value in ours.items()
                for line in control_character_problems(value, key)]
    login = data.get("ssh_user") or "ubuntu"
    if ours.get("service_user") == login:
        problems.append(f"service_user: {login!r} is the login user (ssh_user): the service "
                        "user owns the app's files and must be a user of its own")
    if problems:
        raise ConfigError(problems)
    try:
        config = Config(**ours)
    except ValidationError as e:
        known = list(Config.model_fields)
        problems = [_describe(error, known) for error in e.errors()]
        raise ConfigError(_unique(problems)) from None
    problems = port_conflicts(config) + _data_service_problems(config, secret_names)
    problems += _backup_problems(config) + _pg_archive_problems(config)
    problems += _monit_problems(config) + _edge_problems(config)
    if problems:
        raise ConfigError(problems)
    return config


def _unique(lines: list[str]) -> list[str]:
    return list(dict.fromkeys(lines))
