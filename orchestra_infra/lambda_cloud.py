"""A small Lambda Cloud API client, so an instance can be launched and replaced from a script.

Standard library only (urllib). What it relies on, from Lambda's API reference (OpenAPI spec,
served at ``https://cloud.lambda.ai/api/v1/openapi.json``; the older ``cloud.lambdalabs.com``
host is the deprecated alias the first versions of the docs named):

- every success is ``{"data": ...}``, every failure ``{"error": {"code", "message",
  "suggestion"?}}`` (sometimes with ``field_errors``); programs must key on ``code``, the texts
  change. Codes met here: ``global/invalid-api-key`` (401),
  ``global/invalid-parameters`` (400), ``global/object-does-not-exist`` (404),
  ``instance-operations/launch/insufficient-capacity`` (400),
  ``instance-operations/launch/file-system-in-wrong-region`` (400), and HTTP 429 when a
  rate limit is hit;
- the API key goes in ``Authorization: Bearer KEY`` (recommended) or as the HTTP basic user;
- about one request per second in general, and ``/instance-operations/launch`` at most once
  per 12 s (five a minute; older docs said 10 s, so 12 s satisfies both);
- firewall rules are account-wide: ``GET /firewall-rules`` lists them and ``PUT`` replaces the
  whole list (``{"data": [{"protocol", "port_range": [lo, hi], "source_network",
  "description"}]}``); a new account allows only tcp 22. They do not apply in us-south-1.

The key is sent in a header only: never in a URL, an exception, a log line or a repr,
and only to the API's own origin: the base URL must be ``https://`` (plain ``http://`` only
on loopback, for the stand-in), and a redirect to another origin is refused, never followed
(urllib would carry the ``Authorization`` header along). A GET that meets a 5xx or a
dropped connection is retried with backoff (bounded), so one bad gateway while waiting for a
billed instance does not abort the wait; a POST is never retried: a launch that seemed to
fail may have gone through.
"""

from __future__ import annotations

import ipaddress
import json
import math
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

DEFAULT_BASE_URL = "https://cloud.lambda.ai/api/v1"
BASE_URL_ENV = "ORCHESTRA_LAMBDA_API_URL"
KEY_SECRET = "lambda_api_key"

GENERAL_INTERVAL = 1.0  # seconds between any two requests
LAUNCH_INTERVAL = 12.0  # seconds between two launch requests
MAX_RATE_LIMIT_RETRIES = 3  # retries after a 429, each after its Retry-After
MAX_RETRY_AFTER = 60.0  # a longer Retry-After is an error, not a wait
REQUEST_TIMEOUT = 30.0
MAX_GET_RETRIES = 5  # retries of a GET after a 5xx or a network failure: 1+2+4+8+16 s
MAX_BACKOFF = 16.0

# Status values of an instance that will never become active.
DEAD_STATUSES = ("unhealthy", "terminating", "terminated", "preempted")

INSUFFICIENT_CAPACITY = "instance-operations/launch/insufficient-capacity"
INVALID_API_KEY = "global/invalid-api-key"
UNREACHABLE = "orchestra/unreachable"
NOT_FOUND = "global/object-does-not-exist"


class LambdaError(Exception):
    """The API refused a request, or could not be reached. ``code`` is the API's error code
    (or ``orchestra/...`` for failures on this side: network, timeout, unreadable reply)."""

    def __init__(self, code: str, message: str, suggestion: str | None = None,
                 status: int | None = None):
        super().__init__(code, message, suggestion, status)
        self.code, self.message, self.suggestion, self.status = code, message, suggestion, status

    def __str__(self) -> str:
        text = f"{self.message.rstrip('.')} ({self.code})"
        return f"{text}. {self.suggestion}" if self.suggestion else text


class WaitTimeout(LambdaError):
    """An instance did not become active in time."""


# --- typed results ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Region:
    name: str
    description: str = ""

    @classmethod
    def from_api(cls, data: Mapping[str, Any] | None) -> Region:
        data = data or {}
        return cls(str(data.get("name", "")), str(data.get("description", "")))


