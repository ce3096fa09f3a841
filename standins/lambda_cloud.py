"""lambda-standin: a local HTTP server that answers like the Lambda Cloud API. NOT Lambda Cloud.

The real API cannot be reached from here, so the client (``lambda_cloud``), its CLI and the
reprovision drill talk to this instead, on loopback only, through the same code path: point
``ORCHESTRA_LAMBDA_API_URL`` at it. It honours the contract ``lambda_cloud`` documents:

- ``GET /instance-types``, ``GET /instances``, ``GET /instances/{id}``,
  ``POST /instance-operations/launch``, ``POST /instance-operations/terminate``,
  ``GET /ssh-keys``, ``GET /file-systems``, ``GET``/``PUT /firewall-rules``, with the
  ``{"data": ...}`` and ``{"error": {"code", "message", "suggestion"}}`` envelopes;
- the key as ``Authorization: Bearer KEY``, ``Basic base64(KEY:)`` or ``Basic KEY``; anything
  else is a 401 ``global/invalid-api-key``;
- launch: checks its fields (400 ``global/invalid-parameters`` with ``field_errors``), answers
  400 ``instance-operations/launch/insufficient-capacity`` for a type without capacity in the
  region and ``.../file-system-in-wrong-region`` for a file system elsewhere, and 429 (with
  ``Retry-After``) for a second launch within ``launch_interval`` (10 s) of the previous one;
- a launched instance is ``booting`` (no address) until ``boot_delay`` has passed and its
  address source has answered, then ``active``; if the source fails it is ``unhealthy``.

The address source is any callable taking the instance (a dict: id, name, instance_type,
region) and returning its address; it runs in its own thread, so it may block while it boots
a real host (the reprovision drill hands out a fresh sandbox host this way). ``AddressPool``
hands out a fixed list. Failures can be injected for tests (``inject``): the next matching
requests are answered with a status of their own (a 502 from a gateway, with an HTML body
like a real one), a redirect to any ``location``, or a connection closed without an answer
(status 0), before the key is even checked. What it does not do: several instances per
launch, restart, SSH key creation or deletion, file system creation, images, general
1 request/s limiting, billing. The 429 body's code (``global/rate-limited``) is this
stand-in's: the reference checked does not document one, and the client keys on the status.

Run it for a drill: ``python -m standins.lambda_cloud --port P --key-file F
[--ip-pool a,b]`` (``--key K`` works too, but shows the key in ``ps``).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import ipaddress
import json
import math
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

REGIONS = {
    "us-east-1": "Virginia, USA",
    "us-west-1": "California, USA",
    "us-south-1": "Texas, USA",
    "us-midwest-1": "Illinois, USA",
}

DEFAULT_INSTANCE_TYPES: dict[str, dict[str, Any]] = {
    "gpu_1x_a10": {
        "description": "1x A10 (24 GB PCIe)", "gpu_description": "A10 (24 GB PCIe)",
        "price_cents_per_hour": 75,
        "specs": {"vcpus": 30, "memory_gib": 200, "storage_gib": 1400, "gpus": 1},
        "regions": ["us-east-1", "us-west-1"],
    },
    "gpu_1x_a100_sxm4": {
        "description": "1x A100 (40 GB SXM4)", "gpu_description": "A100 (40 GB SXM4)",
        "price_cents_per_hour": 129,
        "specs": {"vcpus": 30, "memory_gib": 200, "storage_gib": 512, "gpus": 1},
        "regions": ["us-east-1"],
    },
    "gpu_8x_h100_sxm5": {
        "description": "8x H100 (80 GB SXM5)", "gpu_description": "H100 (80 GB SXM5)",
        "price_cents_per_hour": 2392,
        "specs": {"vcpus": 208, "memory_gib": 1800, "storage_gib": 24780, "gpus": 8},
        "regions": [],  # never any capacity: the insufficient-capacity path
    },
}
DEFAULT_SSH_KEYS = ("orchestra",)
DEFAULT_FILE_SYSTEMS = {"orchestra-data": "us-east-1"}
# A new account's rules: SSH only.
DEFAULT_FIREWALL_RULES = (
    {"protocol": "tcp", "port_range": [22, 22], "source_network": "0.0.0.0/0",
     "description": "Allow SSH"},
)
# TEST-NET-2 (RFC 5737): documentation addresses, never routed.
DEFAULT_IP_POOL = tuple(f"198.51.100.{n}" for n in range(10, 20))

INVALID_KEY = ("global/invalid-api-key", "API key was invalid, expired, or deleted.",
               "Check your API key or create a new one, then try again.")


class AddressPool:
    """An address source handing out fixed addresses in order; raises when none is left."""

    def __init__(self, addresses: Iterable[str]):
        self._left = list(addresses)
        self._lock = threading.Lock()

    def __call__(self, instance: Mapping[str, Any]) -> str:
        with self._lock:
            if not self._left:
                raise RuntimeError("address pool exhausted")
            return self._left.pop(0)


@dataclass
class _Instance:
    id: str
    name: str | None
    type_name: str
    region: str
    ssh_key_names: list[str]
    file_system_names: list[str]
    launched_at: float
    ip: str | None = None
    failed: bool = False


class _ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, suggestion: str | None = None,
                 field_errors: dict[str, str] | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.suggestion, self.field_errors = suggestion, field_errors or {}
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.suggestion:
            error["suggestion"] = self.suggestion
        body: dict[str, Any] = {"error": error}
        if self.field_errors:
            body["field_errors"] = {k: {"code": "global/invalid-parameters", "message": v}
                                    for k, v in self.field_errors.items()}
        return body


@dataclass
class Fault:
    """An injected answer for the next ``times`` requests matching method and path (None:
    any): ``status`` 0 closes the connection unanswered; with ``location``, a redirect."""

    status: int
    method: str | None = None
    path: str | None = None
    location: str | None = None
    times: int = 1

    def matches(self, method: str, path: str) -> bool:
        return self.times > 0 and self.method in (None, method) and self.path in (None, path)


def _invalid(message: str, **field_errors: str) -> _ApiError:
    return _ApiError(400, "global/invalid-parameters", message,
                     "Check the request parameters and try again.", field_errors)


@dataclass
class LambdaStandin:
    """The stand-in's state and its HTTP server; a context manager that serves in a thread."""

    api_key: str
    host: str = "127.0.0.1"
    port: int = 0
    instance_types: dict[str, dict[str, Any]] = field(
        default_factory=lambda: json.loads(json.dumps(DEFAULT_INSTANCE_TYPES)))
    ssh_keys: tuple[str, ...] = DEFAULT_SSH_KEYS
    file_systems: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_FILE_SYSTEMS))
    firewall_rules: list[dict[str, Any]] = field(
        default_factory=lambda: json.loads(json.dumps(DEFAULT_FIREWALL_RULES)))
    boot_delay: float = 2.0
    address_source: Callable[[Mapping[str, Any]], str] | None = None
    launch_interval: float = 10.0
    clock: Callable[[], float] = time.monotonic
    quiet: bool = True
    # What clients did, for tests and drills.
    requests: list[tuple[str, str]] = field(default_factory=list)
    launches: list[dict[str, Any]] = field(default_factory=list)
    firewall_puts: int = 0
    faults: list[Fault] = field(default_factory=list)

    def __post_init__(self):
        if not ipaddress.ip_address(self.host).is_loopback:
            raise ValueError(f"lambda-standin listens on loopback only, not {self.host}")
        if self.address_source is None:
            self.address_source = AddressPool(DEFAULT_IP_POOL)
        self._lock = threading.Lock()
        self._instances: dict[str, _Instance] = {}
        self._last_launch: float | None = None
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- life cycle

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("lambda-standin is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> LambdaStandin:
        self._server = ThreadingHTTPServer((self.host, self.port), _Handler)
        self._server.daemon_threads = True
        self._server.standin = self  # type: ignore[attr-defined]
        # A short poll interval: stop() returns within 50 ms, which keeps tests fast.
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                        name="lambda-standin", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> LambdaStandin:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def inject(self, status: int, *, method: str | None = None, path: str | None = None,
               location: str | None = None, times: int = 1) -> Fault:
        """Answer the next ``times`` matching requests with ``status`` (see Fault)."""
        fault = Fault(status, method, path, location, times)
        with self._lock:
            self.faults.append(fault)
        return fault

    def take_fault(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.matches(method, path):
                    fault.times -= 1
                    return fault
        return None

    def set_capacity(self, instance_type: str, regions: Iterable[str]) -> None:
        with self._lock:
            self.instance_types[instance_type]["regions"] = list(regions)

    # --- the API, one method per endpoint; each returns the value of "data" or raises _ApiError

    def route(self, method: str, path: str, body: Any) -> Any:
        routes: dict[tuple[str, str], Callable[[Any], Any]] = {
            ("GET", "/instance-types"): self._instance_types,
            ("GET", "/instances"): self._instances_list,
            ("POST", "/instance-operations/launch"): self._launch,
            ("POST", "/instance-operations/terminate"): self._terminate,
            ("GET", "/ssh-keys"): self._ssh_keys,
            ("GET", "/file-systems"): self._file_systems,
            ("GET", "/firewall-rules"): self._firewall_rules,
            ("PUT", "/firewall-rules"): self._put_firewall_rules,
        }
        with self._lock:
            if method == "GET" and path.startswith("/instances/"):
                return self._instance_json(self._find(path.removeprefix("/instances/")))
            handler = routes.get((method, path))
            if handler is None:
                raise _ApiError(404, "global/not-found", f"No route {method} {path}.")
            return handler(body)

    def _instance_types(self, _body: Any) -> dict[str, Any]:
        return {name: {"instance_type": self._type_json(name),
                       "regions_with_capacity_available": [
                           {"name": r, "description": REGIONS.get(r, r)}
                           for r in spec["regions"]]}
                for name, spec in self.instance_types.items()}

    def _instances_list(self, _body: Any) -> list[dict[str, Any]]:
        return [self._instance_json(i) for i in self._instances.values()]

    def _launch(self, body: Any) -> dict[str, Any]:
        now = self.clock()
        if self._last_launch is not None and now - self._last_launch < self.launch_interval:
            wait = max(1, math.ceil(self.launch_interval - (now - self._last_launch)))
            raise _ApiError(429, "global/rate-limited",
                            "Too many launch requests: at most one every "
                            f"{self.launch_interval:g} seconds.",
                            f"Wait {wait} seconds and try again.",
                            headers={"Retry-After": str(wait)})
        self._last_launch = now
        request = self._check_launch(body)
        spec = self.instance_types[request["instance_type_name"]]
        if request["region_name"] not in spec["regions"]:
            raise _ApiError(400, "instance-operations/launch/insufficient-capacity",
                            "Not enough capacity to fulfill launch request.",
                            "Choose an instance type with more availability, or try again "
                            "later.")
        instance = _Instance(
            id=uuid.uuid4().hex, name=request.get("name"),
            type_name=request["instance_type_name"], region=request["region_name"],
            ssh_key_names=list(request["ssh_key_names"]),
            file_system_names=list(request.get("file_system_names") or []), launched_at=now,
        )
        self._instances[instance.id] = instance
        self.launches.append(dict(request))
        threading.Thread(target=self._assign_address, args=(instance,), daemon=True,
                         name=f"lambda-standin-boot-{instance.id[:8]}").start()
        return {"instance_ids": [instance.id]}

    def _check_launch(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise _invalid("The request body must be a JSON object.")
        problems: dict[str, str] = {}
        for name in ("region_name", "instance_type_name"):
            if not isinstance(body.get(name), str) or not body.get(name):
                problems[name] = "Required, a string."
        keys = body.get("ssh_key_names")
        if not isinstance(keys, list) or len(keys) != 1:
            problems["ssh_key_names"] = "Exactly one SSH key name is required."
        elif keys[0] not in self.ssh_keys:
            problems["ssh_key_names"] = f"No SSH key named {keys[0]!r}."
        systems = body.get("file_system_names", [])
        if not isinstance(systems, list) or len(systems) > 1:
            problems["file_system_names"] = "At most one file system name."
        elif systems and systems[0] not in self.file_systems:
            problems["file_system_names"] = f"No file system named {systems[0]!r}."
        if body.get("quantity", 1) != 1:
            problems["quantity"] = "Must be 1."
        name = body.get("name")
        if name is not None and (not isinstance(name, str) or not 1 <= len(name) <= 64):
            problems["name"] = "A string of 1 to 64 characters."
        type_name, region = body.get("instance_type_name"), body.get("region_name")
        if "instance_type_name" not in problems and type_name not in self.instance_types:
            problems["instance_type_name"] = f"Unknown instance type {type_name!r}."
        if "region_name" not in problems and region not in REGIONS:
            problems["region_name"] = f"Unknown region {region!r}."
        if problems:
            raise _invalid("Invalid launch parameters.", **problems)
        if systems and self.file_systems[systems[0]] != region:
            raise _ApiError(400, "instance-operations/launch/file-system-in-wrong-region",
                            f"File system {systems[0]!r} is in "
                            f"{self.file_systems[systems[0]]}, not {region}.",
                            "Launch in the file system's region.")
        return body

    def _terminate(self, body: Any) -> dict[str, Any]:
        ids = body.get("instance_ids") if isinstance(body, dict) else None
        if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
            raise _invalid("instance_ids must be a non-empty list of instance ids.",
                           instance_ids="A non-empty list of strings.")
        instances = [self._find(i) for i in ids]  # all or nothing
        terminated = []
        for instance in instances:
            del self._instances[instance.id]
            terminated.append({**self._instance_json(instance), "status": "terminated"})
        return {"terminated_instances": terminated}

    def _ssh_keys(self, _body: Any) -> list[dict[str, Any]]:
        return [{"id": uuid.uuid5(uuid.NAMESPACE_OID, k).hex, "name": k,
                 "public_key": f"ssh-ed25519 AAAA{k} standin"} for k in self.ssh_keys]

    def _file_systems(self, _body: Any) -> list[dict[str, Any]]:
        in_use = {n for i in self._instances.values() for n in i.file_system_names}
        return [{"id": uuid.uuid5(uuid.NAMESPACE_OID, name).hex, "name": name,
                 "mount_point": f"/home/ubuntu/{name}",
                 "region": {"name": region, "description": REGIONS.get(region, region)},
                 "is_in_use": name in in_use, "bytes_used": 0}
                for name, region in self.file_systems.items()]

    def _firewall_rules(self, _body: Any) -> list[dict[str, Any]]:
        return json.loads(json.dumps(self.firewall_rules))

    def _put_firewall_rules(self, body: Any) -> list[dict[str, Any]]:
        rules = body.get("data") if isinstance(body, dict) else None
        if not isinstance(rules, list):
            raise _invalid("The body must be {\"data\": [rule, ...]}.", data="A list of rules.")
        for n, rule in enumerate(rules):
            problem = _rule_problem(rule)
            if problem:
                raise _invalid(f"Invalid firewall rule {n}: {problem}", **{f"data.{n}": problem})
        self.firewall_rules = json.loads(json.dumps(rules))
        self.firewall_puts += 1
        return self._firewall_rules(None)

    # --- helpers (called with the lock held)

    def _find(self, instance_id: str) -> _Instance:
        instance = self._instances.get(instance_id)
        if instance is None:
            raise _ApiError(404, "global/object-does-not-exist",
                            f"Specified instance {instance_id!r} does not exist.",
                            "Check the instance id; terminated instances disappear.")
        return instance

    def _status(self, instance: _Instance) -> str:
        if instance.failed:
            return "unhealthy"
        if instance.ip and self.clock() >= instance.launched_at + self.boot_delay:
            return "active"
        return "booting"

    def _type_json(self, name: str) -> dict[str, Any]:
        spec = self.instance_types[name]
        return {"name": name, **{k: spec[k] for k in (
            "description", "gpu_description", "price_cents_per_hour", "specs")}}

    def _instance_json(self, instance: _Instance) -> dict[str, Any]:
        status = self._status(instance)
        ip = instance.ip if status == "active" else None
        return {
            "id": instance.id, "name": instance.name, "status": status, "ip": ip,
            "hostname": f"{ip.replace('.', '-')}.standin.invalid" if ip else None,
            "region": {"name": instance.region,
                       "description": REGIONS.get(instance.region, instance.region)},
            "instance_type": self._type_json(instance.type_name),
            "ssh_key_names": list(instance.ssh_key_names),
            "file_system_names": list(instance.file_system_names),
        }

    def _assign_address(self, instance: _Instance) -> None:
        described = {"id": instance.id, "name": instance.name,
                     "instance_type": instance.type_name, "region": instance.region}
        try:
            address = str(self.address_source(described))
        except Exception as e:  # any failure of the source is a failed boot
            if not self.quiet:
                print(f"lambda-standin: instance {instance.id}: no address: {e}",
                      file=sys.stderr)
            with self._lock:
                instance.failed = True
            return
        with self._lock:
            instance.ip = address

    def authorized(self, header: str | None) -> bool:
        if not header:
            return False
        scheme, _, value = header.partition(" ")
        value = value.strip()
        if scheme.lower() == "bearer":
            return value == self.api_key
        if scheme.lower() == "basic":
            if value == self.api_key:
                return True
            try:
                user = base64.b64decode(value, validate=True).decode().partition(":")[0]
            except (binascii.Error, UnicodeDecodeError):
                return False
            return user == self.api_key
        return False


def _rule_problem(rule: Any) -> str | None:
    if not isinstance(rule, dict):
        return "not an object"
    protocol = rule.get("protocol")
    if protocol not in ("tcp", "udp", "icmp", "all"):
        return f"protocol {protocol!r} is not tcp, udp, icmp or all"
    try:
        ipaddress.ip_network(str(rule.get("source_network")))
    except ValueError:
        return f"source_network {rule.get('source_network')!r} is not a CIDR network"
    ports = rule.get("port_range")
    if protocol == "icmp":
        return "icmp rules take no port_range" if ports is not None else None
    if (not isinstance(ports, list) or len(ports) != 2
            or not all(isinstance(p, int) and 1 <= p <= 65535 for p in ports)
            or ports[0] > ports[1]):
        return f"port_range {ports!r} is not [low, high] within 1-65535"
    if not isinstance(rule.get("description", ""), str):
        return "description is not a string"
    return None


class _Handler(BaseHTTPRequestHandler):
    server_version = "lambda-standin"
    sys_version = ""
    protocol_version = "HTTP/1.1"
    API_PREFIX = "/api/v1"

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def _serve(self, method: str) -> None:
        standin: LambdaStandin = self.server.standin  # type: ignore[attr-defined]
        path = self.path.split("?", 1)[0]
        # Both a bare URL and one ending in /api/v1, like the real base URL, work.
        if path.startswith(self.API_PREFIX + "/"):
            path = path[len(self.API_PREFIX):]
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        with standin._lock:
            standin.requests.append((method, path))
        fault = standin.take_fault(method, path)
        if fault is not None:
            self._fail(fault)
            return
        try:
            if not standin.authorized(self.headers.get("Authorization")):
                raise _ApiError(401, *INVALID_KEY)
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                raise _invalid("The request body is not valid JSON.") from None
            self._reply(200, {"data": standin.route(method, path, body)})
        except _ApiError as e:
            self._reply(e.status, e.body(), e.headers)

    def _fail(self, fault: Fault) -> None:
        self.close_connection = True
        if fault.status == 0:
            return  # closed without a status line: the client sees a dropped connection
        data = b"" if fault.location else \
            f"<html><body><h1>{fault.status} (injected)</h1></body></html>".encode()
        self.send_response(fault.status)
        if fault.location:
            self.send_header("Location", fault.location)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    def _reply(self, status: int, body: Any, headers: Mapping[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        # The request line only: headers, where the key is, are never logged.
        if not self.server.standin.quiet:  # type: ignore[attr-defined]
            super().log_message(format, *args)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m standins.lambda_cloud",
        description="lambda-standin: answers like the Lambda Cloud API on loopback. "
                    "NOT Lambda Cloud.")
    parser.add_argument("--host", default="127.0.0.1", help="a loopback address")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    key = parser.add_mutually_exclusive_group(required=True)
    key.add_argument("--key", help="the API key clients must present (visible in ps)")
    key.add_argument("--key-file", help="a file holding the API key")
    parser.add_argument("--ip-pool", default=",".join(DEFAULT_IP_POOL),
                        help="comma-separated addresses handed to launched instances")
    parser.add_argument("--boot-delay", type=float, default=2.0,
                        help="seconds an instance stays booting")
    parser.add_argument("--launch-interval", type=float, default=10.0,
                        help="a second launch sooner than this is answered 429")
    args = parser.parse_args(argv)
    api_key = args.key
    if args.key_file:
        with open(args.key_file) as f:
            api_key = f.read().strip()
    pool = [a.strip() for a in args.ip_pool.split(",") if a.strip()]
    standin = LambdaStandin(api_key=api_key, host=args.host, port=args.port,
                            boot_delay=args.boot_delay, launch_interval=args.launch_interval,
                            address_source=AddressPool(pool), quiet=False)
    stopped = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopped.set())
    with standin:
        print(f"lambda-standin (NOT Lambda Cloud) listening on {standin.url}/api/v1",
              flush=True)
        while not stopped.wait(3600):
            pass
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
