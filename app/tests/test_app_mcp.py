"""app/: the MCP servers speak MCP, checked with the official SDK's own client: in process
(every tool and resource, on the in-memory fakes of the stores), then over real Streamable
HTTP on a loopback port (both protocol eras: the initialize handshake with its session,
GET stream and DELETE, and 2026-07-28's self-contained requests), with the SDK's
DNS-rebinding protection as nginx meets it.

Skipped when the app's dependencies are not installed: they are not part of the toolkit's.
"""

from __future__ import annotations

import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

for module in ("fastapi", "httpx", "psycopg", "redis", "mcp", "uvicorn"):
    pytest.importorskip(module, reason="the app's dependencies (app/requirements.txt) are absent")

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import anyio  # noqa: E402
import httpx  # noqa: E402
import httpx2  # noqa: E402
import mcp_resume  # noqa: E402
import uvicorn  # noqa: E402
from mcp import Client  # noqa: E402
from mcp.client.streamable_http import streamable_http_client  # noqa: E402
from mcp.shared.exceptions import MCPError  # noqa: E402
from mcp.types import JSONRPCNotification  # noqa: E402
from test_app import SETTINGS, FakeCache, FakeDatabase, FakeVectors  # noqa: E402

from api.stores import Stores  # noqa: E402
from mcp_servers import events  # noqa: E402
from mcp_servers.server import MCP_PATH, SERVERS, create_server  # noqa: E402

TOOLS = {
    "memory": {"remember", "recall"},
    "task": {"create_task", "list_tasks"},
    "agent": {"plan", "recent_plans"},
    "data": {"count_notes"},
    "monitor": {"summary"},
}


def fake_stores() -> Stores:
    return Stores(postgres=FakeDatabase(), redis=FakeCache(), weaviate=FakeVectors())


def in_process(name: str, stores: Stores | None = None, **kwargs) -> Client:
    """The SDK's client on the server's MCPServer, without HTTP."""
    app = create_server(name, SETTINGS, stores or fake_stores(), **kwargs)
    return Client(app.state.mcp)


def run(body) -> Any:
    """Run one async test body (pytest's anyio plugin is off: pyproject.toml)."""
    return anyio.run(body)


# --- in process: every tool and resource -----------------------------------------------------


@pytest.mark.parametrize("name", list(SERVERS))
def test_every_server_lists_its_tools(name):
    async def body():
        async with in_process(name) as client:
            listed = await client.list_tools()
            assert {tool.name for tool in listed.tools} == TOOLS[name]
            assert all(tool.description for tool in listed.tools)
            assert client.session.server_info is None or \
                client.session.server_info.name == f"orchestra-{name}"
    run(body)


def test_memory_remembers_in_redis_with_progress_and_reads_it_back():
    stores = fake_stores()
    progress: list[tuple[float, float | None, str | None]] = []

    async def on_progress(done, total, message):
        progress.append((done, total, message))

    async def body():
        async with in_process("memory", stores) as client:
            stored = await client.call_tool(
                "remember", {"key": "user.42", "value": "likes tea", "ttl_seconds": 60},
                progress_callback=on_progress)
            assert not stored.is_error
            assert stored.structured_content == {"key": "user.42", "value": "likes tea"}
            read = await client.call_tool("recall", {"key": "user.42"})
            assert read.structured_content == {"key": "user.42", "value": "likes tea"}
            resource = await client.read_resource("memory://user.42")
            assert resource.contents[0].text == "likes tea"
            missing = await client.call_tool("recall", {"key": "other"})
            assert missing.is_error and "nothing remembered" in missing.content[0].text
            bad = await client.call_tool("remember", {"key": "bad key", "value": "x"})
            assert bad.is_error
    run(body)
    assert stores.redis.values["mcp:memory:user.42"] == "likes tea"
    assert stores.redis.ttls["mcp:memory:user.42"] == 60
    assert progress == [(0, 1, "storing user.42"), (1, 1, "stored user.42")]


def test_a_store_down_is_a_tool_error_that_names_no_secret():
    stores = fake_stores()

    async def body():
        async with in_process("memory", stores) as client:
            stores.redis.down = True
            failed = await client.call_tool("recall", {"key": "k"})
            assert failed.is_error
            text = failed.content[0].text
            assert "redis is unavailable (ConnectionError)" in text
            assert "redis-pass" not in text and "127.0.0.1" not in text
            stores.redis.down = False  # the same session goes on
            assert not (await client.call_tool("remember", {"key": "k", "value": "v"})).is_error
    run(body)