@dataclass(frozen=True)
class InstanceType:
    name: str
    description: str
    gpu_description: str
    price_cents_per_hour: int
    vcpus: int
    memory_gib: int
    storage_gib: int
    gpus: int
    regions_with_capacity: tuple[Region, ...] = ()

    @classmethod
    def from_api(cls, data: Mapping[str, Any], regions: Iterable[Mapping] = ()) -> InstanceType:
        specs = data.get("specs") or {}
        return cls(
            name=str(data["name"]),
            description=str(data.get("description", "")),
            gpu_description=str(data.get("gpu_description", "")),
            price_cents_per_hour=int(data.get("price_cents_per_hour") or 0),
            vcpus=int(specs.get("vcpus") or 0),
            memory_gib=int(specs.get("memory_gib") or 0),
            storage_gib=int(specs.get("storage_gib") or 0),
            gpus=int(specs.get("gpus") or 0),
            regions_with_capacity=tuple(Region.from_api(r) for r in regions),
        )

    def has_capacity_in(self, region: str) -> bool:
        return any(r.name == region for r in self.regions_with_capacity)


@dataclass(frozen=True)
class Instance:
    id: str
    status: str
    name: str | None = None
    ip: str | None = None
    hostname: str | None = None
    region: str = ""
    instance_type: str = ""
    ssh_key_names: tuple[str, ...] = ()
    file_system_names: tuple[str, ...] = ()

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> Instance:
        return cls(
            id=str(data["id"]),
            status=str(data.get("status", "")),
            name=data.get("name"),
            ip=data.get("ip"),
            hostname=data.get("hostname"),
            region=Region.from_api(data.get("region")).name,
            instance_type=str((data.get("instance_type") or {}).get("name", "")),
            ssh_key_names=tuple(data.get("ssh_key_names") or ()),
            file_system_names=tuple(data.get("file_system_names") or ()),
        )

    @property
    def ready(self) -> bool:
        return self.status == "active" and bool(self.ip)


@dataclass(frozen=True)
class SshKey:
    id: str
    name: str

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> SshKey:
        return cls(str(data["id"]), str(data["name"]))


@dataclass(frozen=True)
class FileSystem:
    id: str
    name: str
    region: str
    mount_point: str = ""
    is_in_use: bool = False

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> FileSystem:
        return cls(str(data["id"]), str(data["name"]), Region.from_api(data.get("region")).name,
                   str(data.get("mount_point", "")), bool(data.get("is_in_use")))


@dataclass(frozen=True)
class FirewallRule:
    protocol: str  # tcp, udp, icmp or all
    source_network: str  # CIDR
    port_range: tuple[int, int] | None = None  # none for icmp
    description: str = ""

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> FirewallRule:
        ports = data.get("port_range")
        return cls(str(data["protocol"]), str(data["source_network"]),
                   (int(ports[0]), int(ports[1])) if ports else None,
                   str(data.get("description", "")))

    def to_api(self) -> dict[str, Any]:
        data: dict[str, Any] = {"protocol": self.protocol, "source_network": self.source_network,
                                "description": self.description}
        if self.port_range is not None:
            data["port_range"] = list(self.port_range)
        return data

    def allows(self, protocol: str, port: int, source_network: str) -> bool:
        """Whether this rule lets protocol/port in from every address of source_network."""
        if self.protocol not in (protocol, "all"):
            return False
        if self.port_range is not None and not self.port_range[0] <= port <= self.port_range[1]:
            return False
        try:
            return ipaddress.ip_network(source_network).subnet_of(
                ipaddress.ip_network(self.source_network))
        except (ValueError, TypeError):
            return self.source_network == source_network


def web_rules(ports: Iterable[int] = (80, 443), source_network: str = "0.0.0.0/0",
              ) -> list[FirewallRule]:
    return [FirewallRule("tcp", source_network, (port, port), f"orchestra: tcp {port}")
            for port in ports]


def mesh_rules(port: int, addresses: Iterable[str]) -> list[FirewallRule]:
    """WireGuard's UDP port from each host of an environment (its address as a /32, or an
    IPv6 address as a /128)."""
    return [FirewallRule("udp", f"{address}/{128 if ':' in address else 32}", (port, port),
                         f"orchestra: wireguard {address}")
            for address in sorted(set(addresses))]


def merge_rules(existing: list[FirewallRule], wanted: list[FirewallRule],
                ) -> tuple[list[FirewallRule], list[FirewallRule]]:
    """Existing rules plus the wanted ones they do not already allow: (merged, added).

    Existing rules are kept as they are and in their order, so a merge never closes anything.
    """
    added = []
    for rule in wanted:
        if rule.port_range is None:
            covered = any(r.protocol in (rule.protocol, "all") and r.source_network ==
                          rule.source_network for r in existing + added)
        else:
            covered = all(
                any(r.allows(rule.protocol, port, rule.source_network) for r in existing + added)
                for port in range(rule.port_range[0], rule.port_range[1] + 1)
            )
        if not covered:
            added.append(rule)
    return list(existing) + added, added


