"""The environment contract: every setting the API and the MCP servers read (see README.md)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

# Defaults fit a developer's machine with local, password-less stores; the deploy always
# writes every variable into the app's env file.
DEFAULTS = {
    "DATABASE_URL": "postgresql://orchestra@127.0.0.1:5432/orchestra",
    "REDIS_URL": "redis://127.0.0.1:6379/0",
    "WEAVIATE_URL": "http://127.0.0.1:8080",
    "WEAVIATE_API_KEY": "",
    "ORCHESTRA_ENV": "development",
    "ORCHESTRA_RELEASE": "dev",
    "API_URL": "http://127.0.0.1:8000",
}
# The MCP servers and their default ports (the deploy's port table says the same).
MCP_DEFAULT_PORTS = {"memory": 8003, "task": 8006, "agent": 8007, "data": 8008, "monitor": 8009}


@dataclass(frozen=True)
class Settings:
    # repr=False keeps URLs with passwords and the API key out of any printed Settings.
    database_url: str = field(repr=False)
    redis_url: str = field(repr=False)
    weaviate_url: str
    weaviate_api_key: str = field(repr=False)
    environment: str
    release: str
    api_url: str
    # name -> base URL of every MCP server, for the monitor server (MCP_SERVER_URLS).
    mcp_server_urls: dict[str, str]

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        source = os.environ if env is None else env

        def get(name: str) -> str:
            return source.get(name, "").strip() or DEFAULTS[name]

        return cls(
            database_url=get("DATABASE_URL"),
            redis_url=get("REDIS_URL"),
            weaviate_url=get("WEAVIATE_URL").rstrip("/"),
            weaviate_api_key=get("WEAVIATE_API_KEY"),
            environment=get("ORCHESTRA_ENV"),
            release=get("ORCHESTRA_RELEASE"),
            api_url=get("API_URL").rstrip("/"),
            mcp_server_urls=parse_server_urls(source.get("MCP_SERVER_URLS", "")),
        )

    def secrets(self) -> tuple[str, ...]:
        """Every secret value in these settings, for masking them out of log lines."""
        found = [self.weaviate_api_key]
        for url in (self.database_url, self.redis_url):
            password = urlsplit(url).password
            if password:
                found += [password, unquote(password)]
        return tuple({s for s in found if s})


def parse_server_urls(raw: str) -> dict[str, str]:
    """MCP_SERVER_URLS ("memory=http://127.0.0.1:8003,task=...") as a dict; when empty, every
    server on this host at its default port."""
    if not raw.strip():
        return {name: f"http://127.0.0.1:{port}" for name, port in MCP_DEFAULT_PORTS.items()}
    urls = {}
    for item in raw.split(","):
        name, sep, url = item.strip().partition("=")
        if not (sep and name.strip() and url.strip()):
            raise ValueError(f"MCP_SERVER_URLS: {item.strip()!r} is not NAME=URL")
        urls[name.strip()] = url.strip().rstrip("/")
    return urls


def redact(text: str, secrets: tuple[str, ...]) -> str:
    """text with every secret replaced by ***; longest first, so no secret is half-masked."""
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text
