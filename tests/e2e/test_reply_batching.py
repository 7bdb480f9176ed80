"""Replies of one invocation's records leave together: one SendMessageBatch per reply queue.

The real example handler serves a real queue through the event source mapping emulation; the
worker's SQS calls are counted by wrapping botocore (the worker's clients are boto3 ones, see
`dmcp_aws.threaded_aws`), and every request must still get its own answer. The linger is
made long, so replies leave only when all of an invocation's records wait to send (how long a
reply waits for a busy sibling is timing, tested in tests/unit/test_reply_batch.py).
"""

from __future__ import annotations

import json
import math
import secrets
from collections import Counter
from typing import Any

import anyio
import pytest
from botocore.client import BaseClient

from dmcp_aws import batching
from dmcp_aws.batching import MAX_ENTRIES
from dmcp_aws.local.poller import EventSourceMapping, MappingSettings
from dmcp_aws.local.stack import RunningStack, load_handler
from dmcp_aws.wire import Attr
from tests.e2e.raw import make_reply_queue, new_conn, receive_matching, request_attributes, send, tool_call

pytestmark = pytest.mark.anyio


async def _request_queue(sqs: Any) -> tuple[str, str]:
    suffix = secrets.token_hex(4)
    dlq = (await sqs.create_queue(QueueName=f"batching-{suffix}-dlq"))["QueueUrl"]
    dlq_arn = (await sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"]))["Attributes"][
        "QueueArn"
    ]
    redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 5})
    url = (
        await sqs.create_queue(
            QueueName=f"batching-{suffix}-requests",
            Attributes={"VisibilityTimeout": "30", "RedrivePolicy": redrive},
        )
    )["QueueUrl"]
    arn = (await sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"]))["Attributes"][
        "QueueArn"
    ]
    return url, arn


async def test_one_invocations_replies_to_a_queue_leave_in_one_request(
    stack: RunningStack,
    sqs,  # type: ignore[no-untyped-def]
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url, arn = await _request_queue(sqs)
    busy_queue, quiet_queue = await make_reply_queue(sqs, stack), await make_reply_queue(sqs, stack)
    conn = new_conn()
    wanted = {busy_queue: 12, quiet_queue: 1}
    for reply_queue, count in wanted.items():
        for n in range(count):
            body = tool_call(f"{reply_queue[-6:]}-{n}", text=f"text {n}")
            await send(sqs, url, body, request_attributes(stack, reply_queue, conn))

    sends: Counter[tuple[str, str]] = Counter()
    original = BaseClient._make_api_call

    def counted(self: Any, operation: str, params: dict[str, Any]) -> Any:
        if operation in ("SendMessage", "SendMessageBatch") and params.get("QueueUrl") in wanted:
            sends[(operation, params["QueueUrl"])] += 1
        return original(self, operation, params)

    monkeypatch.setattr(BaseClient, "_make_api_call", counted)
    monkeypatch.setattr(batching, "DEFAULT_LINGER_S", 5.0)
    monkeypatch.setattr(batching, "DEFAULT_MAX_LINGER_S", 5.0)
    example = load_handler(stack.worker("example").handler)
    expected_requests = 0
    invocations: list[Counter[str]] = []

    def handler(event: dict[str, Any], context: Any) -> Any:
        nonlocal expected_requests
        per_queue = Counter(
            r["messageAttributes"][Attr.REPLY_TO.value]["stringValue"] for r in event["Records"]
        )
        invocations.append(per_queue)
        expected_requests += sum(math.ceil(n / MAX_ENTRIES) for n in per_queue.values())
        return example(event, context)

    settings = MappingSettings("batching", url, arn, batch_size=10, batching_window_s=1, max_concurrency=2)
    mapping = EventSourceMapping(sqs, handler, settings, wait_time_seconds=1)
    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            await tg.start(mapping.run)
            answers = {
                q: await receive_matching(sqs, q, conn, count=n, timeout_s=40) for q, n in wanted.items()
            }
            tg.cancel_scope.cancel()

    for reply_queue, count in wanted.items():
        results = sorted(json.loads(body)["result"]["content"][0]["text"] for body, _ in answers[reply_queue])
        assert results == sorted(f"text {n}" for n in range(count))
    assert max(per_queue[busy_queue] for per_queue in invocations) > 1, "no invocation had two records"
    assert sum(sends.values()) == expected_requests
    assert sends[("SendMessage", quiet_queue)] == 1  # a lone reply: a plain SendMessage
    assert sends[("SendMessageBatch", busy_queue)] >= 1
