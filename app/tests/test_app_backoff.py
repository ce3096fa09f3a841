"""app/: the backoff policy and the reconnecting store base class, with a fake store client.

Needs only the standard library: api.backoff and api.stores.base import no third-party code.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from api.backoff import Backoff, ReconnectGate  # noqa: E402
from api.stores.base import Store, StoreUnavailable, refused  # noqa: E402


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --- Backoff ---------------------------------------------------------------------------------


def test_delays_double_up_to_the_cap_without_jitter():
    backoff = Backoff(base=0.5, factor=2, cap=4, jitter=0.5)
    no_jitter = [backoff.delay(n, rand=lambda: 0.0) for n in range(6)]
    assert no_jitter == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


def test_jitter_shortens_by_at_most_its_fraction():
    backoff = Backoff(base=1, factor=2, cap=8, jitter=0.25)
    assert backoff.delay(2, rand=lambda: 1.0) == pytest.approx(3.0)
    for attempt in range(12):
        ceiling = min(8, 2**attempt)
        for _ in range(50):
            assert ceiling * 0.75 <= backoff.delay(attempt) <= ceiling


def test_jitter_spreads_the_delays():
    assert len({Backoff().delay(3) for _ in range(20)}) > 1


def test_a_very_long_outage_neither_overflows_nor_exceeds_the_cap():
    assert Backoff(cap=10).delay(10_000, rand=lambda: 0.0) == 10


def test_a_store_back_after_a_long_outage_is_tried_again_within_two_seconds():
    # Requests fail fast until the next attempt: the default keeps that tail short.
    assert Backoff().delay(10_000, rand=lambda: 0.0) == 2


@pytest.mark.parametrize("kwargs", [{"base": 0}, {"base": 5, "cap": 1}, {"factor": 0.5},
                                    {"jitter": 1}, {"jitter": -0.1}, {"refused": -1},
                                    {"refused": 3}])
def test_invalid_backoffs_are_refused(kwargs):
    with pytest.raises(ValueError):
        Backoff(**kwargs)


# --- ReconnectGate ---------------------------------------------------------------------------


def test_the_gate_spaces_attempts_by_the_backoff_and_opens_on_success():
    clock = FakeClock()
    gate = ReconnectGate(Backoff(base=1, factor=2, cap=10, jitter=0), clock)
    assert gate.wait_left() == 0
    assert [gate.record_failure() for _ in range(3)] == [1, 2, 4]
    assert gate.wait_left() == 4
    clock.now += 3
    assert gate.wait_left() == 1
    clock.now += 1
    assert gate.wait_left() == 0
    gate.record_success()
    assert gate.failures == 0
    assert gate.record_failure() == 1


def test_a_refused_connection_is_tried_again_soon_however_long_the_outage():
    clock = FakeClock()
    gate = ReconnectGate(Backoff(base=1, factor=2, cap=10, jitter=0, refused=0.1), clock)
    assert [gate.record_failure(refused=True) for _ in range(20)] == [0.1] * 20
    assert gate.wait_left() == pytest.approx(0.1)
    # A store that stops answering at all is back on the backoff.
    assert gate.record_failure() == 10


# --- Store -----------------------------------------------------------------------------------


class ConnectionLost(Exception):
    """The fake library's "connection is gone" error."""


class FakeClient:
    def __init__(self, number: int) -> None:
        self.number = number
        self.broken = False
        self.closed = False
        self.prepared = False


class FakeStore(Store[FakeClient]):
    """A store whose server can be taken down and whose connections can be broken."""

    name = "fake"
    errors = (ConnectionLost,)

    def __init__(self, **kwargs) -> None:
        kwargs.setdefault("backoff", Backoff(base=1, factor=2, cap=8, jitter=0))
        kwargs.setdefault("timeout", 0.5)
        super().__init__(**kwargs)
        self.server_up = True
        self.refusing = False  # down, and the kernel answers "refused" at once
        self.fail_prepare = False
        self.clients: list[FakeClient] = []

    async def _connect(self) -> FakeClient:
        if self.refusing:
            try:
                raise ConnectionRefusedError(111, "Connection refused")
            except ConnectionRefusedError as exc:
                raise ConnectionLost("cannot reach fake:1234") from exc
        if not self.server_up:
            raise ConnectionLost("fake:1234 did not answer password=hunter2")
        client = FakeClient(len(self.clients) + 1)
        self.clients.append(client)
        return client

    async def _prepare(self, client: FakeClient) -> None:
        if self.fail_prepare:
            raise ConnectionLost("lost while creating the schema")
        client.prepared = True

    async def _ping(self, client: FakeClient) -> None:
        await self.query(client)

    async def _close(self, client: FakeClient) -> None:
        client.closed = True

    async def query(self, client: FakeClient) -> int:
        if client.broken or not self.server_up:
            raise ConnectionLost("connection reset")
        return client.number

    def restart_server(self) -> None:
        """What a store restart does to the connections a process holds."""
        for client in self.clients:
            client.broken = True


def run(coro):
    return asyncio.run(coro)


def test_nothing_connects_before_first_use():
    store = FakeStore()
    assert not store.connected and store.clients == []
    assert run(store.run(store.query)) == 1
    assert store.connected and store.clients[0].prepared


