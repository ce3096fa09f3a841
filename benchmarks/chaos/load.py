"""The soak's load: a constant, bounded rate of requests through the edge, each recorded.

The kinds rotate: the API's health (it needs every store), a note written then read back
(PostgreSQL, Redis and Weaviate), and each MCP server's health through its route. A write
the API acknowledged (201) is remembered by id: the verdict reads every one back after the
soak.
"""

from __future__ import annotations

import base64
import json
import ssl
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

TIMEOUT = 10.0
MAX_IN_FLIGHT = 64
STORES = frozenset({"postgresql", "redis-server", "weaviate"})


@dataclass(frozen=True)
class Outcome:
    started: float      # seconds after the load started
    kind: str           # health, write, read, mcp-<name>
    status: int         # HTTP status; 0: no answer (refused, reset, timed out)
    latency: float      # seconds
    needs: frozenset    # the catalogue services this request cannot succeed without
    note: str | None = None  # the note's id, for writes the API acknowledged

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


@dataclass
class Edge:
    """Where the load goes: the edge's base URL and credentials."""
    url: str                        # https://ADDRESS
    user: str | None = None
    password: str | None = None
    mcp_servers: tuple[str, ...] = ()
    mcp_instances: int = 1
    api_programs: tuple[str, ...] = ()
    context: ssl.SSLContext = field(default_factory=ssl.create_default_context)

    def opener(self) -> urllib.request.OpenerDirector:
        """No proxy from the environment: the edge is a sandbox host or the operator's own."""
        return urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                           urllib.request.HTTPSHandler(context=self.context))

    def headers(self) -> dict[str, str]:
        headers = {"User-Agent": "orchestra-infra-chaos"}
        if self.user and self.password:
            token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        return headers


class Load:
    """Requests at ``rate`` per second until ``stop()``; ``outcomes`` grows as they end."""

    def __init__(self, edge: Edge, rate: float):
        self.edge = edge
        self.rate = rate
        self.outcomes: list[Outcome] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._opener = edge.opener()
        self.started_at = 0.0
        # Any API instance serves these: nginx retries the others. Health needs the stores.
        # An MCP server's request needs its one instance, or none of several in particular.
        apis = frozenset({"nginx", *edge.api_programs})
        self._kinds = [("health", apis | STORES), ("write", apis | STORES)] + [
            (f"mcp-{name}", frozenset({"nginx"} | ({f"mcp-{name}"} if edge.mcp_instances == 1
                                                  else set())))
            for name in edge.mcp_servers]

    def start(self) -> None:
        self.started_at = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="chaos-load", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread:
            self._thread.join()

    def now(self) -> float:
        return time.monotonic() - self.started_at

    def _run(self) -> None:
        interval = 1 / self.rate
        with ThreadPoolExecutor(max_workers=MAX_IN_FLIGHT) as pool:
            tick = 0
            while not self._stopping.is_set():
                kind, needs = self._kinds[tick % len(self._kinds)]
                pool.submit(self._one, kind, needs)
                tick += 1
                # Constant rate, not back-to-back: a slow answer never slows the load.
                delay = tick * interval - self.now()
                if delay > 0:
                    self._stopping.wait(delay)

    def _record(self, outcome: Outcome) -> None:
        with self._lock:
            self.outcomes.append(outcome)

    def _one(self, kind: str, needs: frozenset) -> None:
        if kind == "health":
            self.request(kind, needs, "GET", "/api/health/")
        elif kind == "write":
            outcome, body = self.request(kind, needs, "POST", "/api/notes",
                                          {"title": "chaos", "body": f"{self.now():.3f}"})
            if outcome.status == 201 and isinstance(body, dict) and body.get("id"):
                self.request("read", needs, "GET", f"/api/notes/{body['id']}")
        else:
            self.request(kind, needs, "GET", f"/mcp/{kind.removeprefix('mcp-')}/health")

    def request(self, kind, needs, method, path, payload=None) -> tuple[Outcome, object]:
        """One request, recorded; (its outcome, its JSON body or None)."""
        data = None if payload is None else json.dumps(payload).encode()
        headers = self.edge.headers()
        if data is not None:
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(self.edge.url + path, data=data, method=method,
                                         headers=headers)
        started = self.now()
        body = None
        try:
            with self._opener.open(request, timeout=TIMEOUT) as response:
                status, raw = response.status, response.read()
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
        except urllib.error.HTTPError as e:
            status = e.code
        except (OSError, ValueError):
            status = 0
        note = body.get("id") if kind == "write" and status == 201 and isinstance(body, dict) \
            else None
        outcome = Outcome(round(started, 3), kind, status, round(self.now() - started, 4),
                          needs, note)
        self._record(outcome)
        return outcome, body
