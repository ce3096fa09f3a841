"""Resuming a Streamable HTTP stream with Last-Event-ID, spoken by hand over one HTTP client:
the SDK's client resumes on its own, but only when a connection drops, which a test cannot
time. Used against a server on loopback (app/tests) and through the edge (tests/e2e).

A handshake session calls the memory server's `remember` with a progress token: its POST's
event stream carries two progress notifications and the result, each event with an id. A GET
with the first one's id in Last-Event-ID must bring the other two again; the same GET in
another session must bring none of them.
"""

from __future__ import annotations

import json

PROTOCOL = "2025-11-25"
HEADERS = {"accept": "application/json, text/event-stream",
           "content-type": "application/json", "mcp-protocol-version": PROTOCOL}


def _messages(response, limit: int | None = None) -> list[tuple[str, dict]]:
    """(event id, JSON-RPC message) of each event that carries one (a priming event carries
    none), until the stream ends or ``limit`` of them came."""
    found, event_id, data = [], None, []
    for line in response.iter_lines():
        if line:
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "id":
                event_id = value
            elif field == "data":
                data.append(value)
            continue
        text = "\n".join(data).strip()
        if text:
            found.append((event_id, json.loads(text)))
            if limit is not None and len(found) >= limit:
                break
        event_id, data = None, []
    return found


def open_session(http, url: str) -> dict[str, str]:
    """A handshake session: the headers its requests carry."""
    init = http.post(url, headers=HEADERS, json={
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": PROTOCOL, "capabilities": {},
                   "clientInfo": {"name": "orchestra-resume-test", "version": "1"}}})
    assert init.status_code == 200, init.text[:500]
    headers = {**HEADERS, "mcp-session-id": init.headers["mcp-session-id"]}
    assert http.post(url, headers=headers, json={
        "jsonrpc": "2.0", "method": "notifications/initialized"}).status_code == 202
    return headers


def resume(http, url: str, key: str = "resume") -> dict:
    """Call, then resume after the first event, in the session and in another one."""
    headers = open_session(http, url)
    call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
            "params": {"name": "remember", "arguments": {"key": key, "value": "resumed"},
                       "_meta": {"progressToken": "resume-progress"}}}
    with http.stream("POST", url, headers=headers, json=call) as response:
        assert response.status_code == 200
        sent = _messages(response)
    first = sent[0][0]
    again = {**headers, "accept": "text/event-stream", "last-event-id": first}
    with http.stream("GET", url, headers=again) as response:
        replayed = _messages(response, limit=len(sent) - 1)
    other = open_session(http, url)
    with http.stream("GET", url, headers={**other, "accept": "text/event-stream",
                                          "last-event-id": first}) as response:
        foreign = _messages(response, limit=1)
    for session in (headers, other):
        http.delete(url, headers=session)
    return {"sent": sent, "replayed": replayed, "foreign": foreign}
