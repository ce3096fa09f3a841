"""The Orchestra MCP servers: one FastAPI service per name, built by mcp.server."""
