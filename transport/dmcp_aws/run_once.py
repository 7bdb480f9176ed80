"""Which requests need the request ledger, and which may harmlessly run twice.

The ledger (`dmcp_aws.idempotency`) makes a redelivered request run once, at the price of two
DynamoDB writes per request. MCP already says which requests need no such guarantee:

- the methods MCP defines without side effects (`tools/list`, `resources/read`, …);
- a `tools/call` of a tool whose author annotated it `readOnlyHint` (no side effects) or
  `idempotentHint` (calling it again with the same arguments changes nothing more).

Every other `tools/call`, and every custom method, goes through the ledger.

    >>> hints = ToolHints()
    >>> await hints.needs_ledger(request, list_tools)   # list_tools: the server's own tools/list
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

from mcp_types import JSONRPCRequest

READ_ONLY_METHODS: Final = frozenset(
    {
        "initialize",
        "ping",
        "server/discover",
        "tools/list",
        "resources/list",
        "resources/templates/list",
        "resources/read",
        "prompts/list",
        "prompts/get",
        "completion/complete",
    }
)
"""Methods MCP defines without side effects: running one twice is harmless."""

ListTools = Callable[[], Awaitable[list[Mapping[str, Any]]]]
"""Returns the server's tools as `tools/list` gives them (dicts with `name`, `annotations`)."""


def runs_harmlessly_twice(tool: Mapping[str, Any]) -> bool:
    """Whether a tool's annotations say a second run does no harm (read-only or idempotent)."""
    annotations = tool.get("annotations")
    if not isinstance(annotations, Mapping):
        return False
    return annotations.get("readOnlyHint") is True or annotations.get("idempotentHint") is True


class ToolHints:
    """What the server's tools say about themselves, learned from its `tools/list` once (and
    again when a call names a tool not seen yet)."""

    def __init__(self) -> None:
        self._harmless: dict[str, bool] | None = None

    async def needs_ledger(self, request: JSONRPCRequest, list_tools: ListTools) -> bool:
        """Whether running `request` twice could do harm, so it must go through the ledger."""
        if request.method in READ_ONLY_METHODS:
            return False
        if request.method != "tools/call":
            return True
        name = (request.params or {}).get("name")
        if not isinstance(name, str):
            return True
        if self._harmless is None or name not in self._harmless:
            self._harmless = {str(t.get("name")): runs_harmlessly_twice(t) for t in await list_tools()}
        return not self._harmless.get(name, False)