def test_task_creates_and_lists_tasks_in_postgres():
    stores = fake_stores()

    async def body():
        async with in_process("task", stores) as client:
            first = await client.call_tool("create_task", {"title": "index the notes"})
            assert first.structured_content["status"] == "open"
            await client.call_tool("create_task", {"title": "back up"})
            listed = await client.call_tool("list_tasks", {"limit": 10})
            assert [t["title"] for t in listed.structured_content["tasks"]] == [
                "back up", "index the notes"]
            recent = await client.read_resource("tasks://recent")
            assert "index the notes" in recent.contents[0].text
            assert (await client.call_tool("create_task", {"title": ""})).is_error
    run(body)
    assert len(stores.postgres.tables["mcp_tasks"]) == 2


def test_agent_reports_each_step_as_progress():
    stores = fake_stores()
    progress = []

    async def on_progress(done, total, message):
        progress.append((done, total, message))

    async def body():
        async with in_process("agent", stores) as client:
            made = await client.call_tool(
                "plan", {"request": "Fetch the data. Then clean it; train"},
                progress_callback=on_progress)
            assert made.structured_content["steps"] == ["Fetch the data", "clean it", "train"]
            recent = await client.call_tool("recent_plans", {"limit": 5})
            assert [p["request"] for p in recent.structured_content["plans"]] == [
                "Fetch the data. Then clean it; train"]
    run(body)
    assert progress == [(1, 3, "Fetch the data"), (2, 3, "clean it"), (3, 3, "train")]


def test_data_counts_the_notes():
    stores = fake_stores()
    stores.postgres.tables["notes"] += [{"id": 1}, {"id": 2}]

    async def body():
        async with in_process("data", stores) as client:
            counted = await client.call_tool("count_notes", {})
            assert counted.structured_content == {"notes": 2}
            resource = await client.read_resource("data://notes/count")
            assert resource.contents[0].text == '{"notes":2}'
    run(body)


def test_monitor_summarises_with_one_progress_event_per_service():
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.port == 8007:
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(200, json={"status": "ok"})

    progress = []

    async def on_progress(done, total, message):
        progress.append((done, total, message))

    async def body():
        async with in_process("monitor", Stores(),
                              transport=httpx.MockTransport(answer)) as client:
            summary = await client.call_tool("summary", {}, progress_callback=on_progress)
            assert summary.structured_content["status"] == "degraded"
            assert summary.structured_content["services"]["agent"]["status"] == "down"
    run(body)
    assert [p[0] for p in progress] == [1, 2, 3, 4, 5] and {p[1] for p in progress} == {5}
    assert "agent: down" in {p[2] for p in progress}


# --- over Streamable HTTP on a loopback port -------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def served_memory(request):
    """The memory server under uvicorn on a free loopback port, as Supervisor runs it (with
    the session route given as the test's parameter, if any)."""
    stores = fake_stores()
    port = _free_port()
    route = getattr(request, "param", None)
    config = uvicorn.Config(create_server("memory", SETTINGS, stores, route=route),
                            host="127.0.0.1",
                            port=port, log_config=None, timeout_graceful_shutdown=1)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}", stores
    server.should_exit = True
    thread.join(10)


class Recorder(httpx2.AsyncClient):
    """The SDK's HTTP client, recording each exchange (method, status, session header)."""

    def __init__(self, **kwargs) -> None:
        super().__init__(timeout=httpx2.Timeout(10, read=30), **kwargs)
        self.exchanges: list[tuple[str, int, str | None, str | None]] = []

    async def send(self, request, **kwargs):
        response = await super().send(request, **kwargs)
        self.exchanges.append((request.method, response.status_code,
                               request.headers.get("mcp-session-id"),
                               response.headers.get("mcp-session-id")))
        return response


# With a route (the deploy sets one per instance), every id begins with it: the edge sends a
# session's requests to the instance that made it.
@pytest.mark.parametrize("served_memory", [None, "0a1b2c3d"], indirect=True,
                         ids=["no-route", "routed"])
def test_a_handshake_session_over_http_initialises_streams_and_ends_with_delete(served_memory,
                                                                                request):
    base, stores = served_memory
    route = request.node.callspec.params["served_memory"]
    progress = []

    async def on_progress(done, total, message):
        progress.append(done)

    async def body():
        async with Recorder() as http:
            async with Client(streamable_http_client(base + MCP_PATH, http_client=http),
                              mode="legacy") as client:
                assert client.session.protocol_version == "2025-11-25"
                await client.call_tool("remember", {"key": "k", "value": "over http"},
                                       progress_callback=on_progress)
                read = await client.call_tool("recall", {"key": "k"})
                assert read.structured_content["value"] == "over http"
            return http.exchanges

    exchanges = run(body)
    assert progress == [0, 1]
    session = exchanges[0][3]
    assert exchanges[0][:2] == ("POST", 200) and session  # initialize: the session's id
    assert session.startswith(f"{route}-") == bool(route)
    assert all(sent == session for _, _, sent, _ in exchanges[1:])
    assert ("GET", 200, session, session) in exchanges  # the standalone event stream
    assert exchanges[-1][:3] == ("DELETE", 200, session)  # the session ends
    assert stores.redis.values["mcp:memory:k"] == "over http"

    async def after():
        async with httpx2.AsyncClient() as http:
            return await http.post(base + MCP_PATH, headers={
                "mcp-session-id": session, "content-type": "application/json",
                "accept": "application/json, text/event-stream",
                "mcp-protocol-version": "2025-11-25"},
                json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})

    assert run(after).status_code == 404  # gone: a client must initialise a new session


