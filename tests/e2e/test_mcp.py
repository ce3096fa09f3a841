"""The MCP servers through the edge, with the official MCP SDK's client, from the control
machine over TLS: every server's tools, a whole handshake-era session (initialise, a write
and a read, progress events, the GET stream, DELETE), a 2026-07-28 client, the edge's
password; then the instance holding a session killed with -9, a release under load of MCP
sessions, and the two instances of a server each keeping its own sessions (figures printed
and written to build/e2e-figures/mcp.json)."""

from __future__ import annotations

import json
import re
import shutil
import sys
import threading
import time

import pytest

pytest.importorskip("mcp", reason="the MCP SDK (pyproject.toml's dev extras) is absent")

import anyio  # noqa: E402
import httpx2  # noqa: E402
from mcp import Client  # noqa: E402
from mcp.client.streamable_http import streamable_http_client  # noqa: E402

from orchestra_infra import secrets  # noqa: E402

from .conftest import REPO, converge, on  # noqa: E402

sys.path.insert(0, str(REPO / "app" / "tests"))
import mcp_resume  # noqa: E402

pytestmark = pytest.mark.e2e

FIGURES = REPO / "build" / "e2e-figures"
TOOLS = {
    "memory": {"remember", "recall"},
    "task": {"create_task", "list_tasks"},
    "agent": {"plan", "recent_plans"},
    "data": {"count_notes"},
    "monitor": {"summary"},
}
# A read each server answers without arguments that need earlier writes.
READS = {"memory": ("recall", {"key": "e2e.absent"}), "task": ("list_tasks", {"limit": 1}),
         "agent": ("recent_plans", {"limit": 1}), "data": ("count_notes", {}),
         "monitor": ("summary", {})}


def _figure(key: str, value) -> None:
    FIGURES.mkdir(parents=True, exist_ok=True)
    path = FIGURES / "mcp.json"
    figures = json.loads(path.read_text()) if path.exists() else {}
    figures[key] = value
    path.write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n")


@pytest.fixture(scope="module")
def edge_auth() -> httpx2.BasicAuth:
    return httpx2.BasicAuth("orchestra", secrets.load("sandbox")["edge_password"])


class Edge(httpx2.AsyncClient):
    """The SDK's HTTP client for the sandbox's edge (self-signed certificate), recording
    each exchange: (method, status, Mcp-Session-Id sent, Mcp-Session-Id received)."""

    def __init__(self, auth: httpx2.Auth | None = None, read: float = 30) -> None:
        super().__init__(auth=auth, verify=False, timeout=httpx2.Timeout(10, read=read))
        self.exchanges: list[tuple[str, int, str | None, str | None]] = []

    async def send(self, request, **kwargs):
        response = await super().send(request, **kwargs)
        self.exchanges.append((request.method, response.status_code,
                               request.headers.get("mcp-session-id"),
                               response.headers.get("mcp-session-id")))
        return response


def _error(exc: BaseException) -> str:
    """The error a caller meets, out of the task groups' ExceptionGroups: 'Type: message'."""
    while getattr(exc, "exceptions", None):  # an ExceptionGroup (Python 3.11, or anyio's)
        exc = exc.exceptions[0]
    return f"{type(exc).__name__}: {str(exc)[:100]}"


def _url(target, name: str) -> str:
    return f"https://{target.address}/mcp/{name}/mcp"


def _client(target, name: str, http: httpx2.AsyncClient, mode: str = "legacy", **kw) -> Client:
    return Client(streamable_http_client(_url(target, name), http_client=http), mode=mode, **kw)


@pytest.mark.parametrize("name", list(TOOLS))
def test_every_server_answers_the_official_client_through_the_edge(target, provisioned,
                                                                   edge_auth, name):
    async def body():
        async with Edge(edge_auth) as http, _client(target, name, http) as client:
            assert client.session.protocol_version == "2025-11-25"
            assert {t.name for t in (await client.list_tools()).tools} == TOOLS[name]
            tool, arguments = READS[name]
            result = await client.call_tool(tool, arguments)
            return result

    result = anyio.run(body)
    if name == "memory":
        assert result.is_error and "nothing remembered" in result.content[0].text
    else:
        assert not result.is_error, result.content
    if name == "monitor":
        # The monitor reaches every other server's /health from the host itself.
        assert result.structured_content["status"] == "ok", result.structured_content


