"""Serving one request in each protocol generation, with the real example server and no I/O."""

from __future__ import annotations

import pytest
from functions.example.server import mcp
from mcp_types import JSONRPCError, JSONRPCNotification, JSONRPCRequest, JSONRPCResponse

from dmcp_aws.serving import handshake_version, is_modern, serve_request

pytestmark = pytest.mark.anyio

MODERN_META = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientCapabilities": {},
}


async def _serve(
    request: JSONRPCRequest, hint: str | None = None
) -> tuple[JSONRPCResponse | JSONRPCError, list]:
    sent: list[JSONRPCNotification] = []

    async def notify(notification: JSONRPCNotification) -> None:
        sent.append(notification)

    server = mcp._lowlevel_server
    async with server.lifespan(server) as state:
        reply = await serve_request(server, request, notify=notify, lifespan_state=state, protocol_hint=hint)
    return reply, sent


async def test_modern_request_with_progress() -> None:
    params = {
        "name": "count_slowly",
        "arguments": {"steps": 2, "delay_s": 0},
        "_meta": {**MODERN_META, "progressToken": "t"},
    }
    reply, sent = await _serve(JSONRPCRequest(jsonrpc="2.0", id=1, method="tools/call", params=params))
    assert isinstance(reply, JSONRPCResponse) and reply.id == 1
    assert reply.result["resultType"] == "complete"
    assert [n.params["progress"] for n in sent] == [1, 2]  # type: ignore[index]
    assert all(n.params["progressToken"] == "t" for n in sent)  # type: ignore[index]


async def test_initialize_is_answered_from_static_capabilities() -> None:
    params = {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "t", "version": "1"},
    }
    reply, _ = await _serve(JSONRPCRequest(jsonrpc="2.0", id="i", method="initialize", params=params))
    assert isinstance(reply, JSONRPCResponse)
    assert reply.result["protocolVersion"] == "2025-06-18"
    assert reply.result["serverInfo"]["name"] == "example"


async def test_handshake_request_needs_no_prior_initialize() -> None:
    request = JSONRPCRequest(
        jsonrpc="2.0", id=3, method="tools/call", params={"name": "add", "arguments": {"a": 1, "b": 2}}
    )
    reply, _ = await _serve(request, hint="2025-11-25")
    assert isinstance(reply, JSONRPCResponse)
    assert reply.result["structuredContent"] == {"a": 1.0, "b": 2.0, "sum": 3.0}


async def test_broken_envelope_is_an_error_with_the_request_id() -> None:
    params = {"_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28"}}
    reply, _ = await _serve(JSONRPCRequest(jsonrpc="2.0", id=8, method="tools/list", params=params))
    assert isinstance(reply, JSONRPCError) and reply.id == 8
    assert "clientCapabilities" in reply.error.message


async def test_unsupported_modern_version_is_an_error() -> None:
    meta = {**MODERN_META, "io.modelcontextprotocol/protocolVersion": "2099-01-01"}
    reply, _ = await _serve(JSONRPCRequest(jsonrpc="2.0", id=9, method="tools/list", params={"_meta": meta}))
    assert isinstance(reply, JSONRPCError) and reply.id == 9


async def test_unknown_method_is_method_not_found() -> None:
    reply, _ = await _serve(
        JSONRPCRequest(jsonrpc="2.0", id=10, method="no/such", params={"_meta": MODERN_META})
    )
    assert isinstance(reply, JSONRPCError) and reply.error.code == -32601


def test_generation_routing() -> None:
    assert is_modern(JSONRPCRequest(jsonrpc="2.0", id=1, method="tools/list", params={"_meta": MODERN_META}))
    assert not is_modern(
        JSONRPCRequest(jsonrpc="2.0", id=1, method="initialize", params={"_meta": MODERN_META})
    )
    assert not is_modern(
        JSONRPCRequest(jsonrpc="2.0", id=1, method="tools/list", params={"_meta": {"progressToken": 1}})
    )
    init = JSONRPCRequest(jsonrpc="2.0", id=1, method="initialize", params={"protocolVersion": "1999-01-01"})
    assert handshake_version(init, None) == "2025-11-25"
    later = JSONRPCRequest(jsonrpc="2.0", id=1, method="tools/list")
    assert handshake_version(later, "2025-03-26") == "2025-03-26"
