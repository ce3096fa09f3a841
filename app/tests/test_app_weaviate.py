"""app/: the Weaviate store against the repository's Weaviate stand-in over real HTTP on
127.0.0.1, including a restart of the stand-in under a live store.

Skipped when httpx (an app dependency, app/requirements.txt) is not installed.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

pytest.importorskip("httpx", reason="the app's dependencies (app/requirements.txt) are absent")

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "app"))

from api.backoff import Backoff  # noqa: E402
from api.notes import WEAVIATE_CLASS, WEAVIATE_CLASS_DEFINITION  # noqa: E402
from api.stores import StoreUnavailable  # noqa: E402
from api.stores.weaviate import Weaviate  # noqa: E402

STANDIN = REPO / "standins" / "weaviate" / "weaviate"
KEY = "app-test-key-5e1d"
READY_TIMEOUT = 10.0
POLL_INTERVAL = 0.05
# Never through a proxy from the environment: test traffic stays on loopback.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Standin:
    """The stand-in on 127.0.0.1:port, keeping its data in data_dir across restarts."""

    def __init__(self, data_dir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PERSISTENCE_DATA_PATH": str(data_dir),
            "GRPC_PORT": str(free_port()),
            "AUTHENTICATION_APIKEY_ENABLED": "true",
            "AUTHENTICATION_APIKEY_ALLOWED_KEYS": KEY,
            "AUTHENTICATION_APIKEY_USERS": "app",
            "AUTHENTICATION_ANONYMOUS_ACCESS_ENABLED": "false",
        }
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(STANDIN), "--host", "127.0.0.1", "--port", str(self.port),
             "--scheme", "http"],
            env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + READY_TIMEOUT
        for _ in range(int(READY_TIMEOUT / POLL_INTERVAL) + 1):
            try:
                with _OPENER.open(f"{self.url}/v1/.well-known/ready", timeout=1) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                break
            time.sleep(POLL_INTERVAL)
        self.stop()
        raise AssertionError("the Weaviate stand-in did not become ready")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self.process = None


@pytest.fixture
def standin(tmp_path):
    server = Standin(tmp_path / "data")
    server.start()
    yield server
    server.stop()


def store_for(standin: Standin, key: str = KEY) -> Weaviate:
    return Weaviate(standin.url, key, [WEAVIATE_CLASS_DEFINITION], timeout=2.0,
                    backoff=Backoff(base=0.05, cap=0.2), secrets=(key,))


def test_objects_round_trip_and_the_class_is_created_once(standin):
    object_id = str(uuid.uuid4())

    async def scenario():
        store, other = store_for(standin), store_for(standin)
        try:
            await store.ping()
            await other.ping()  # the class exists now: no error for a second process
            await store.put_object(WEAVIATE_CLASS, object_id, {"title": "a", "body": "b",
                                                               "note_id": object_id})
            await store.put_object(WEAVIATE_CLASS, object_id, {"title": "a2", "body": "b",
                                                               "note_id": object_id})
            found = await other.get_object(WEAVIATE_CLASS, object_id)
            await store.delete_object(WEAVIATE_CLASS, object_id)
            await store.delete_object(WEAVIATE_CLASS, object_id)  # already gone: fine
            gone = await store.get_object(WEAVIATE_CLASS, object_id)
            return found, gone
        finally:
            await store.close()
            await other.close()

    found, gone = asyncio.run(scenario())
    assert found["class"] == "Note" and found["id"] == object_id
    assert found["properties"] == {"title": "a2", "body": "b", "note_id": object_id}
    assert gone is None
    with _OPENER.open(urllib.request.Request(
            f"{standin.url}/v1/schema/Note", headers={"Authorization": f"Bearer {KEY}"})) as r:
        assert b'"note_id"' in r.read()


def test_a_wrong_api_key_is_an_unavailable_store_and_never_logged(standin, caplog):
    async def scenario():
        store = store_for(standin, key="wrong-key-9f")
        try:
            await store.ping()  # ready needs no key ...
        finally:
            await store.close()

    with pytest.raises(StoreUnavailable) as caught:  # ... but the schema check does
        asyncio.run(scenario())
    assert caught.value.kind == "HTTPStatusError" and "401" in caught.value.reason
    assert "wrong-key-9f" not in caplog.text + caught.value.reason


def test_the_store_survives_a_restart_of_weaviate(standin):
    object_id = str(uuid.uuid4())

    async def wait_until_served(store: Weaviate) -> dict:
        deadline = time.monotonic() + READY_TIMEOUT
        for _ in range(int(READY_TIMEOUT / POLL_INTERVAL) + 1):
            try:
                return await store.get_object(WEAVIATE_CLASS, object_id)
            except StoreUnavailable:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(POLL_INTERVAL)
        raise AssertionError("unreachable: the loop returns or raises")

    async def scenario():
        store = store_for(standin)
        try:
            await store.put_object(WEAVIATE_CLASS, object_id, {"title": "kept"})
            standin.stop()
            with pytest.raises(StoreUnavailable):
                await store.get_object(WEAVIATE_CLASS, object_id)
            standin.start()
            return await wait_until_served(store)
        finally:
            await store.close()

    found = asyncio.run(scenario())
    assert found["properties"]["title"] == "kept"