def test_a_whole_session_through_the_edge(target, provisioned, edge_auth):
    """Initialise, list tools, write with progress events, read it back, the GET stream,
    DELETE; the ended session is gone for the edge too."""
    progress: list[tuple[float, float | None, str | None]] = []
    value = f"through the edge {time.time()}"

    async def on_progress(done, total, message):
        progress.append((done, total, message))

    async def body():
        async with Edge(edge_auth) as http:
            async with _client(target, "memory", http) as client:
                assert {t.name for t in (await client.list_tools()).tools} == TOOLS["memory"]
                wrote = await client.call_tool("remember", {"key": "e2e.session", "value": value},
                                               progress_callback=on_progress)
                assert not wrote.is_error, wrote.content
                read = await client.call_tool("recall", {"key": "e2e.session"})
                resource = await client.read_resource("memory://e2e.session")
            session = http.exchanges[0][3]
            # The ended session answers 404 through the edge: a client must initialise anew.
            gone = await http.post(_url(target, "memory"), json={
                "jsonrpc": "2.0", "id": 9, "method": "tools/list"}, headers={
                "mcp-session-id": session, "mcp-protocol-version": "2025-11-25",
                "accept": "application/json, text/event-stream"})
            return read, resource, http.exchanges, gone.status_code

    read, resource, exchanges, gone = anyio.run(body)
    assert read.structured_content == {"key": "e2e.session", "value": value}
    assert resource.contents[0].text == value
    assert progress == [(0, 1, "storing e2e.session"), (1, 1, "stored e2e.session")]
    session = exchanges[0][3]
    assert exchanges[0][:2] == ("POST", 200) and session  # Mcp-Session-Id, server to client
    assert all(sent == session for _, _, sent, _ in exchanges[1:])  # and client to server
    assert ("GET", 200, session, session) in exchanges  # the long-lived event stream
    assert [e for e in exchanges if e[0] == "DELETE"] == [("DELETE", 200, session, session)]
    assert gone == 404
    print(f"one session through the edge: {len(exchanges)} HTTP exchanges "
          f"({', '.join(f'{m} {s}' for m, s, *_ in exchanges)})")


def test_a_2026_client_through_the_edge_needs_no_session(target, provisioned, edge_auth):
    async def body():
        async with Edge(edge_auth) as http, _client(target, "task", http, mode="auto") as client:
            assert client.session.protocol_version == "2026-07-28"
            made = await client.call_tool("create_task", {"title": "a 2026-07-28 task"})
            listed = await client.call_tool("list_tasks", {"limit": 5})
            return made, listed, http.exchanges

    made, listed, exchanges = anyio.run(body)
    assert made.structured_content["title"] in [t["title"] for t in
                                                 listed.structured_content["tasks"]]
    assert {m for m, *_ in exchanges} == {"POST"}
    assert all(sent is None and got is None for *_, sent, got in exchanges)


def test_a_dropped_stream_resumes_through_the_edge_with_last_event_id(target, provisioned,
                                                                      edge_auth):
    """nginx passes Last-Event-ID and the events' ids: a GET resuming after the first event
    of a tool call's stream brings the rest again, in that session only
    (app/tests/mcp_resume.py)."""
    with httpx2.Client(auth=edge_auth, verify=False, timeout=httpx2.Timeout(10)) as http:
        found = mcp_resume.resume(http, _url(target, "memory"), key="e2e.resume")
    sent = [message for _, message in found["sent"]]
    assert len(sent) == 3 and sent[-1]["id"] == 2, sent
    assert found["replayed"] == found["sent"][1:]
    assert found["foreign"] == []


@pytest.mark.parametrize("password", [None, "wrong"])
def test_without_the_edge_password_the_client_is_refused(target, provisioned, password):
    auth = httpx2.BasicAuth("orchestra", password) if password else None

    async def body():
        async with Edge(auth) as http:
            with pytest.raises(Exception):  # noqa: B017 (the SDK raises its own error)
                async with _client(target, "memory", http):
                    pass
            return http.exchanges

    exchanges = anyio.run(body)
    assert exchanges and {status for _, status, *_ in exchanges} == {401}


# --- failures: kill -9, a release ------------------------------------------------------------


