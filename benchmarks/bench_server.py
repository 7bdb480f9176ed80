"""The benchmark's server: the same echo twice, once declared free of side effects (it skips the
request ledger) and once not (it runs once, through the ledger)."""

from __future__ import annotations

from mcp.server.mcpserver import MCPServer
from mcp_types import ToolAnnotations

from dmcp_aws.lambda_handler import make_lambda_handler

mcp = MCPServer("bench")


@mcp.tool(annotations=ToolAnnotations(readOnlyHint=True))
def echo(text: str) -> str:
    """Return the text (read-only: a redelivery may run it again)."""
    return text


@mcp.tool()
def echo_once(text: str) -> str:
    """Return the text (not annotated: it runs once, through the request ledger)."""
    return text


handler = make_lambda_handler(mcp)
