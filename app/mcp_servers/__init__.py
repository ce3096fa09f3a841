"""The Orchestra MCP servers: one process per name, built by mcp_servers.server.

Each speaks the Model Context Protocol with the official SDK (`mcp` on PyPI) over the
Streamable HTTP transport at /mcp, and keeps a plain GET /health for the health checks.
The package is not called `mcp`: that name is the SDK's.
"""
