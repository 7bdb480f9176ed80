"""The event source mapping emulation: partial batch failures and a worker dying mid-batch.

These run the real poller against real moto queues with short visibility timeouts; the Lambda
function is either the real example handler (wrapped to crash once) or a small handler that
reports chosen records as failed.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

import anyio
import pytest
from mcp import Client

from dmcp_aws.client import QueueTarget, sqs_client_transport
from dmcp_aws.local.poller import EventSourceMapping, MappingSettings
from dmcp_aws.local.stack import RunningStack, load_handler

pytestmark = pytest.mark.anyio


async def _queue_with_dlq(sqs: Any, visibility_s: int, max_receive_count: int = 5) -> tuple[str, str, str]:
    suffix = secrets.token_hex(4)
    dlq = (await sqs.create_queue(QueueName=f"redelivery-{suffix}-dlq"))["QueueUrl"]
    dlq_arn = (await sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"]))["Attributes"][
        "QueueArn"
    ]
    redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receive_count})
    url = (
        await sqs.create_queue(
            QueueName=f"redelivery-{suffix}-requests",
            Attributes={"VisibilityTimeout": str(visibility_s), "RedrivePolicy": redrive},
        )
    )["QueueUrl"]
    arn = (await sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"]))["Attributes"][
        "QueueArn"
    ]
    return url, arn, dlq


async def test_only_failed_records_are_redelivered(stack: RunningStack, sqs) -> None:  # type: ignore[no-untyped-def]
    url, arn, _ = await _queue_with_dlq(sqs, visibility_s=1)
    seen: list[tuple[str, str]] = []

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        failures = []
        for record in event["Records"]:
            seen.append((record["body"], record["attributes"]["ApproximateReceiveCount"]))
            assert record["eventSource"] == "aws:sqs" and record["eventSourceARN"] == arn
            assert record["messageAttributes"]["kind"] == {
                "stringValue": "test",
                "stringListValues": [],
                "binaryListValues": [],
                "dataType": "String",
            }
            if record["body"] == "fail once" and record["attributes"]["ApproximateReceiveCount"] == "1":
                failures.append({"itemIdentifier": record["messageId"]})
        return {"batchItemFailures": failures}

    for body in ("ok 1", "fail once", "ok 2"):
        await sqs.send_message(
            QueueUrl=url,
            MessageBody=body,
            MessageAttributes={"kind": {"DataType": "String", "StringValue": "test"}},
        )
    mapping = EventSourceMapping(
        sqs,
        handler,
        MappingSettings("partial", url, arn, batch_size=10, batching_window_s=1, max_concurrency=2),
        wait_time_seconds=1,
    )
    with anyio.move_on_after(30):
        async with anyio.create_task_group() as tg:
            await tg.start(mapping.run)
            while ("fail once", "2") not in seen:
                await anyio.sleep(0.1)
            await anyio.sleep(2)  # room for any wrong redelivery of the records that succeeded
            tg.cancel_scope.cancel()
    assert sorted(seen) == [("fail once", "1"), ("fail once", "2"), ("ok 1", "1"), ("ok 2", "1")]
    remaining = await sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )
    assert set(remaining["Attributes"].values()) == {"0"}


async def test_a_worker_dying_mid_batch_loses_no_request(stack: RunningStack, sqs) -> None:  # type: ignore[no-untyped-def]
    url, arn, _ = await _queue_with_dlq(sqs, visibility_s=2)
    real_handler = load_handler("functions.example.handler.handler")
    invocations: list[int] = []

    def crashes_the_first_time(event: dict[str, Any], context: Any) -> Any:
        invocations.append(len(event["Records"]))
        if len(invocations) == 1:
            raise RuntimeError("simulated crash: the execution environment died mid-batch")
        return real_handler(event, context)

    crashes_the_first_time.aclose = real_handler.aclose  # type: ignore[attr-defined]

    mapping = EventSourceMapping(
        sqs,
        crashes_the_first_time,
        MappingSettings("crashy", url, arn, max_concurrency=2),
        wait_time_seconds=1,
    )
    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            await tg.start(mapping.run)
            transport = sqs_client_transport(QueueTarget(url, "example"), **stack.client_options())
            async with Client(transport, mode="2026-07-28", read_timeout_seconds=30) as client:
                result = await client.call_tool("echo", {"text": "survived"})
            tg.cancel_scope.cancel()
    assert result.content[0].text == "survived"  # type: ignore[union-attr]
    assert len(invocations) >= 2, "the request was redelivered after the crash"


async def test_an_invocation_over_the_function_timeout_fails_its_batch(stack: RunningStack, sqs) -> None:  # type: ignore[no-untyped-def]
    import time

    url, arn, _ = await _queue_with_dlq(sqs, visibility_s=2)
    calls: list[str] = []

    def slow_the_first_time(event: dict[str, Any], context: Any) -> dict[str, Any]:
        calls.append(event["Records"][0]["attributes"]["ApproximateReceiveCount"])
        if len(calls) == 1:
            time.sleep(2.5)  # over the 1 s timeout: Lambda would stop it here
        return {"batchItemFailures": []}

    await sqs.send_message(QueueUrl=url, MessageBody="slow")
    mapping = EventSourceMapping(
        sqs,
        slow_the_first_time,
        MappingSettings("slow", url, arn, timeout_s=1, max_concurrency=2),
        wait_time_seconds=1,
    )
    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            await tg.start(mapping.run)
            while len(calls) < 2:
                await anyio.sleep(0.1)
            tg.cancel_scope.cancel()
    assert calls[:2] == ["1", "2"], "the timed-out batch was not deleted, so SQS delivered it again"