# --- rate limiting ----------------------------------------------------------------------------


@dataclass
class RateLimiter:
    """Spaces requests: every request GENERAL_INTERVAL after the previous one, every launch
    LAUNCH_INTERVAL after the previous launch. clock and sleep are injectable for tests."""

    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    intervals: dict[str, float] = field(
        default_factory=lambda: {"general": GENERAL_INTERVAL, "launch": LAUNCH_INTERVAL})
    _last: dict[str, float] = field(default_factory=dict)

    def wait(self, kind: str = "general") -> float:
        """Sleep until a request of this kind may go out; returns the seconds slept."""
        kinds = ["general"] + ([kind] if kind != "general" else [])
        now = self.clock()
        ready_at = max((self._last[k] + self.intervals.get(k, 0.0)
                        for k in kinds if k in self._last), default=now)
        slept = 0.0
        if ready_at > now:
            slept = ready_at - now
            self.sleep(slept)
        now = self.clock()
        for k in kinds:
            self._last[k] = now
        return slept

    def hold(self, seconds: float) -> None:
        """Sleep for a server-given Retry-After (bounded by the caller)."""
        self.sleep(seconds)


# --- the client -------------------------------------------------------------------------------


def base_url(environ: Mapping[str, str] | None = None) -> str:
    environ = os.environ if environ is None else environ
    return check_url((environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL).rstrip("/"))


def check_url(url: str) -> str:
    """The API base URL, if the key may be sent to it: https, or http on loopback only."""
    parts = urllib.parse.urlsplit(url)
    problem = None
    if any(ord(c) < 33 or ord(c) == 127 for c in url):
        problem = "contains a space or a control character"
    elif parts.scheme not in ("https", "http") or not parts.hostname:
        problem = "is not an https:// URL"
    elif parts.username is not None or parts.password is not None:
        problem = "carries a user or password (the key goes in a header)"
    elif parts.scheme == "http" and not _is_loopback(url):
        problem = "is plain http: the API key would cross the network unencrypted " \
                  "(http:// is accepted on loopback only)"
    if problem:
        raise LambdaError("orchestra/insecure-url", f"{BASE_URL_ENV} {url!r} {problem}",
                          "use https://")
    return url


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urllib.parse.urlsplit(url)
    return parts.scheme, (parts.hostname or "").lower(), parts.port