@pytest.mark.parametrize("route", ["0A1B2C3D", "0a1b2c3", "0a1b2c3d\nx", "../0a1b2c"])
def test_a_session_route_is_eight_hex_digits_or_the_server_does_not_start(route):
    with pytest.raises(ValueError, match="MCP_SESSION_ROUTE"):
        create_server("memory", SETTINGS, fake_stores(), route=route)


def test_a_2026_client_needs_no_session(served_memory):
    base, _ = served_memory

    async def body():
        async with Recorder() as http:
            async with Client(streamable_http_client(base + MCP_PATH, http_client=http)) as client:
                assert client.session.protocol_version == "2026-07-28"
                await client.call_tool("remember", {"key": "m", "value": "modern"})
                read = await client.call_tool("recall", {"key": "m"})
                assert read.structured_content["value"] == "modern"
            return http.exchanges

    exchanges = run(body)
    assert {method for method, *_ in exchanges} == {"POST"}
    assert all(sent is None and got is None for *_, sent, got in exchanges)


@pytest.mark.parametrize(("headers", "status"), [
    ({"host": "localhost"}, 200),             # what nginx sends
    ({"host": "127.0.0.1:8003"}, 200),
    ({"host": "orchestra.example.com"}, 421),  # a rebound name
    ({"host": "localhost", "origin": "https://evil.example"}, 403),
    ({"host": "localhost", "origin": "http://localhost:6274"}, 200),  # a local inspector
])
def test_dns_rebinding_protection_passes_loopback_hosts_only(served_memory, headers, status):
    base, _ = served_memory
    initialize = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "test", "version": "1"}}}
    response = httpx.post(base + MCP_PATH, json=initialize, timeout=10, headers={
        "accept": "application/json, text/event-stream", **headers})
    assert response.status_code == status, response.text
    assert httpx.get(base + "/health", headers=headers, timeout=10).status_code == 200


def test_health_and_the_rest_routes_stay_beside_mcp(served_memory):
    base, _ = served_memory
    assert httpx.get(base + "/health").json() == {"status": "ok", "server": "memory"}
    assert httpx.put(base + "/memory/r", json={"value": "rest"}).status_code == 200

    async def body():
        async with Client(base + MCP_PATH) as client:
            return (await client.call_tool("recall", {"key": "r"})).structured_content

    assert run(body) == {"key": "r", "value": "rest"}


def test_an_unknown_tool_is_a_protocol_or_tool_error(served_memory):
    base, _ = served_memory

    async def body():
        async with Client(base + MCP_PATH, mode="legacy") as client:
            try:
                result = await client.call_tool("forget", {"key": "k"})
            except MCPError:
                return True
            return result.is_error

    assert run(body)


def test_a_dropped_stream_resumes_with_last_event_id_and_only_in_its_own_session(served_memory):
    """events.py: the server keeps each session's events; a GET with Last-Event-ID brings
    what came after that event, in that session only (the SDK alone would share one store,
    and stream ids, among sessions)."""
    base, _ = served_memory
    with httpx2.Client(timeout=httpx2.Timeout(10)) as http:
        found = mcp_resume.resume(http, base + MCP_PATH)
    sent = [message for _, message in found["sent"]]
    assert [m.get("method") for m in sent] == ["notifications/progress"] * 2 + [None]
    assert sent[-1]["id"] == 2 and not sent[-1]["result"]["isError"]
    assert [message for _, message in found["replayed"]] == sent[1:]
    assert [event_id for event_id, _ in found["replayed"]] == \
        [event_id for event_id, _ in found["sent"][1:]]
    assert found["foreign"] == []


def test_the_event_store_drops_the_oldest_events_past_its_bounds():
    store = events.BoundedEventStore(max_events=3, max_bytes=10_000)
    message = JSONRPCNotification(jsonrpc="2.0", method="notifications/progress")

    async def body():
        ids = [await store.store_event("s", message) for _ in range(5)]
        replayed = []

        async def send(event):
            replayed.append(event.event_id)

        gone = await store.replay_events_after(ids[0], send)
        kept = await store.replay_events_after(ids[2], send)
        return ids, gone, kept, replayed

    ids, gone, kept, replayed = run(body)
    assert store.count == 3 and gone is None and kept == "s" and replayed == ids[3:]
    small = events.BoundedEventStore(max_events=100, max_bytes=len(message.model_dump_json(
        by_alias=True)) * 2)
    for _ in range(4):
        run(lambda: small.store_event("s", message))
    assert small.count == 2
