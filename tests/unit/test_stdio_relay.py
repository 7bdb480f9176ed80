"""The stdio relay against a fake child: id remapping, progress routing, server-to-client requests
answered with an error, a hung child restarted with its request failing as transient."""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from mcp.server.lowlevel.server import Server
from mcp_types import (
    PROTOCOL_VERSION_META_KEY,
    JSONRPCError,
    JSONRPCNotification,
    JSONRPCRequest,
    JSONRPCResponse,
)

from dmcp_aws.bridges.stdio_server import ChildFailed, StdioWorker, _Mirror
from dmcp_aws.serving import serve_request
from dmcp_aws.worker import WorkerSettings

pytestmark = pytest.mark.anyio
FAKE = Path(__file__).with_name("stdio") / "fake_stdio_server.py"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def worker(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[StdioWorker]:
    config = {"command": sys.executable, "args": [str(FAKE)], "env": {}}
    monkeypatch.setenv("DMCP_STDIO_FAKE", json.dumps(config))
    relay = StdioWorker(Server("fake"), WorkerSettings(reply_prefix="test-reply-"))
    try:
        yield relay
    finally:
        await relay.aclose()


def call(request_id: Any, tool: str, meta: dict[str, Any] | None = None) -> JSONRPCRequest:
    params: dict[str, Any] = {"name": tool, "arguments": {}}
    if meta:
        params["_meta"] = meta
    return JSONRPCRequest(jsonrpc="2.0", id=request_id, method="tools/call", params=params)


def text_of(answer: Any) -> Any:
    assert isinstance(answer, JSONRPCResponse)
    return json.loads(answer.result["content"][0]["text"])


async def test_ids_and_progress_tokens_are_remapped_and_mapped_back(
    worker: StdioWorker, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[tuple[JSONRPCNotification, Any]] = []

    async def capture(channel: Any, message: Any, request_id: Any) -> None:
        sent.append((message, request_id))

    monkeypatch.setattr(worker, "_send", capture)
    child = await worker.child()
    assert child.initialized["serverInfo"]["name"] == "fake"
    first = await worker._relay(child, None, call(7, "echo-id", {"progressToken": "tok"}), 5)  # type: ignore[arg-type]
    second = await worker._relay(child, None, call(7, "echo-id"), 5)  # type: ignore[arg-type]
    assert first.id == second.id == 7  # type: ignore[union-attr]
    seen_first, seen_second = text_of(first), text_of(second)
    assert seen_first["id"] != seen_second["id"] and 7 not in (seen_first["id"], seen_second["id"])
    assert seen_first["meta"] == {"progressToken": seen_first["id"]}  # the child sees an internal token
    ((note, request_id),) = sent
    assert request_id == 7 and note.params == {"progressToken": "tok", "progress": 1, "total": 1}


async def test_a_request_from_the_child_gets_an_error_not_a_hang(worker: StdioWorker) -> None:
    child = await worker.child()
    answer = text_of(await worker._relay(child, None, call("a", "ask"), 5))  # type: ignore[arg-type]
    assert answer["id"] == "s1" and "not available" in answer["error"]["message"]


async def test_a_hung_child_is_restarted_and_its_request_fails_as_transient(worker: StdioWorker) -> None:
    child = await worker.child()
    with pytest.raises(ChildFailed, match="did not answer within"):
        await worker._relay(child, None, call(1, "hang"), 0.5)  # type: ignore[arg-type]
    assert not child.alive
    again = await worker.child()
    assert again is not child and again.alive
    assert text_of(await worker._relay(again, None, call(2, "echo-id"), 5))["id"] >= 1  # type: ignore[arg-type]


async def test_initialize_and_discover_come_from_the_child(worker: StdioWorker) -> None:
    child = await worker.child()

    async def ignore(_: Any) -> None:
        return None

    init = JSONRPCRequest(
        jsonrpc="2.0",
        id=1,
        method="initialize",
        params={
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "t", "version": "0"},
        },
    )
    answer = await serve_request(_Mirror(child.initialized), init, notify=ignore, lifespan_state={})
    assert not isinstance(answer, JSONRPCError)
    assert answer.result["serverInfo"]["version"] == "1.2.3" and answer.result["instructions"] == "be kind"
    assert answer.result["protocolVersion"] == "2025-06-18" and "tools" in answer.result["capabilities"]
    meta = {
        PROTOCOL_VERSION_META_KEY: "2026-07-28",
        "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "0"},
        "io.modelcontextprotocol/clientCapabilities": {},
    }
    discover = JSONRPCRequest(jsonrpc="2.0", id=2, method="server/discover", params={"_meta": meta})
    found = await serve_request(_Mirror(child.initialized), discover, notify=ignore, lifespan_state={})
    assert not isinstance(found, JSONRPCError), found
    assert found.result["instructions"] == "be kind" and "tools" in found.result["capabilities"]
