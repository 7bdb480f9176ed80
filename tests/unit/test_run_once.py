"""Which requests need the request ledger (`dmcp_aws.run_once`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from mcp_types import JSONRPCRequest

from dmcp_aws.run_once import READ_ONLY_METHODS, ToolHints, runs_harmlessly_twice

pytestmark = pytest.mark.anyio

TOOLS = [
    {"name": "echo", "annotations": {"readOnlyHint": True}},
    {"name": "upsert", "annotations": {"readOnlyHint": False, "idempotentHint": True}},
    {"name": "charge", "annotations": {"readOnlyHint": False, "destructiveHint": True}},
    {"name": "plain"},
    {"name": "odd", "annotations": {"readOnlyHint": "yes"}},
]


def call(name: Any, method: str = "tools/call") -> JSONRPCRequest:
    return JSONRPCRequest(jsonrpc="2.0", id=1, method=method, params={"name": name, "arguments": {}})


def test_only_read_only_or_idempotent_tools_run_harmlessly_twice() -> None:
    assert [runs_harmlessly_twice(t) for t in TOOLS] == [True, True, False, False, False]


async def test_the_ledger_is_skipped_only_where_mcp_says_it_may_be() -> None:
    listings = 0

    async def list_tools() -> list[Mapping[str, Any]]:
        nonlocal listings
        listings += 1
        return TOOLS

    hints = ToolHints()
    assert not await hints.needs_ledger(call("echo"), list_tools)
    assert not await hints.needs_ledger(call("upsert"), list_tools)
    assert await hints.needs_ledger(call("charge"), list_tools)
    assert await hints.needs_ledger(call("plain"), list_tools)
    assert await hints.needs_ledger(call("odd"), list_tools)
    assert listings == 1  # learned once
    assert await hints.needs_ledger(call("unknown"), list_tools)  # a new name is looked up again
    assert listings == 2
    assert await hints.needs_ledger(call(7), list_tools)
    assert await hints.needs_ledger(call("echo", method="custom/method"), list_tools)
    for method in READ_ONLY_METHODS:
        assert not await hints.needs_ledger(call("x", method=method), list_tools)
    assert listings == 2
