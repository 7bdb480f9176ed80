"""Requests a client sends together leave together: one `PublishBatch` (topic) or
`SendMessageBatch` (queue) for what the session queued at once, and each still gets its own
answer, or its own error."""

from __future__ import annotations

from collections import Counter
from typing import Any

import anyio
import pytest
from aiobotocore.client import AioBaseClient
from mcp import Client

from dmcp_aws.client import QueueTarget, TopicTarget, sqs_client_transport
from dmcp_aws.local.stack import RunningStack
from dmcp_aws.wire import MAX_MESSAGE_BYTES
from tests.e2e.raw import example_queues

pytestmark = pytest.mark.anyio

SENDS = ("Publish", "PublishBatch", "SendMessage", "SendMessageBatch")


def _targets(stack: RunningStack) -> dict[str, TopicTarget | QueueTarget]:
    return {
        "topic": stack.topic_target("example"),
        "queue": QueueTarget(example_queues(stack)[0], "example"),
    }


@pytest.mark.parametrize("how", ["topic", "queue"])
async def test_calls_made_at_once_are_sent_in_one_request(
    stack: RunningStack, how: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = _targets(stack)[how]
    reply = stack.queue_url(f"{stack.reply_prefix}laptop")
    async with Client(
        sqs_client_transport(target, endpoint_url=stack.endpoint_url, reply_queue_url=reply)
    ) as client:
        sent: Counter[str] = Counter()
        original = AioBaseClient._make_api_call

        async def counted(aws: Any, operation: str, params: Any) -> Any:
            if operation in SENDS and params.get("TopicArn", params.get("QueueUrl")) in (
                getattr(target, "topic_arn", None),
                getattr(target, "queue_url", None),
            ):
                sent[operation] += 1
            return await original(aws, operation, params)

        monkeypatch.setattr(AioBaseClient, "_make_api_call", counted)
        results: dict[int, str] = {}

        async def call(n: int) -> None:
            result = await client.call_tool("echo", {"text": f"call {n}"})
            results[n] = result.content[0].text  # type: ignore[union-attr]

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                for n in range(10):
                    tg.start_soon(call, n)

    assert results == {n: f"call {n}" for n in range(10)}
    batch = "PublishBatch" if how == "topic" else "SendMessageBatch"
    assert sent[batch] >= 1, sent
    assert sum(sent.values()) <= 5, sent  # far fewer requests than calls


async def test_a_request_that_cannot_be_sent_fails_alone(stack: RunningStack) -> None:
    reply = stack.queue_url(f"{stack.reply_prefix}laptop")
    transport = sqs_client_transport(
        _targets(stack)["topic"], endpoint_url=stack.endpoint_url, reply_queue_url=reply
    )
    async with Client(transport) as client:
        outcomes: dict[str, Any] = {}

        async def call(name: str, text: str) -> None:
            try:
                result = await client.call_tool("echo", {"text": text})
                outcomes[name] = result.content[0].text  # type: ignore[union-attr]
            except Exception as exc:
                outcomes[name] = exc

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(call, "small", "fits")
                tg.start_soon(call, "huge", "x" * MAX_MESSAGE_BYTES)
                tg.start_soon(call, "small too", "fits too")

    assert outcomes["small"] == "fits" and outcomes["small too"] == "fits too"
    assert "could not send the request" in str(outcomes["huge"])