async def _new_session_until_it_works(target, auth, started: float, limit: float = 60):
    """A new session and a read, retried every 0.1 s: (seconds since started, attempts)."""
    attempts = 0
    while True:
        attempts += 1
        try:
            with anyio.fail_after(5):
                async with Edge(auth) as http, _client(target, "memory", http) as client:
                    result = await client.call_tool("recall", {"key": "e2e.kill"})
                    if not result.is_error:
                        return time.monotonic() - started, attempts
        except Exception:  # noqa: BLE001 (any failure means: not yet)
            pass
        assert time.monotonic() - started < limit, "no new session within the limit"
        await anyio.sleep(0.1)


def _routes(target) -> dict[str, str]:
    """{session route: Supervisor program} of the MCP instances on the target."""
    text = on(target, "cat /etc/supervisor/conf.d/orchestra.conf")
    return {route: program for program, route in re.findall(
        r'\[program:(\S+)\]\n[^\[]*?environment=MCP_SESSION_ROUTE="([0-9a-f]{8})"', text)}


def _instance_of(target, session: str) -> str:
    """The Supervisor program whose instance made this session (its id's route)."""
    return _routes(target)[session.split("-", 1)[0]]


def test_kill_9_under_a_held_session_a_new_session_works_at_once(target, provisioned,
                                                                  edge_auth):
    """kill -9 of the memory instance that holds a session: the held session fails fast with
    the 404 that tells a client to start again, and a new session works at once, on the
    other instance, while Supervisor restarts the killed one."""
    async def body():
        async with Edge(edge_auth) as http, _client(target, "memory", http) as held:
            await held.call_tool("remember", {"key": "e2e.kill", "value": "before"})
            program = _instance_of(target, http.exchanges[0][3])
            pid = on(target, f"supervisorctl pid orchestra:{program}").strip()
            on(target, f"kill -9 {pid}")
            killed = time.monotonic()
            # The held session is gone with the process: its next call fails, and fails fast.
            try:
                with anyio.fail_after(30):
                    result = await held.call_tool("recall", {"key": "e2e.kill"})
                old = f"answered, is_error={result.is_error}"
            except Exception as exc:  # noqa: BLE001
                old = _error(exc)
            old_seconds = time.monotonic() - killed
            statuses = [status for _, status, sent, _ in http.exchanges[1:] if sent][-1:]
            new_seconds, attempts = await _new_session_until_it_works(target, edge_auth, killed)
            return program, pid, old, old_seconds, statuses, new_seconds, attempts

    program, pid, old, old_seconds, statuses, new_seconds, attempts = anyio.run(body)
    new_pid = on(target, f"supervisorctl pid orchestra:{program}").strip()
    print(f"kill -9 of {program} ({pid} -> {new_pid}) under a held session: the held "
          f"session's next call: {old} (HTTP {statuses}) after {old_seconds:.2f} s; a new "
          f"session worked {new_seconds:.2f} s after the kill ({attempts} attempts)")
    _figure("kill_9", {"instance": program, "old_session": old,
                       "old_session_status": statuses,
                       "old_session_seconds": round(old_seconds, 2),
                       "new_session_seconds": round(new_seconds, 2), "attempts": attempts})
    assert new_pid != pid
    assert not old.startswith("answered, is_error=False")
    assert old_seconds < 10  # a clean error, not a hang
    # The other instance takes the new session: the first attempt works.
    assert attempts == 1 and new_seconds < 5


