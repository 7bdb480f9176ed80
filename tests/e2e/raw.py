"""Helpers for tests that put raw messages on the queues, bypassing the client transport."""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

from dmcp_aws.local.stack import RunningStack
from dmcp_aws.wire import Attr, from_sqs_attributes, to_sqs_attributes
from dmcp_aws.worker import conn_ref


def request_attributes(
    stack: RunningStack, reply_to: str | None, conn: str, **overrides: str | None
) -> dict[str, str]:
    attributes = {
        Attr.VERSION.value: "1",
        Attr.SERVER.value: "example",
        Attr.METHOD.value: "tools/call",
        Attr.CONN.value: conn,
    }
    if reply_to is not None:
        attributes[Attr.REPLY_TO.value] = reply_to
    for name, value in overrides.items():
        key = name.replace("_", "-").replace("dmcp-", "dmcp.").replace("mcp-", "mcp.")
        if value is None:
            attributes.pop(key, None)
        else:
            attributes[key] = value
    return attributes


EXAMPLE_TOOLS = frozenset(
    {"echo", "add", "divide", "take_ticket", "count_slowly", "sign_guestbook", "slow_report"}
)
"""The tools of the example server (`functions/example/server.py`)."""


def example_queues(stack: RunningStack) -> tuple[str, str]:
    """The example server's request queue and dead-letter queue URLs."""
    worker = stack.worker("example")
    return stack.queue_url(worker.request_queue), stack.queue_url(worker.dead_letter_queue)


def tool_call(request_id: int | str, text: str = "hi", *, tool: str = "echo") -> str:
    params = {
        "name": tool,
        "arguments": {"text": text} if tool == "echo" else {},
        "_meta": {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {},
        },
    }
    return json.dumps({"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params})


async def make_reply_queue(sqs: Any, stack: RunningStack) -> str:
    name = f"{stack.reply_prefix}test-{secrets.token_hex(6)}"
    return str((await sqs.create_queue(QueueName=name))["QueueUrl"])


async def send(sqs: Any, queue_url: str, body: str, attributes: dict[str, str]) -> None:
    await sqs.send_message(
        QueueUrl=queue_url, MessageBody=body, MessageAttributes=to_sqs_attributes(attributes)
    )


async def receive_matching(
    sqs: Any, queue_url: str, conn: str, *, count: int = 1, timeout_s: float = 20
) -> list[tuple[str, dict[str, str]]]:
    """Wait for `count` messages whose `dmcp.conn` is `conn` (or, in a dead-letter queue, whose
    reason names its reference); delete and return them."""
    reference = f"(conn ref {conn_ref(conn)})"
    found: list[tuple[str, dict[str, str]]] = []
    deadline = time.monotonic() + timeout_s
    while len(found) < count and time.monotonic() < deadline:
        response = await sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=1,
            MessageAttributeNames=["All"],
            VisibilityTimeout=0,
        )
        for message in response.get("Messages", []):
            attributes = from_sqs_attributes(message.get("MessageAttributes"))
            if attributes.get(Attr.CONN) == conn or reference in attributes.get(Attr.DLQ_REASON, ""):
                found.append((message["Body"], attributes))
                await sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    return found


def new_conn() -> str:
    return secrets.token_hex(8)
