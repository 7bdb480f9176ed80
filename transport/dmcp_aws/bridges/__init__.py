"""Bridges between dMCP and programs that speak MCP over stdio.

- `stdio_host`: `dmcp stdio`, a stdio MCP server that relays every message to one dMCP server
  over the client transport (any MCP host: Claude Desktop, VS Code, MCP Inspector).
- `stdio_server`: stdio MCP servers as workers, a child process per execution environment that
  each request is relayed to (a description entry with a `command` instead of a `handler`).
"""
