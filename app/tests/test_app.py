"""app/: the API and the MCP servers over HTTP (FastAPI's TestClient), on in-memory fakes of
the stores, so no Postgres, Redis or Weaviate is needed.

Skipped when the app's dependencies are not installed: they are not part of the toolkit's.
"""

from __future__ import annotations

import re
import sys
import uuid
import warnings
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

# httpx: TestClient; psycopg and redis: api.main builds the real stores when imported.
for module in ("fastapi", "httpx", "psycopg", "redis", "mcp"):
    pytest.importorskip(module, reason="the app's dependencies (app/requirements.txt) are absent")

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402

with warnings.catch_warnings():
    # Starlette's TestClient prefers the httpx2 fork; httpx, which the app itself uses, works.
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient  # noqa: E402

from api import notes  # noqa: E402
from api.main import create_app  # noqa: E402
from api.settings import Settings, parse_server_urls, redact  # noqa: E402
from api.stores import Stores, StoreUnavailable  # noqa: E402
from api.stores.postgres import Postgres  # noqa: E402
from api.stores.redis import Redis  # noqa: E402
from api.stores.weaviate import Weaviate  # noqa: E402
from mcp_servers import agent, server  # noqa: E402
from mcp_servers.server import create_server  # noqa: E402

SETTINGS = Settings.from_env({
    "DATABASE_URL": "postgresql://orchestra:pg%2Fpass@127.0.0.1:5432/orchestra",
    "REDIS_URL": "redis://orchestra:redis-pass@127.0.0.1:6379/0",
    "WEAVIATE_API_KEY": "wv-key",
    "ORCHESTRA_ENV": "test",
    "ORCHESTRA_RELEASE": "r42",
})


# --- fakes of the store layer ----------------------------------------------------------------


