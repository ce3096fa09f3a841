"""The events a server sent on its Streamable HTTP streams, kept for a while so that a client
whose connection dropped resumes where it was: it reconnects (GET) with the last event's id
in ``Last-Event-ID`` and receives what it missed (the SDK's resumability; an ``EventStore``).

In memory, like the sessions they belong to (a restart ends both), bounded in number and in
bytes: the oldest events go first. A client that comes back later than that gets no replay
(the SDK then answers as for an unknown id) and starts over, as after a restart.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict

from mcp.server.streamable_http import EventCallback, EventId, EventMessage, EventStore, StreamId
from mcp.types import JSONRPCMessage

# Enough for every stream of a few hundred sessions' last minutes; a server holds at most
# this much on top of its sessions.
MAX_EVENTS = 10_000
MAX_BYTES = 16 * 1024 * 1024


class BoundedEventStore(EventStore):
    def __init__(self, max_events: int = MAX_EVENTS, max_bytes: int = MAX_BYTES) -> None:
        self.max_events, self.max_bytes = max_events, max_bytes
        # event id -> (stream, message, its size); ids are increasing integers, as text.
        self._events: OrderedDict[str, tuple[StreamId, JSONRPCMessage | None, int]] = \
            OrderedDict()
        self._bytes = 0
        self._ids = itertools.count(1)

    async def store_event(self, stream_id: StreamId, message: JSONRPCMessage | None) -> EventId:
        event_id = str(next(self._ids))
        size = len(message.model_dump_json(by_alias=True)) if message is not None else 0
        self._events[event_id] = (stream_id, message, size)
        self._bytes += size
        while self._events and (len(self._events) > self.max_events
                                or self._bytes > self.max_bytes):
            _, (_, _, dropped) = self._events.popitem(last=False)
            self._bytes -= dropped
        return event_id

    async def replay_events_after(self, last_event_id: EventId,
                                  send_callback: EventCallback) -> StreamId | None:
        if last_event_id not in self._events:
            return None
        stream_id = self._events[last_event_id][0]
        after = itertools.dropwhile(lambda item: item[0] != last_event_id,
                                    list(self._events.items()))
        next(after)  # the last event the client has
        for event_id, (stream, message, _) in after:
            if stream == stream_id and message is not None:
                await send_callback(EventMessage(message, event_id))
        return stream_id

    @property
    def count(self) -> int:
        # Not __len__: the SDK tests the store for truth (`if self._event_store:`), and an
        # empty store must not read as no store.
        return len(self._events)


# Events per session: bounded each, so a server holds at most max_sessions times this.
SESSION_EVENTS = 1_000
SESSION_BYTES = 1024 * 1024


def per_session(manager) -> None:
    """Give each handshake session of ``manager`` (the SDK's StreamableHTTPSessionManager,
    made with an event store) an event store of its own.

    The SDK hands every session's transport the one store it was given, and a stream's id is
    only the JSON-RPC request id (or the GET stream's fixed name): with one store, a client
    resuming after event N of its stream "2" would be sent every later event of any
    session's stream "2". One store per transport keeps each session's events its own.
    (The SDK has no hook for it: this wraps its session admission, pinned by the hash-locked
    requirements and by app/tests/test_app_mcp.py.)
    """
    admit = manager._admit_session

    def admit_with_own_events(requestor):
        transport = admit(requestor)
        if transport is not None:
            transport._event_store = BoundedEventStore(SESSION_EVENTS, SESSION_BYTES)
        return transport

    manager._admit_session = admit_with_own_events


def routed(manager, route: str) -> None:
    """Make every handshake session id of ``manager`` begin with ``route-``: the edge sends
    the requests of a session to the instance whose route its id begins with (nginx's map,
    orchestra_infra/catalog.py's session_route), so that with several instances of a server
    a session stays where it lives. Wraps the SDK's session admission, like per_session,
    and renames the session it admitted before anyone has seen its id."""
    admit = manager._admit_session

    def admit_routed(requestor):
        transport = admit(requestor)
        if transport is not None:
            old = transport.mcp_session_id
            new = f"{route}-{old}"
            transport.mcp_session_id = new
            manager._server_instances[new] = manager._server_instances.pop(old)
            if old in manager._session_owners:
                manager._session_owners[new] = manager._session_owners.pop(old)
        return transport

    manager._admit_session = admit_routed
