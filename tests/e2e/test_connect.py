"""What connecting costs (issue 12). `dmcp_aws.connect.connect`: a process probes a server once;
later connections reuse what `server/discover` said, so connecting again costs no AWS call with a
provisioned queue. The transport: a connection makes only the calls it needs, deletes replies in
batches a moment after hand-off, and leaves its long poll to the next connection on its queue."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from contextvars import ContextVar
from typing import Any

import anyio
import pytest
from aiobotocore.client import AioBaseClient
from mcp import Client

from dmcp_aws.client import DELETE_DELAY_S, RECEIVE_VISIBILITY_S, sqs_client_transport
from dmcp_aws.connect import connect, forget_discovered
from dmcp_aws.local.stack import RunningStack

pytestmark = pytest.mark.anyio


@pytest.fixture
def aws_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The AWS operations this process's async clients call (client transport, workers, pollers)."""
    calls: list[str] = []
    original = AioBaseClient._make_api_call

    async def counted(client: Any, operation: str, params: Any) -> Any:
        calls.append(operation)
        return await original(client, operation, params)

    monkeypatch.setattr(AioBaseClient, "_make_api_call", counted)
    forget_discovered()
    yield calls
    forget_discovered()


async def test_a_second_connection_reuses_the_discover_result(
    stack: RunningStack, sqs: Any, aws_calls: list[str]
) -> None:
    name = f"{stack.reply_prefix}laptop"  # the provisioned client's reply queue
    options = {"endpoint_url": stack.endpoint_url, "reply_queue_url": stack.queue_url(name)}
    async with connect(stack.topic_target("example"), **options) as first:
        assert first.session.protocol_version == "2026-07-28"
        capabilities = first.session.server_capabilities
        assert (await first.call_tool("echo", {"text": "one"})).content[0].text == "one"  # type: ignore[union-attr]
    assert "Publish" in aws_calls  # the probe (and the call)
    aws_calls.clear()
    async with connect(stack.topic_target("example"), **options) as second:
        connecting = list(aws_calls)
        assert second.session.server_capabilities == capabilities
        assert (await second.call_tool("echo", {"text": "two"})).content[0].text == "two"  # type: ignore[union-attr]
    # No probe: nothing published or sent (the stack's pollers may receive and delete meanwhile:
    # the hook counts every call of the process).
    assert not {"Publish", "SendMessage", "CreateQueue"} & set(connecting), connecting
    aws_calls.clear()
    async with connect(stack.topic_target("example"), rediscover=True, **options):
        assert "Publish" in aws_calls


_MINE: ContextVar[list[str] | None] = ContextVar("own_calls", default=None)


@pytest.fixture
def own_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[], AbstractContextManager[list[str]]]]:
    """`with own_calls() as calls:` lists the AWS operations called in that block's context (and
    by the tasks started in it: the transport's reader and writer), not the stack's workers'."""
    original = AioBaseClient._make_api_call

    async def counted(client: Any, operation: str, params: Any) -> Any:
        if (mine := _MINE.get()) is not None:
            mine.append(operation)
        return await original(client, operation, params)

    @contextmanager
    def counting() -> Iterator[list[str]]:
        calls: list[str] = []
        token = _MINE.set(calls)
        try:
            yield calls
        finally:
            _MINE.reset(token)

    monkeypatch.setattr(AioBaseClient, "_make_api_call", counted)
    forget_discovered()
    yield counting
    forget_discovered()