class FakeStore:
    """What every store does: answer, or be down (StoreUnavailable, as a real one is)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.down = False
        self.pings = 0
        self.closed = False

    def check(self) -> None:
        if self.down:
            raise StoreUnavailable(self.name, "ConnectionError", "fake outage")

    async def ping(self) -> None:
        self.pings += 1
        self.check()

    async def close(self) -> None:
        self.closed = True


class FakeDatabase(FakeStore):
    """Tables as lists of rows; understands the few statement shapes the app sends."""

    INSERT = re.compile(r"INSERT INTO (\w+) \(([\w, ]+)\) VALUES .* RETURNING ([\w, ]+)$")
    BY_ID = re.compile(r"SELECT ([\w, ]+) FROM (\w+) WHERE id = %s$")
    RECENT = re.compile(r"SELECT ([\w, ]+) FROM (\w+) ORDER BY created_at DESC, id LIMIT %s$")
    DELETE = re.compile(r"DELETE FROM (\w+) WHERE id = %s$")
    COUNT = re.compile(r"SELECT count\(\*\) AS (\w+) FROM (\w+)$")
    DEFAULTS = {"status": "open"}

    def __init__(self) -> None:
        super().__init__("postgres")
        self.tables: dict[str, list[dict[str, Any]]] = {"notes": [], "mcp_tasks": []}
        self._clock = datetime(2026, 1, 1, tzinfo=timezone.utc)

    @staticmethod
    def _pick(row: dict[str, Any], columns: str) -> dict[str, Any]:
        return {c.strip(): row[c.strip()] for c in columns.split(",")}

    async def fetch_one(self, sql: str, params=()) -> dict[str, Any] | None:
        rows = await self.fetch_all(sql, params)
        return rows[0] if rows else None

    async def fetch_all(self, sql: str, params=()) -> list[dict[str, Any]]:
        self.check()
        sql = " ".join(sql.split())
        if m := self.INSERT.match(sql):
            table, columns, returning = m.groups()
            row = {**self.DEFAULTS, **dict(zip([c.strip() for c in columns.split(",")], params,
                                                 strict=True))}
            if any(r["id"] == row["id"] for r in self.tables[table]):
                return []  # ON CONFLICT (id) DO NOTHING
            self._clock += timedelta(seconds=1)
            row["created_at"] = self._clock
            self.tables[table].append(row)
            return [self._pick(row, returning)]
        if m := self.BY_ID.match(sql):
            columns, table = m.groups()
            return [self._pick(r, columns) for r in self.tables[table] if r["id"] == params[0]]
        if m := self.RECENT.match(sql):
            columns, table = m.groups()
            rows = sorted(self.tables[table], key=lambda r: r["created_at"], reverse=True)
            return [self._pick(r, columns) for r in rows[:params[0]]]
        if m := self.COUNT.match(sql):
            alias, table = m.groups()
            return [{alias: len(self.tables[table])}]
        raise AssertionError(f"the fake does not know this statement: {sql}")

    async def execute(self, sql: str, params=()) -> None:
        self.check()
        m = self.DELETE.match(" ".join(sql.split()))
        assert m, sql
        self.tables[m.group(1)] = [r for r in self.tables[m.group(1)] if r["id"] != params[0]]


class FakeCache(FakeStore):
    def __init__(self) -> None:
        super().__init__("redis")
        self.values: dict[str, str] = {}
        self.ttls: dict[str, int | None] = {}
        self.lists: dict[str, list[str]] = {}

    async def get(self, key: str) -> str | None:
        self.check()
        return self.values.get(key)

    async def set(self, key: str, value: str, ttl_seconds: int | None = None) -> None:
        self.check()
        self.values[key] = value
        self.ttls[key] = ttl_seconds

    async def delete(self, key: str) -> None:
        self.check()
        self.values.pop(key, None)

    async def push_capped(self, key: str, value: str, keep: int) -> None:
        self.check()
        self.lists[key] = [value, *self.lists.get(key, [])][:keep]

    async def list_range(self, key: str, count: int) -> list[str]:
        self.check()
        return self.lists.get(key, [])[:count]


class FakeVectors(FakeStore):
    def __init__(self) -> None:
        super().__init__("weaviate")
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}

    async def put_object(self, class_name: str, object_id: str, properties) -> None:
        self.check()
        self.objects[class_name, object_id] = {"class": class_name, "id": object_id,
                                               "properties": dict(properties)}

    async def get_object(self, class_name: str, object_id: str) -> dict[str, Any] | None:
        self.check()
        return self.objects.get((class_name, object_id))

    async def delete_object(self, class_name: str, object_id: str) -> None:
        self.check()
        self.objects.pop((class_name, object_id), None)


@pytest.fixture
def stores() -> Stores:
    return Stores(postgres=FakeDatabase(), redis=FakeCache(), weaviate=FakeVectors())


@pytest.fixture
def api(stores):
    with TestClient(create_app(SETTINGS, stores)) as client:
        yield client


def add_note(api, title="First", body="hello") -> dict[str, Any]:
    response = api.post("/api/notes", json={"title": title, "body": body})
    assert response.status_code == 201, response.text
    return response.json()


# --- settings --------------------------------------------------------------------------------


def test_settings_defaults_fit_a_local_machine():
    settings = Settings.from_env({})
    assert settings.database_url == "postgresql://orchestra@127.0.0.1:5432/orchestra"
    assert settings.weaviate_url == "http://127.0.0.1:8080"
    assert settings.release == "dev"
    assert settings.mcp_server_urls["monitor"] == "http://127.0.0.1:8009"
    assert settings.secrets() == ()


def test_settings_know_their_secrets_and_never_print_them():
    assert set(SETTINGS.secrets()) == {"pg%2Fpass", "pg/pass", "redis-pass", "wv-key"}
    shown = repr(SETTINGS)
    assert not any(secret in shown for secret in SETTINGS.secrets())
    assert "r42" in shown


def test_redact_masks_every_secret_longest_first():
    assert redact("url pg%2Fpass pg/pass", ("pg/pass", "pg%2Fpass")) == "url *** ***"


def test_mcp_server_urls():
    assert parse_server_urls(" memory=http://h:1/ , task=http://h:2") == {
        "memory": "http://h:1", "task": "http://h:2"}
    with pytest.raises(ValueError, match="not NAME=URL"):
        parse_server_urls("memory")


# --- API: health -----------------------------------------------------------------------------


def test_health_is_200_with_every_store_up(api):
    response = api.get("/api/health/")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok" and body["release"] == "r42" and body["environment"] == "test"
    assert set(body["checks"]) == {"postgres", "redis", "weaviate"}
    for check in body["checks"].values():
        assert check["status"] == "up" and check["latency_ms"] >= 0
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["x-orchestra-release"] == "r42"


@pytest.mark.parametrize("down", ["postgres", "redis", "weaviate"])
def test_health_is_503_when_any_store_is_down(api, stores, down):
    getattr(stores, down).down = True
    response = api.get("/api/health/")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable" and body["release"] == "r42"
    assert body["checks"][down] == {"status": "down", "error": "ConnectionError",
                                    "latency_ms": body["checks"][down]["latency_ms"]}
    assert [name for name, c in body["checks"].items() if c["status"] == "up"] == \
        [name for name in ("postgres", "redis", "weaviate") if name != down]


def test_the_api_starts_with_its_stores_down_and_recovers(stores):
    stores.redis.down = True
    with TestClient(create_app(SETTINGS, stores)) as client:
        assert stores.redis.pings == 1  # warmed up at startup, without failing it
        assert client.get("/api/health/").status_code == 503
        stores.redis.down = False
        assert client.get("/api/health/").status_code == 200
    assert all(store.closed for store in stores.present())


# --- API: notes ------------------------------------------------------------------------------


def test_a_new_note_lands_in_all_three_stores(api, stores):
    note = add_note(api, "Groceries", "milk")
    note_id = note["id"]
    assert note["title"] == "Groceries" and note["body"] == "milk" and note["created_at"]
    [row] = stores.postgres.tables["notes"]
    assert str(row["id"]) == note_id
    assert stores.redis.ttls[f"note:{note_id}"] == notes.CACHE_TTL_SECONDS
    assert stores.weaviate.objects["Note", note_id]["properties"] == {
        "title": "Groceries", "body": "milk", "note_id": note_id}


def test_reading_a_note_uses_the_cache_then_refills_it(api, stores):
    note = add_note(api)
    hit = api.get(f"/api/notes/{note['id']}")
    assert hit.status_code == 200 and hit.headers["x-cache"] == "hit"
    assert hit.json() == note
    stores.redis.values.clear()  # expired
    miss = api.get(f"/api/notes/{note['id']}")
    assert miss.headers["x-cache"] == "miss" and miss.json() == note
    assert f"note:{note['id']}" in stores.redis.values


def test_list_is_newest_first_and_bounded(api):
    ids = [add_note(api, f"n{i}")["id"] for i in range(3)]
    assert [n["id"] for n in api.get("/api/notes").json()] == ids[::-1]
    assert [n["id"] for n in api.get("/api/notes?limit=2").json()] == ids[:0:-1]
    assert api.get("/api/notes?limit=0").status_code == 422
    assert api.get("/api/notes?limit=1000").status_code == 422


def test_the_vector_object_is_read_back_from_weaviate(api):
    note = add_note(api)
    response = api.get(f"/api/notes/{note['id']}/vector-object")
    assert response.status_code == 200
    assert response.json()["class"] == "Note"
    assert response.json()["properties"]["note_id"] == note["id"]


def test_unknown_and_malformed_ids(api):
    missing = uuid.uuid4()
    assert api.get(f"/api/notes/{missing}").status_code == 404
    assert api.get(f"/api/notes/{missing}/vector-object").status_code == 404
    assert api.get("/api/notes/not-a-uuid").status_code == 422


@pytest.mark.parametrize("payload", [{}, {"title": ""}, {"title": "   "}, {"title": "x" * 201},
                                     {"title": "ok", "body": 5}])
def test_invalid_notes_are_refused(api, payload):
    assert api.post("/api/notes", json=payload).status_code == 422


@pytest.mark.parametrize("down", ["postgres", "redis", "weaviate"])
def test_a_store_down_gives_503_and_leaves_no_partial_note(api, stores, down):
    getattr(stores, down).down = True
    response = api.post("/api/notes", json={"title": "t"})
    assert response.status_code == 503
    assert response.json() == {"detail": f"{down} is unavailable", "store": down,
                               "error": "ConnectionError"}
    assert response.headers["retry-after"] == "1"
    assert response.headers["x-orchestra-release"] == "r42"
    assert stores.postgres.tables["notes"] == []
    assert stores.redis.values == {}
    assert stores.weaviate.objects == {}


def test_reads_answer_503_while_a_store_is_down_and_work_once_it_is_back(api, stores):
    note = add_note(api)
    stores.redis.down = True
    assert api.get(f"/api/notes/{note['id']}").status_code == 503
    stores.redis.down = False
    assert api.get(f"/api/notes/{note['id']}").status_code == 200
    stores.postgres.down = True
    assert api.get("/api/notes").status_code == 503
    stores.postgres.down = False
    assert api.get("/api/notes").status_code == 200


# --- MCP servers -----------------------------------------------------------------------------


def mcp_client(name: str, stores: Stores | None = None, **kwargs) -> TestClient:
    return TestClient(create_server(name, SETTINGS, stores or Stores(), **kwargs))


@pytest.mark.parametrize("name", ["memory", "task", "agent", "data", "monitor"])
def test_every_mcp_server_reports_its_name(name, stores):
    with mcp_client(name, stores) as client:
        assert client.get("/health").json() == {"status": "ok", "server": name}


def test_an_unknown_mcp_server_is_refused():
    with pytest.raises(ValueError, match="unknown MCP server 'search'"):
        create_server("search", SETTINGS, Stores())


def test_memory_keeps_values_in_redis(stores):
    with mcp_client("memory", stores) as client:
        stored = client.put("/memory/user.42", json={"value": "likes tea", "ttl_seconds": 60})
        assert stored.json() == {"key": "user.42", "value": "likes tea"}
        assert stores.redis.values["mcp:memory:user.42"] == "likes tea"
        assert stores.redis.ttls["mcp:memory:user.42"] == 60
        assert client.get("/memory/user.42").json() == {"key": "user.42", "value": "likes tea"}
        assert client.get("/memory/other").status_code == 404
        assert client.put("/memory/bad key", json={"value": "x"}).status_code == 422
        assert client.put("/memory/k", json={"value": "x", "ttl_seconds": 0}).status_code == 422
        stores.redis.down = True
        assert client.get("/memory/user.42").status_code == 503


def test_task_creates_and_lists_tasks_in_postgres(stores):
    with mcp_client("task", stores) as client:
        first = client.post("/tasks", json={"title": "index the notes"})
        assert first.status_code == 201
        assert first.json()["status"] == "open"
        client.post("/tasks", json={"title": "back up"})
        assert [t["title"] for t in client.get("/tasks").json()] == ["back up", "index the notes"]
        assert len(stores.postgres.tables["mcp_tasks"]) == 2
        assert client.post("/tasks", json={"title": ""}).status_code == 422


def test_agent_plans_and_records_the_latest_plans(stores, monkeypatch):
    monkeypatch.setattr(agent, "HISTORY_SIZE", 3)
    with mcp_client("agent", stores) as client:
        plan = client.post("/plan", json={"request": "Fetch the data. Then clean it; train"})
        assert plan.status_code == 201
        assert plan.json()["steps"] == ["Fetch the data", "clean it", "train"]
        for i in range(4):
            client.post("/plan", json={"request": f"request {i}"})
        recent = client.get("/plans?limit=3").json()
        assert [p["request"] for p in recent] == ["request 3", "request 2", "request 1"]
        assert len(stores.redis.lists[agent.HISTORY_KEY]) == 3  # older plans are dropped


@pytest.mark.parametrize(("request_text", "steps"), [
    ("just one thing", ["just one thing"]),
    ("a, then b\nc", ["a", "b", "c"]),
    ("Athens then Berlin", ["Athens", "Berlin"]),
    ("authentic thenar", ["authentic thenar"]),  # "then" only as a word
])
def test_plan_steps(request_text, steps):
    assert agent.plan_steps(request_text) == steps


def test_data_counts_the_notes(api, stores):
    with mcp_client("data", stores) as client:
        assert client.get("/notes/count").json() == {"notes": 0}
        add_note(api)
        add_note(api)
        assert client.get("/notes/count").json() == {"notes": 2}


def test_monitor_summarises_the_api_and_the_other_servers():
    seen = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        if request.url.port == 8007:
            raise httpx.ConnectError("refused", request=request)
        if request.url.path == "/api/health/":
            return httpx.Response(503, json={"status": "unavailable"})
        return httpx.Response(200, json={"status": "ok"})

    with mcp_client("monitor", transport=httpx.MockTransport(answer)) as client:
        summary = client.get("/summary").json()
    assert sorted(seen) == sorted([
        "http://127.0.0.1:8000/api/health/", "http://127.0.0.1:8003/health",
        "http://127.0.0.1:8006/health", "http://127.0.0.1:8007/health",
        "http://127.0.0.1:8008/health"])  # never itself (8009)
    assert summary["status"] == "degraded"
    services = summary["services"]
    assert services["api"]["status"] == "down" and services["api"]["http_status"] == 503
    assert services["agent"] == {"status": "down", "error": "ConnectError",
                                 "latency_ms": services["agent"]["latency_ms"]}
    assert {name for name, s in services.items() if s["status"] == "up"} == {
        "memory", "task", "data"}


# --- command lines ---------------------------------------------------------------------------


@pytest.fixture
def served(monkeypatch):
    """Records what would be served instead of starting uvicorn."""
    calls = []
    monkeypatch.setattr(server, "serve", lambda app, host, port: calls.append((app, host, port)))
    for variable in ("MCP_NAME", "MCP_PORT", "API_PORT"):
        monkeypatch.delenv(variable, raising=False)
    return calls


def test_mcp_command_line(served, monkeypatch):
    server.main(["--name", "task"])
    monkeypatch.setenv("MCP_NAME", "data")
    monkeypatch.setenv("MCP_PORT", "9108")
    server.main([])
    server.main(["--port", "9999", "--host", "10.0.0.5"])
    assert [(app.title, host, port) for app, host, port in served] == [
        ("Orchestra MCP server: task", "127.0.0.1", 8006),
        ("Orchestra MCP server: data", "127.0.0.1", 9108),
        ("Orchestra MCP server: data", "10.0.0.5", 9999),
    ]


@pytest.mark.parametrize("argv", [[], ["--name", "search"]])
def test_mcp_command_line_needs_a_known_name(served, argv, capsys):
    with pytest.raises(SystemExit) as exited:
        server.main(argv)
    assert exited.value.code == 2
    assert "must be one of memory, task, agent, data, monitor" in capsys.readouterr().err


def test_a_new_server_gets_its_port_from_the_deploy(served, monkeypatch, capsys):
    monkeypatch.setitem(server.SERVERS, "search", server.SERVERS["data"])
    with pytest.raises(SystemExit):
        server.main(["--name", "search"])
    assert "search has no default port: give --port or MCP_PORT" in capsys.readouterr().err
    server.main(["--name", "search", "--port", "8010"])
    assert served[-1][2] == 8010


def test_api_command_line(monkeypatch):
    import api.__main__ as api_main

    calls = []
    monkeypatch.setattr(api_main, "serve", lambda app, host, port: calls.append((app, port)))
    monkeypatch.delenv("API_PORT", raising=False)
    api_main.main([])
    monkeypatch.setenv("API_PORT", "8001")
    api_main.main([])
    api_main.main(["--port", "8002"])
    assert calls == [("api.main:app", 8000), ("api.main:app", 8001), ("api.main:app", 8002)]


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize("make", [
    lambda port: Postgres(f"postgresql://u:p@127.0.0.1:{port}/d"),
    lambda port: Redis(f"redis://127.0.0.1:{port}/0"),
    lambda port: Weaviate(f"http://127.0.0.1:{port}", classes=[{"class": "Note"}]),
], ids=["postgresql", "redis", "weaviate"])
def test_a_real_store_library_refused_at_once_is_tried_again_soon(make):
    # The real client libraries against a port nobody listens on: each one's own words for
    # "refused" must be recognised, or the store waits out the backoff after it is back.
    import asyncio

    store = make(closed_port())
    with pytest.raises(StoreUnavailable):
        asyncio.run(store.ping())
    assert 0 < store.gate.wait_left() <= store.gate.backoff.refused