class _Sessions:
    """MCP traffic through the edge during a release, counted, bounded in time, below the
    edge's MCP rate limit: held sessions (opened before, calling every 0.5 s until they fail
    or the release is over) and a new handshake session plus a 2026-07-28 call every 0.5 s."""

    def __init__(self, target, auth, held: int = 4, limit_seconds: float = 900) -> None:
        self.target, self.auth, self.held, self.limit = target, auth, held, limit_seconds
        self.opened = threading.Event()
        self.stop = threading.Event()
        self.held_outcomes: list[str] = []
        self.new: list[tuple[float, str, bool, str]] = []  # (t, era, ok, error)
        self.release_window: tuple[float, float] | None = None
        self._thread = threading.Thread(target=lambda: anyio.run(self._run), daemon=True)

    async def _hold(self, index: int, ready: list) -> None:
        async with Edge(self.auth) as http:
            try:
                async with _client(self.target, "memory", http) as client:
                    calls = 0
                    while not self.stop.is_set():
                        with anyio.fail_after(30):
                            result = await client.call_tool(
                                "remember", {"key": f"e2e.held.{index}", "value": str(calls)})
                        assert not result.is_error
                        if not calls:
                            # Ready once its key exists: the new sessions recall held.0.
                            ready.append(index)
                        calls += 1
                        await anyio.sleep(0.5)
                    self.held_outcomes.append(f"finished after {calls} calls")
            except Exception as exc:  # noqa: BLE001
                self.held_outcomes.append(f"failed at {time.monotonic():.1f}: {_error(exc)}")

    async def _one_new(self, era: str) -> None:
        started = time.monotonic()
        try:
            with anyio.fail_after(15):
                async with Edge(self.auth) as http, \
                        _client(self.target, "memory", http,
                                mode="legacy" if era == "handshake" else "auto") as client:
                    result = await client.call_tool("recall", {"key": "e2e.held.0"})
                    assert not result.is_error
            self.new.append((started, era, True, ""))
        except Exception as exc:  # noqa: BLE001
            self.new.append((started, era, False, _error(exc)))

    async def _run(self) -> None:
        ready: list[int] = []
        started = time.monotonic()
        async with anyio.create_task_group() as group:
            for index in range(self.held):
                group.start_soon(self._hold, index, ready)
            while len(ready) < self.held and time.monotonic() - started < 30:
                await anyio.sleep(0.1)
            self.opened.set()
            while not self.stop.is_set() and time.monotonic() - started < self.limit:
                group.start_soon(self._one_new, "handshake")
                group.start_soon(self._one_new, "2026")
                await anyio.sleep(0.5)
            self.stop.set()

    def __enter__(self):
        self._thread.start()
        assert self.opened.wait(60)
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self._thread.join(timeout=60)


def test_mcp_sessions_through_a_release(target, provisioned, edge_auth, tmp_path):
    """A new release under MCP traffic: sessions opened before it finish or fail with a clean
    error (counted), and new sessions succeed (counted, with any gap measured)."""
    copy = tmp_path / "app"
    shutil.copytree(REPO / "app", copy,
                    ignore=shutil.ignore_patterns("node_modules", "dist", "__pycache__"))
    (copy / "mcp_servers" / "RELEASE_NOTE").write_text(f"e2e MCP release {time.time()}\n")
    live = on(target, "readlink /opt/orchestra/current").strip()
    try:
        with _Sessions(target, edge_auth) as load:
            time.sleep(2)
            started = time.monotonic()
            run = converge(target, "--data", f"app_source={copy}")
            ended = time.monotonic()
            time.sleep(3)
    finally:
        # The repository's app live again for the tests that follow, and this test's release
        # gone (a rollback goes to the newest release older than the live one).
        tested = on(target, "readlink /opt/orchestra/current").strip()
        converge(target)
        if tested != live:
            on(target, f"rm -rf {tested}")
    assert "App | Make release" in " ".join(run.changed)
    failures = [(round(t - started, 1), era, error) for t, era, ok, error in load.new if not ok]
    during = [n for n in load.new if started <= n[0] <= ended]
    after = [n for n in load.new if n[0] > ended]
    # Held sessions: when (seconds after the release started) and how each one ended.
    held = [re.sub(r"^failed at ([\d.]+)",
                   lambda m: f"failed {float(m.group(1)) - started:.1f} s in", outcome)
            for outcome in load.held_outcomes]
    figures = {
        "held_sessions": held,
        "new_sessions": len(load.new), "new_failed": len(failures),
        "new_during_release": len(during),
        "new_failed_during_release": sum(not ok for _, _, ok, _ in during),
        "new_after_release_ok": all(ok for _, _, ok, _ in after),
        "failures_s_after_release_start": failures[:40],
        "release_seconds": round(ended - started, 1),
    }
    print(f"MCP sessions through a release: {json.dumps(figures)}")
    _figure("release", figures)
    assert len(load.held_outcomes) == 4
    # Each held session either lasted or failed with an error its client raised (no hang).
    assert all(o.startswith(("finished", "failed ")) for o in held), held
    assert after and figures["new_after_release_ok"]
    # One memory instance restarts at a time: the other always takes new sessions.
    assert failures == [], failures


# --- two instances: each session on its own --------------------------------------------------

# The edge limits one address to nginx_mcp_rate (30 r/s) after a burst of 60 and answers
# 429 above it: these tests pace their calls well below it and let the burst refill between
# phases, so what they measure is the routing, not the limit.
PACE_S = 0.1
REFILL_S = 2.5
UPSTREAMS = "/etc/nginx/conf.d/orchestra.conf"