class _SameOriginRedirects(urllib.request.HTTPRedirectHandler):
    """Follows a redirect within the API's origin; refuses one to another (with the key)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if _origin(newurl) != _origin(req.full_url):
            scheme, hostname, port = _origin(newurl)
            fp.close()
            raise LambdaError("orchestra/redirect-refused",
                              f"{req.get_method()} {urllib.parse.urlsplit(req.full_url).path}: "
                              f"HTTP {code} to {scheme}://{hostname}{f':{port}' if port else ''}"
                              ", another origin: not followed (the API key is sent to "
                              "the API's origin only)", f"check {BASE_URL_ENV}", code)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _is_loopback(url: str) -> bool:
    host = urllib.parse.urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Client:
    """Lambda Cloud API calls, rate-limited, with typed results; raises LambdaError."""

    def __init__(self, api_key: str, url: str | None = None, *,
                 limiter: RateLimiter | None = None,
                 clock: Callable[[], float] | None = None,
                 sleep: Callable[[float], None] | None = None,
                 timeout: float = REQUEST_TIMEOUT,
                 notice: Callable[[str], None] | None = None):
        if not api_key:
            raise LambdaError("orchestra/no-api-key", "no Lambda Cloud API key given")
        self._auth = f"Bearer {api_key}"
        self.url = check_url((url or base_url()).rstrip("/"))
        self.clock = clock or time.monotonic
        self.sleep = sleep or time.sleep
        self.limiter = limiter or RateLimiter(clock=self.clock, sleep=self.sleep)
        self.timeout = timeout
        self.notice = notice or (lambda _message: None)  # tells a waiting operator why
        # A proxy from the environment is fine for the real API, never for a loopback stand-in.
        handlers = [urllib.request.ProxyHandler({})] if _is_loopback(self.url) else []
        self._opener = urllib.request.build_opener(*handlers, _SameOriginRedirects())

    def __repr__(self) -> str:
        return f"<lambda_cloud.Client {self.url}>"

    # The endpoints, one method each.

    def instance_types(self) -> list[InstanceType]:
        data = self._call("GET", "/instance-types")
        return sorted((InstanceType.from_api(v["instance_type"],
                                             v.get("regions_with_capacity_available") or ())
                       for v in data.values()), key=lambda t: t.name)

    def instances(self) -> list[Instance]:
        return [Instance.from_api(i) for i in self._call("GET", "/instances")]

    def instance(self, instance_id: str) -> Instance:
        quoted = urllib.parse.quote(instance_id, safe="")
        return Instance.from_api(self._call("GET", f"/instances/{quoted}"))

    def ssh_keys(self) -> list[SshKey]:
        return [SshKey.from_api(k) for k in self._call("GET", "/ssh-keys")]

    def file_systems(self) -> list[FileSystem]:
        return [FileSystem.from_api(f) for f in self._call("GET", "/file-systems")]

    def launch(self, instance_type: str, region: str, ssh_key: str,
               file_system: str | None = None, name: str | None = None) -> str:
        """Launch one instance; returns its id (it boots for a few minutes: see wait_active)."""
        body: dict[str, Any] = {"region_name": region, "instance_type_name": instance_type,
                                "ssh_key_names": [ssh_key], "quantity": 1}
        if file_system:
            body["file_system_names"] = [file_system]
        if name:
            body["name"] = name
        ids = self._call("POST", "/instance-operations/launch", body, kind="launch")["instance_ids"]
        if len(ids) != 1:
            raise LambdaError("orchestra/unexpected-reply", f"launch returned {len(ids)} ids")
        return str(ids[0])

    def terminate(self, instance_ids: Iterable[str]) -> list[Instance]:
        data = self._call("POST", "/instance-operations/terminate",
                          {"instance_ids": list(instance_ids)})
        return [Instance.from_api(i) for i in data["terminated_instances"]]

    def firewall_rules(self) -> list[FirewallRule]:
        return [FirewallRule.from_api(r) for r in self._call("GET", "/firewall-rules")]

    def set_firewall_rules(self, rules: Iterable[FirewallRule]) -> list[FirewallRule]:
        data = self._call("PUT", "/firewall-rules", {"data": [r.to_api() for r in rules]})
        return [FirewallRule.from_api(r) for r in data]

    # Built on them.

    def open_ports(self, ports: Iterable[int] = (80, 443), source_network: str = "0.0.0.0/0",
                   ) -> list[FirewallRule]:
        """Make the firewall allow tcp ports from source_network, keeping every existing rule.
        Returns the rules added; nothing is written when there are none."""
        merged, added = merge_rules(self.firewall_rules(), web_rules(ports, source_network))
        if added:
            self.set_firewall_rules(merged)
        return added

    def open_mesh_port(self, port: int, addresses: Iterable[str]) -> list[FirewallRule]:
        """Make the firewall allow udp port from each address, keeping every existing rule."""
        merged, added = merge_rules(self.firewall_rules(), mesh_rules(port, addresses))
        if added:
            self.set_firewall_rules(merged)
        return added

    def wait_active(self, instance_id: str, timeout: float = 900.0, interval: float = 10.0,
                    progress: Callable[[Instance], None] | None = None) -> Instance:
        """Poll until the instance is active with an address; bounded in time and in polls."""
        interval = max(interval, GENERAL_INTERVAL)
        deadline = self.clock() + timeout
        last = None
        for _ in range(int(timeout / interval) + 2):
            last = self.instance(instance_id)
            if progress:
                progress(last)
            if last.ready:
                return last
            if last.status in DEAD_STATUSES:
                raise LambdaError("orchestra/instance-failed",
                                  f"instance {instance_id} is {last.status}, it will not boot",
                                  "terminate it and launch another")
            remaining = deadline - self.clock()
            if remaining <= 0:
                break
            self.sleep(min(interval, remaining))
        status = last.status if last else "unknown"
        raise WaitTimeout("orchestra/timeout",
                          f"instance {instance_id} still {status} after {timeout:.0f} s",
                          "check it with `orchestra-infra lambda instances`; it still bills")

    # The wire.

    def _call(self, method: str, path: str, body: Any = None, kind: str = "general") -> Any:
        rate_limited = failed = 0
        # Bounded: every pass either returns, raises, or spends one of the two budgets.
        while True:
            self.limiter.wait(kind)
            try:
                status, headers, payload = self._send(method, path, body)
            except LambdaError as e:
                if e.code == UNREACHABLE and method == "GET" and failed < MAX_GET_RETRIES:
                    failed += 1
                    self._back_off(method, path, failed, e.message)
                    continue
                raise
            if status == 429 and rate_limited < MAX_RATE_LIMIT_RETRIES:
                delay = _retry_after(headers.get("Retry-After"), kind)
                if delay <= MAX_RETRY_AFTER:
                    rate_limited += 1
                    self.notice(f"{method} {path}: rate limited, retrying in {delay:g} s")
                    self.limiter.hold(delay)
                    continue
            if status >= 500 and method == "GET" and failed < MAX_GET_RETRIES:
                failed += 1
                self._back_off(method, path, failed, f"HTTP {status}")
                continue
            if 200 <= status < 300:
                if not isinstance(payload, dict) or "data" not in payload:
                    raise LambdaError("orchestra/unexpected-reply",
                                      f"{method} {path}: reply without 'data'", status=status)
                return payload["data"]
            raise _error(method, path, status, payload, failed)

    def _back_off(self, method: str, path: str, failures: int, why: str) -> None:
        delay = min(GENERAL_INTERVAL * 2 ** (failures - 1), MAX_BACKOFF)
        self.notice(f"{method} {path}: {why}, retrying in {delay:g} s "
                    f"({failures}/{MAX_GET_RETRIES})")
        self.limiter.hold(delay)

    def _send(self, method: str, path: str, body: Any) -> tuple[int, Mapping[str, str], Any]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method, headers={
            "Authorization": self._auth, "Accept": "application/json",
            **({"Content-Type": "application/json"} if data is not None else {}),
        })
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                status, headers, raw = response.status, response.headers, response.read()
        except urllib.error.HTTPError as e:
            status, headers, raw = e.code, e.headers, e.read()
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise LambdaError(UNREACHABLE,
                              f"cannot reach the Lambda Cloud API at {self.url}: {reason}",
                              f"check the network, or {BASE_URL_ENV}") from None
        try:
            payload = json.loads(raw) if raw else None
        except ValueError:
            payload = None
        return status, headers, payload


def _retry_after(value: str | None, kind: str) -> float:
    try:
        seconds = float(value) if value is not None else math.nan
    except ValueError:
        seconds = math.nan
    if math.isnan(seconds) or seconds < 0:
        return LAUNCH_INTERVAL if kind == "launch" else GENERAL_INTERVAL
    return seconds


def _error(method: str, path: str, status: int, payload: Any, retries: int = 0) -> LambdaError:
    error = payload.get("error") if isinstance(payload, dict) else None
    if isinstance(error, dict) and error.get("code"):
        message = str(error.get("message") or "no message")
        fields = payload.get("field_errors")
        if isinstance(fields, dict) and fields:
            message += " [" + "; ".join(f"{k}: {(v or {}).get('message', v)}"
                                        for k, v in fields.items()) + "]"
        return LambdaError(str(error["code"]), message, error.get("suggestion"), status)
    if status == 429:
        return LambdaError("orchestra/rate-limited", f"{method} {path}: still rate limited "
                           f"after {MAX_RATE_LIMIT_RETRIES} retries", "try again in a minute",
                           status)
    if status >= 500:
        after = f" after {retries} retries" if retries else ""
        return LambdaError("orchestra/server-error", f"{method} {path}: HTTP {status}{after}",
                           None if method == "GET" else "it may have gone through: check "
                           "`orchestra-infra lambda instances` before trying again", status)
    return LambdaError("orchestra/unexpected-reply",
                       f"{method} {path}: HTTP {status} without an API error", status=status)



def api_key(env: str, environ: Mapping[str, str] | None = None) -> tuple[str, str]:
    """ENV's Lambda Cloud API key and where it came from (a variable name or the secrets file).

    ``ORCHESTRA_SECRET_LAMBDA_API_KEY`` wins and needs no secrets file at all.
    """
    from . import secrets

    environ = os.environ if environ is None else environ
    variable = secrets.env_var(KEY_SECRET)
    if environ.get(variable):
        return environ[variable], variable
    loaded = secrets.load(env, environ)  # ConfigError names every problem of the file
    if KEY_SECRET not in loaded:
        raise LambdaError("orchestra/no-api-key",
                          f"no Lambda Cloud API key for {env}",
                          f"add {KEY_SECRET} to {secrets.secrets_path(env)} or set {variable}")
    return loaded[KEY_SECRET], str(secrets.secrets_path(env))
