"""Where the API and the MCP servers listen: loopback, and a multi-host layout's private
address from ORCHESTRA_LISTEN_ALSO."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from api.web import listen_addresses  # noqa: E402


def test_loopback_only_by_default(monkeypatch):
    monkeypatch.delenv("ORCHESTRA_LISTEN_ALSO", raising=False)
    assert listen_addresses("127.0.0.1") == ["127.0.0.1"]


def test_the_private_address_too(monkeypatch):
    monkeypatch.setenv("ORCHESTRA_LISTEN_ALSO", "10.210.6.147, ,127.0.0.1")
    assert listen_addresses("127.0.0.1") == ["127.0.0.1", "10.210.6.147"]