def test_one_connection_is_reused():
    store = FakeStore()

    async def scenario():
        return [await store.run(store.query) for _ in range(3)]

    assert run(scenario()) == [1, 1, 1]


def test_a_store_restart_costs_no_failed_request():
    store = FakeStore()

    async def scenario():
        await store.run(store.query)
        store.restart_server()
        return await store.run(store.query)

    assert run(scenario()) == 2
    assert store.clients[0].closed
    assert store.gate.failures == 0


def test_while_down_requests_fail_fast_and_attempts_follow_the_backoff():
    clock = FakeClock()
    store = FakeStore(clock=clock)
    store.server_up = False

    async def attempt() -> StoreUnavailable:
        with pytest.raises(StoreUnavailable) as caught:
            await store.run(store.query)
        return caught.value

    first = run(attempt())
    assert (first.store, first.kind) == ("fake", "ConnectionLost")
    assert store.gate.failures == 1
    # Within the delay nothing is tried: the request fails at once.
    gated = run(attempt())
    assert gated.kind == "ConnectionLost" and store.gate.failures == 1
    assert gated.reason == "next connection attempt in 1.0s"
    waits = []
    for _ in range(4):
        clock.now += store.gate.wait_left()
        run(attempt())
        waits.append(store.gate.wait_left())
    assert waits == [2, 4, 8, 8]  # exponential, capped

    store.server_up = True
    clock.now += store.gate.wait_left()
    assert run(store.run(store.query)) == 1
    assert store.gate.failures == 0


def test_a_store_that_refuses_is_tried_again_a_tenth_of_a_second_later():
    clock = FakeClock()
    store = FakeStore(clock=clock, backoff=Backoff(base=1, factor=2, cap=8, jitter=0))
    store.refusing = True
    for _ in range(5):
        with pytest.raises(StoreUnavailable):
            run(store.run(store.query))
        assert store.gate.wait_left() == pytest.approx(0.1)
        clock.now += 0.1
    store.refusing = False
    assert run(store.run(store.query)) == 1


@pytest.mark.parametrize("error", [
    ConnectionRefusedError(111, "Connection refused"),
    # psycopg (libpq's words), redis-py, httpx
    Exception('connection failed: connection to server at "127.0.0.1", port 5432 failed: '
              'Connection refused\n\tIs the server running on that host?'),
    Exception("FATAL:  the database system is starting up"),
    Exception("Error 111 connecting to 127.0.0.1:6379. Connection refused."),
    Exception("LOADING Redis is loading the dataset in memory"),
    Exception("[Errno 111] Connect call failed ('127.0.0.1', 8080)"),
])
def test_refused_connections_are_recognised_in_each_librarys_words(error):
    assert refused(error)


@pytest.mark.parametrize("error", [
    TimeoutError(), ConnectionResetError(104, "Connection reset by peer"),
    Exception("FATAL:  password authentication failed for user \"orchestra\""),
    Exception("sorry, too many clients already"),
])
def test_other_failures_wait_for_the_backoff(error):
    assert not refused(error)


def test_a_failure_on_a_new_connection_is_not_retried_at_once():
    store = FakeStore()

    async def broken_query(client: FakeClient) -> int:
        raise ConnectionLost("still loading")

    with pytest.raises(StoreUnavailable):
        run(store.run(broken_query))
    assert len(store.clients) == 1 and store.clients[0].closed
    assert store.gate.failures == 1


def test_a_hung_operation_is_cut_at_the_timeout():
    store = FakeStore(timeout=0.05)

    async def hang(client: FakeClient) -> None:
        await asyncio.sleep(30)

    async def scenario():
        await store.ping()  # connected: the hang below is on a reused connection
        with pytest.raises(StoreUnavailable) as caught:
            await store.run(hang)
        return caught.value

    started = time.monotonic()
    error = run(scenario())
    assert time.monotonic() - started < 5  # two attempts of 0.05 s, not the 30 s sleep
    assert error.kind == "TimeoutError"
    assert len(store.clients) == 2 and all(c.closed for c in store.clients)


def test_a_failed_schema_setup_closes_the_new_connection():
    store = FakeStore()
    store.fail_prepare = True
    with pytest.raises(StoreUnavailable):
        run(store.ping())
    assert store.clients[0].closed and not store.connected


def test_other_errors_are_bugs_not_outages():
    store = FakeStore()

    async def bad_query(client: FakeClient) -> None:
        raise ValueError("syntax error")

    async def scenario():
        await store.ping()
        with pytest.raises(ValueError):
            await store.run(bad_query)

    run(scenario())
    assert store.connected and store.gate.failures == 0


def test_secrets_never_reach_the_logs_or_the_error(caplog):
    store = FakeStore(secrets=("hunter2",))
    store.server_up = False
    with caplog.at_level(logging.DEBUG, logger="orchestra.stores"):
        with pytest.raises(StoreUnavailable) as caught:
            run(store.ping())
    assert "hunter2" not in caught.value.reason and "***" in caught.value.reason
    assert "hunter2" not in caplog.text and "next connection attempt in 1.0s" in caplog.text


def test_close_releases_the_connection():
    store = FakeStore()

    async def scenario():
        await store.ping()
        await store.close()

    run(scenario())
    assert store.clients[0].closed and not store.connected