def _sessions(target, auth, count: int, calls: int = 3) -> tuple[list[str], list[str]]:
    """count handshake sessions one after the other, each with calls writes (each read back
    once): (their ids, their errors)."""
    async def body():
        ids, errors = [], []
        for number in range(count):
            try:
                with anyio.fail_after(20):
                    async with Edge(auth) as http, _client(target, "memory", http) as client:
                        key = f"e2e.session.{number}"
                        for call in range(calls):
                            result = await client.call_tool("remember",
                                                            {"key": key, "value": str(call)})
                            assert not result.is_error, result.content
                            await anyio.sleep(PACE_S)
                        result = await client.call_tool("recall", {"key": key})
                        assert result.structured_content["value"] == str(calls - 1)
                        ids.append(http.exchanges[0][3])
            except Exception as exc:  # noqa: BLE001
                errors.append(_error(exc))
        return ids, errors
    return anyio.run(body)


def _modern_calls(target, auth, count: int) -> int:
    async def body():
        async with Edge(auth) as http, _client(target, "memory", http, mode="auto") as client:
            for _ in range(count):
                assert not (await client.call_tool("recall", {"key": "e2e.kill"})).is_error
                await anyio.sleep(PACE_S)
        return count
    return anyio.run(body)


def _requests_per_instance(target) -> dict[str, int]:
    """POSTs each memory instance has logged so far (uvicorn's access lines)."""
    return {program: int(on(target, f"grep -c 'POST /mcp' /var/log/orchestra/{program}.log "
                                    "|| true").strip() or 0)
            for program in ("mcp-memory", "mcp-memory-1")}


def test_with_two_instances_each_session_stays_on_its_own_and_requests_spread(
        target, provisioned, edge_auth):
    """The deployed two memory instances: every handshake session works, its id names the
    instance that made it, sessions land on both, and 2026-07-28 requests reach both.
    Without the routing by id (the control: the map's instance lines removed, so every
    request goes to the least busy instance) sessions break: the routing is what keeps them."""
    routes = _routes(target)
    assert sorted(routes.values()) == ["mcp-agent", "mcp-agent-1", "mcp-data", "mcp-data-1",
                                       "mcp-memory", "mcp-memory-1", "mcp-monitor",
                                       "mcp-monitor-1", "mcp-task", "mcp-task-1"]
    on(target, f"cp -p {UPSTREAMS} /root/orchestra.conf.e2e")
    try:
        ids, errors = _sessions(target, edge_auth, 8)
        time.sleep(REFILL_S)
        before = _requests_per_instance(target)
        modern = _modern_calls(target, edge_auth, 30)
        after = _requests_per_instance(target)
        spread = {program: after[program] - before[program] for program in after}
        # The control: the same two instances, no routing by session id.
        on(target, f"sed -i '/^    ~^[0-9a-f]\\{{8\\}}- orchestra_mcp_memory_/d' {UPSTREAMS}"
                   " && nginx -t -q && systemctl reload nginx")
        assert "orchestra_mcp_memory_" not in on(target, f"sed -n '/map .*orchestra_mcp_memory "
                                                         f"{{/,/}}/p' {UPSTREAMS}")
        time.sleep(REFILL_S)
        _, control = _sessions(target, edge_auth, 4)
    finally:
        on(target, f"cp -p /root/orchestra.conf.e2e {UPSTREAMS} && rm /root/orchestra.conf.e2e"
                   " && nginx -t -q && systemctl reload nginx")
    made_by = sorted({routes[session.split("-", 1)[0]] for session in ids})
    print(f"two memory instances: 8 handshake sessions (3 calls each): {len(errors)} failed, "
          f"made by {made_by}; {modern} 2026-07-28 calls: {spread}; without the routing "
          f"(control): {len(control)} of 4 sessions failed ({control[:1]})")
    _figure("two_instances", {"sessions_failed": errors, "sessions_made_by": made_by,
                              "modern_calls": modern, "modern_per_instance": spread,
                              "unrouted_sessions_failed": len(control)})
    assert errors == []
    assert made_by == ["mcp-memory", "mcp-memory-1"]
    assert all(spread.values()) and sum(spread.values()) >= modern
    assert control  # without the routing, sessions land on the instance that does not know them