async def test_connecting_makes_only_the_calls_it_needs(
    stack: RunningStack, own_calls: Callable[[], AbstractContextManager[list[str]]]
) -> None:
    """Issue 12: a provisioned reply queue, probing: the Publish and the ReceiveMessage that brings
    the answer (the answer's delete waits, and goes on close); remembering: none. A per-connection
    queue adds its CreateQueue (and its DeleteQueue on close)."""
    target = stack.topic_target("example")
    provisioned = {"reply_queue_url": stack.queue_url(f"{stack.reply_prefix}laptop")}
    per_connection = {"reply_prefix": stack.client_connection_prefix()}
    expected = {
        ("provisioned", "probing"): (["Publish", "ReceiveMessage"], ["DeleteMessageBatch"]),
        ("provisioned", "remembered"): ([], []),
        ("per-connection", "probing"): (["CreateQueue", "Publish", "ReceiveMessage"], ["DeleteQueue"]),
        ("per-connection", "remembered"): (["CreateQueue"], ["DeleteQueue"]),
    }
    for (queue, how), (connecting, closing) in expected.items():
        options = dict(
            provisioned if queue == "provisioned" else per_connection, endpoint_url=stack.endpoint_url
        )
        with own_calls() as calls:
            async with connect(target, rediscover=how == "probing", **options):
                made = sorted(calls)
            closed = calls[len(made) :]
        # (a long poll a closed connection left on the provisioned queue may bring the answer)
        assert made == connecting or (queue, how, made) == ("provisioned", "probing", ["Publish"]), (
            queue,
            how,
            made,
        )
        assert closed == closing, (queue, how, closed)


async def test_replies_are_deleted_soon_after_hand_off_and_never_come_back(
    stack: RunningStack, sqs: Any, own_calls: Callable[[], AbstractContextManager[list[str]]]
) -> None:
    """The delete of a handed-off reply waits `DELETE_DELAY_S` for others to join its batch, well
    inside the visibility a received reply has: it is gone before it could be received again, and
    what is still to delete when the connection closes is deleted then."""
    url = stack.queue_url(f"{stack.reply_prefix}laptop")
    options = {"endpoint_url": stack.endpoint_url, "reply_queue_url": url, "wait_time_seconds": 1}
    received: list[str] = []
    original = AioBaseClient._make_api_call

    async def watched(client: Any, operation: str, params: Any) -> Any:
        result = await original(client, operation, params)
        if operation == "ReceiveMessage" and params.get("QueueUrl") == url:
            received.extend(m["MessageId"] for m in result.get("Messages", []))
        return result

    assert DELETE_DELAY_S < RECEIVE_VISIBILITY_S / 4
    with own_calls() as calls, pytest.MonkeyPatch.context() as patch:
        patch.setattr(AioBaseClient, "_make_api_call", watched)
        async with connect(stack.topic_target("example"), rediscover=True, **options) as client:
            await client.call_tool("echo", {"text": "one"})
            await anyio.sleep(DELETE_DELAY_S + 0.5)
            assert "DeleteMessageBatch" in calls
            assert await _messages_in(sqs, url) == (0, 0)  # deleted, not just hidden
            await anyio.sleep(RECEIVE_VISIBILITY_S + 0.5 - DELETE_DELAY_S)
            await client.call_tool("echo", {"text": "two"})  # a poll that would see them again
            deletes = calls.count("DeleteMessageBatch")  # (the second answer's waits)
        assert calls.count("DeleteMessageBatch") == deletes + 1  # flushed on close
    assert received and len(received) == len(set(received)), received  # none came back
    assert await _messages_in(sqs, url) == (0, 0)


async def _messages_in(sqs: Any, url: str) -> tuple[int, int]:
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    attributes = (await sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names))["Attributes"]
    return int(attributes[names[0]]), int(attributes[names[1]])


async def test_a_reconnect_takes_over_the_long_poll_of_the_closed_connection(stack: RunningStack) -> None:
    """A long poll cancelled on the client lives on in the service and would take the next
    connection's first answer on the same provisioned queue, hiding it for the visibility of a
    received reply. The closed connection's poll is left running and the next one takes it over."""
    options = {
        "endpoint_url": stack.endpoint_url,
        "reply_queue_url": stack.queue_url(f"{stack.reply_prefix}laptop"),
    }
    first = Client(sqs_client_transport(stack.topic_target("protocol"), **options))
    async with first, anyio.create_task_group() as tg:
        tg.start_soon(first.call_tool, "linger", {"tag": "parked-poll", "seconds": 20})
        await anyio.sleep(1)  # its reader long-polls for the answer
        tg.cancel_scope.cancel()
    started = time.monotonic()
    async with Client(sqs_client_transport(stack.topic_target("example"), **options)) as second:
        assert (await second.call_tool("echo", {"text": "fast"})).content[0].text == "fast"  # type: ignore[union-attr]
    assert time.monotonic() - started < RECEIVE_VISIBILITY_S
