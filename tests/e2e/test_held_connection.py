"""What MCP does over a held connection, done over the queue, beside the SDK's in-memory
transport doing the same (the behaviour to equal), in both protocol generations.

The `protocol` server (`tests/e2e/protocol_server.py`) runs in the embedded stack's worker
threads, so what it records (`SEEN`) is read here directly.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp_types import (
    CreateMessageResult,
    ElicitResult,
    ListRootsResult,
    Root,
    TextContent,
)

from dmcp_aws.client import sqs_client_transport
from dmcp_aws.local.stack import RunningStack
from tests.e2e import protocol_server
from tests.e2e.protocol_server import SEEN

pytestmark = pytest.mark.anyio

MODES = ["legacy", "auto"]
"""`legacy`: the 2025-11-25 handshake; `auto`: the SDK probes and speaks 2026-07-28."""


async def _sampling(ctx: Any, params: Any) -> CreateMessageResult:
    return CreateMessageResult(role="assistant", content=TextContent(type="text", text="queues"), model="m")


async def _elicitation(ctx: Any, params: Any) -> ElicitResult:
    if getattr(params, "mode", "form") == "url":
        return ElicitResult(action="decline")
    return ElicitResult(action="accept", content={"name": "Ada"})


async def _roots(ctx: Any) -> ListRootsResult:
    return ListRootsResult(roots=[Root(uri="file:///work/project")])


CALLBACKS: dict[str, Any] = {
    "sampling_callback": _sampling,
    "elicitation_callback": _elicitation,
    "list_roots_callback": _roots,
}

Connect = Callable[..., Any]


@pytest.fixture
def over_queue(stack: RunningStack) -> Connect:
    """Open a `Client` to the protocol server over the embedded stack."""

    @asynccontextmanager
    async def connect(mode: str, timeout: float = 30, **options: Any) -> AsyncIterator[Client]:
        transport = sqs_client_transport(
            stack.topic_target("protocol"), **stack.client_options(), request_timeout=timeout
        )
        async with Client(transport, mode=mode, **options) as client:  # type: ignore[arg-type]
            yield client

    return connect


@asynccontextmanager
async def in_memory(mode: str, **options: Any) -> AsyncIterator[Client]:
    async with Client(protocol_server.mcp, mode=mode, **options) as client:  # type: ignore[arg-type]
        yield client


async def _outcome(call: Any) -> Any:
    """A call's result in comparable form: the content and error flag, or the error's code and
    message."""
    try:
        result = await call
    except MCPError as exc:
        return ("error", exc.error.code, exc.error.message)
    if hasattr(result, "is_error"):
        return (
            "result",
            result.is_error,
            [c.model_dump() for c in result.content],
            result.structured_content,
        )
    return ("result", result.model_dump(exclude={"meta"}))


async def _wait_for(predicate: Callable[[], bool], within_s: float = 10.0) -> None:
    with anyio.fail_after(within_s):
        while not predicate():
            await anyio.sleep(0.05)


# Item 1: errors, as each generation's SDK server answers them.
ERROR_CASES: list[tuple[str, Callable[[Client], Any]]] = [
    ("tool that raises", lambda c: c.call_tool("boom", {})),
    ("unknown tool", lambda c: c.call_tool("nope", {})),
    ("unknown prompt", lambda c: c.get_prompt("nope", {})),
    ("missing prompt argument", lambda c: c.get_prompt("review", {})),
    ("wrong-typed prompt argument", lambda c: c.get_prompt("review", {"code": "x", "times": "many"})),
    ("unknown resource", lambda c: c.read_resource("dmcp://protocol/nothing")),
]


@pytest.mark.parametrize("mode", MODES)
async def test_errors_are_the_sdks_own(mode: str, over_queue: Connect) -> None:
    outcomes = {}
    async with in_memory(mode) as local, over_queue(mode) as remote:
        for name, call in ERROR_CASES:
            outcomes[name] = await _outcome(call(local))
            assert await _outcome(call(remote)) == outcomes[name], name
    # The handshake era answers with the exception's own code and message, 2026-07-28 hides it.
    expected = (
        ("error", 0, "Unknown prompt: nope")
        if mode == "legacy"
        else ("error", -32603, "Internal server error")
    )
    assert outcomes["unknown prompt"] == expected


# Items 4 and 5: what initialize declared, and the server's requests to the client.
BACK_CHANNEL_CASES: list[tuple[str, Callable[[Client], Any]]] = [
    ("client info and capabilities", lambda c: c.call_tool("whoami", {})),
    ("elicitation", lambda c: c.call_tool("greet", {})),
    ("URL elicitation", lambda c: c.call_tool("visit", {})),
    ("sampling", lambda c: c.call_tool("muse", {"topic": "queues"})),
    ("roots", lambda c: c.call_tool("roots", {})),
    ("server ping", lambda c: c.call_tool("ping_client", {})),
]


@pytest.mark.parametrize("mode", MODES)
async def test_server_asks_the_client(mode: str, over_queue: Connect) -> None:
    async with in_memory(mode, **CALLBACKS) as local, over_queue(mode, **CALLBACKS) as remote:
        for name, call in BACK_CHANNEL_CASES:
            expected = await _outcome(call(local))
            assert await _outcome(call(remote)) == expected, name
    assert expected[:2] == (("result", False) if mode == "legacy" else ("error", -32600))


@pytest.mark.parametrize("mode", MODES)
async def test_without_the_capability_the_sdks_error(mode: str, over_queue: Connect) -> None:
    async with in_memory(mode) as local, over_queue(mode) as remote:
        for name, call in BACK_CHANNEL_CASES[:5]:
            expected = await _outcome(call(local))
            assert await _outcome(call(remote)) == expected, name
        who = await _outcome(remote.call_tool("whoami", {}))
    assert who[3] == {"client": "mcp", "sampling": False, "elicitation": False}


# Item 2: client notifications reach the server's handlers.
async def test_client_notifications_reach_the_handlers(over_queue: Connect) -> None:
    async with over_queue("legacy") as client:
        before = len(SEEN)
        await client.session.send_roots_list_changed()
        await client.session.send_progress_notification("client-token", 0.5, 1.0)
        await _wait_for(lambda: len(SEEN) >= before + 2)
    assert sorted(e for e, _ in SEEN[before:]) == ["client_progress", "roots_list_changed"]


@pytest.mark.parametrize("mode", MODES)
async def test_notifications_as_in_memory(mode: str, over_queue: Connect) -> None:
    """The same notifications reach the same handlers as in memory (at 2026-07-28 the
    deprecated ones reach none: the SDK drops them there too)."""

    async def send_all(client: Client) -> None:
        await client.session.send_roots_list_changed()
        await client.session.send_progress_notification("client-token", 0.5, 1.0)
        await client.call_tool("whoami", {})  # a request after them: they have been handled

    async with in_memory(mode) as local:
        start = len(SEEN)
        await send_all(local)
        await anyio.sleep(0.2)
        expected = sorted(e for e, _ in SEEN[start:])
    async with over_queue(mode) as remote:
        start = len(SEEN)
        await send_all(remote)
        if expected:
            await _wait_for(lambda: len(SEEN) >= start + len(expected))
        else:
            await anyio.sleep(2)
        assert sorted(e for e, _ in SEEN[start:]) == expected


# Item 3: cancellation cancels, wherever the handler runs, and is never retried.
@pytest.mark.parametrize("mode", MODES)
async def test_abandoned_call_cancels_its_handler(mode: str, over_queue: Connect) -> None:
    tag = f"abandoned-{mode}-{time.monotonic_ns()}"
    async with over_queue(mode) as client:
        with anyio.move_on_after(20):
            async with anyio.create_task_group() as tg:
                tg.start_soon(client.call_tool, "linger", {"tag": tag, "seconds": 20})
                await _wait_for(lambda: ("started", tag) in SEEN)
                tg.cancel_scope.cancel()  # the SDK sends notifications/cancelled
        started = time.monotonic()
        await _wait_for(lambda: ("cancelled", tag) in SEEN)
        elapsed = time.monotonic() - started
        # The server's own handler of notifications/cancelled saw it, naming the request's id.
        since_start = SEEN.index(("started", tag))
        await _wait_for(
            lambda: any(e == "cancelled_notification" and d is not None for e, d in SEEN[since_start:])
        )
        # Never retried: the request does not start again once the queue would redeliver it.
        await anyio.sleep(4)
        assert await client.call_tool("whoami", {})
    assert [e for e in SEEN if e[1] == tag] == [("started", tag), ("cancelled", tag)]
    assert elapsed < 5


async def test_transport_timeout_stops_the_handler(over_queue: Connect) -> None:
    tag = f"timed-out-{time.monotonic_ns()}"
    async with over_queue("auto", timeout=2) as client:
        with pytest.raises(MCPError) as raised:
            await client.call_tool("linger", {"tag": tag, "seconds": 20})
        assert raised.value.error.code == -32001
        await _wait_for(lambda: ("cancelled", tag) in SEEN)
    assert [e for e in SEEN if e[1] == tag] == [("started", tag), ("cancelled", tag)]


# Item 7: progress a handler sends after its response is dropped, never a stray.
async def test_progress_after_the_response_is_dropped(stack: RunningStack, sqs: Any) -> None:
    progress: list[float] = []
    strays: list[Any] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append(value)

    async def message_handler(message: Any) -> None:
        strays.append(message)

    name = f"{stack.client_connection_prefix()}late{time.monotonic_ns()}"
    reply_queue = (await sqs.create_queue(QueueName=name))["QueueUrl"]
    options = stack.client_options() | {"reply_queue_url": reply_queue}
    transport = sqs_client_transport(stack.topic_target("protocol"), **options)
    async with Client(transport, mode="legacy", message_handler=message_handler) as client:  # type: ignore[arg-type]
        before = len(SEEN)
        result = await client.call_tool("late_progress", {}, progress_callback=on_progress)
        assert result.content[0].text == "answered"  # type: ignore[union-attr]
        # Lambda freezes an environment between invocations (the embedded stack's containers run
        # their loop only while invoked): the late progress goes out during a later invocation.
        with anyio.fail_after(15):
            while not any(e == "late_progress_sent" for e, _ in SEEN[before:]):
                await client.call_tool("whoami", {})
        with anyio.fail_after(10):  # the transport takes it off the queue...
            while await _messages_in(sqs, reply_queue):
                await anyio.sleep(0.1)
    await sqs.delete_queue(QueueUrl=reply_queue)
    assert progress == [] and strays == []  # ...and says nothing of it to the session


async def _messages_in(sqs: Any, queue_url: str) -> int:
    counts = await sqs.get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )
    return sum(int(v) for v in counts["Attributes"].values())


# Item 6: notifications outside a request need the events plane; until then both paths are
# refused at once (never held open to the function timeout) and not advertised.
async def test_subscriptions_are_refused_until_the_events_plane(stack: RunningStack) -> None:
    transport = sqs_client_transport(
        stack.topic_target("example"), **stack.client_options(), request_timeout=30
    )
    async with Client(transport) as client:  # type: ignore[arg-type]
        capabilities = client.session.server_capabilities
        assert (
            capabilities is not None and capabilities.resources is not None and capabilities.tools is not None
        )
        assert not capabilities.resources.subscribe and not capabilities.tools.list_changed
        with anyio.fail_after(10), pytest.raises(MCPError) as refused:
            async with client.listen(tools_list_changed=True):
                pass
    assert refused.value.error.code == -32601 and "events plane" in refused.value.error.message
    transport = sqs_client_transport(
        stack.topic_target("example"), **stack.client_options(), request_timeout=30
    )
    async with Client(transport, mode="legacy") as client:  # type: ignore[arg-type]
        with anyio.fail_after(10), pytest.raises(MCPError) as refused:
            await client.session.subscribe_resource("dmcp://example/about")
    assert refused.value.error.code == -32601
