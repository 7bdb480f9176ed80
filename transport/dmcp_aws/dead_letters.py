"""Dead letters: look at a dead-letter queue without consuming it, and send its messages back.

    >>> letters = await peek_dead_letters(sqs, dlq_url)          # each with its `dmcp.dlq-reason`
    >>> moved = await redrive_dead_letters(sqs, dlq_url, request_queue_url)

Peeking receives the messages (hidden for a moment so that each is seen once) and makes them
visible again at once; only their receive count grows. Redriving uses SQS's own message move
task (`StartMessageMoveTask`) into the server's request queue. Where the endpoint has none (moto
has none) it falls back to moving each message by receive, send, delete: at least once (a
failure between send and delete leaves a copy in both queues), message attributes kept, except the
dead-letter reason. Either way what is moved is what the queue held when the redrive began: a
request that fails again and comes back meanwhile is not moved round and round.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, Final

import anyio

from dmcp_aws.wire import Attr

_PEEK_HIDE_S: Final = 30
"""How long peeked messages are hidden while the rest are read (then released at once)."""
_UNSUPPORTED: Final = frozenset(
    {
        "UnsupportedOperation",
        "AWS.SimpleQueueService.UnsupportedOperation",
        "InvalidAction",
        "NotImplemented",
        "InternalFailure",
        "InternalError",
        "500",
        "501",
    }
)
"""Error codes of an endpoint without message move tasks (moto answers HTTP 500)."""


@dataclass(frozen=True)
class DeadLetter:
    """One message of a dead-letter queue, as `dmcp dlq` shows it."""

    message_id: str
    summary: str
    """What the body is: a JSON-RPC message's method, target and id, or the start of the text."""
    reason: str | None
    """`dmcp.dlq-reason`: why a worker moved it (None: SQS moved it after too many receives, or SNS
    could not deliver it)."""
    receive_count: int
    age_s: float
    attributes: dict[str, str]

    @classmethod
    def from_message(cls, message: dict[str, Any], now: float | None = None) -> DeadLetter:
        system = message.get("Attributes", {})
        attributes = {
            name: str(value.get("StringValue", ""))
            for name, value in (message.get("MessageAttributes") or {}).items()
            if "StringValue" in value
        }
        sent_ms = int(system.get("SentTimestamp", 0) or 0)
        now = time.time() if now is None else now
        return cls(
            message_id=str(message.get("MessageId", "")),
            summary=summarize_body(str(message.get("Body", ""))),
            reason=attributes.get(Attr.DLQ_REASON.value),
            receive_count=int(system.get("ApproximateReceiveCount", 0) or 0),
            age_s=max(0.0, now - sent_ms / 1000) if sent_ms else 0.0,
            attributes=attributes,
        )


def summarize_body(body: str, width: int = 70) -> str:
    """A one-line description of a message body (a JSON-RPC message, an SNS envelope, or text)."""
    try:
        parsed = json.loads(body)
    except (json.JSONDecodeError, RecursionError):
        parsed = None
    if (
        isinstance(parsed, dict)
        and parsed.get("Type") == "Notification"
        and isinstance(parsed.get("Message"), str)
    ):
        return f"SNS notification: {summarize_body(parsed['Message'], width)}"
    if isinstance(parsed, dict) and ("method" in parsed or "id" in parsed):
        params = parsed.get("params")
        target = (params.get("name") or params.get("uri")) if isinstance(params, dict) else None
        parts = [str(parsed.get("method", "response"))]
        if isinstance(target, str):
            parts.append(target)
        if "id" in parsed:
            parts.append(f"(id {json.dumps(parsed['id'])})")
        return " ".join(parts)[:width]
    text = " ".join(body.split())
    if not text:
        return "(empty body)"
    return text if len(text) <= width else text[: width - 1] + "…"


async def peek_dead_letters(sqs: Any, queue_url: str, *, limit: int = 100) -> list[DeadLetter]:
    """Up to `limit` messages of a dead-letter queue, each once; all visible again on return."""
    seen: dict[str, DeadLetter] = {}
    handles: list[str] = []
    try:
        while len(seen) < limit:
            response = await sqs.receive_message(
                QueueUrl=queue_url,
                MaxNumberOfMessages=min(10, limit - len(seen)),
                VisibilityTimeout=_PEEK_HIDE_S,
                WaitTimeSeconds=1,
                AttributeNames=["All"],
                MessageAttributeNames=["All"],
            )
            messages = response.get("Messages", [])
            if not messages:
                break
            for message in messages:
                handles.append(message["ReceiptHandle"])
                seen.setdefault(message["MessageId"], DeadLetter.from_message(message))
    finally:
        with anyio.CancelScope(shield=True):
            await _release(sqs, queue_url, handles)
    return list(seen.values())


async def _release(sqs: Any, queue_url: str, handles: list[str]) -> None:
    """Make received messages visible again at once."""
    for start in range(0, len(handles), 10):
        entries = [
            {"Id": str(i), "ReceiptHandle": handle, "VisibilityTimeout": 0}
            for i, handle in enumerate(handles[start : start + 10])
        ]
        await sqs.change_message_visibility_batch(QueueUrl=queue_url, Entries=entries)


@dataclass(frozen=True)
class Redrive:
    """What `redrive_dead_letters` did."""

    method: str
    """`move-task` (SQS moves them in the background) or `copy` (moved here, one by one)."""
    moved: int
    """Messages moved (`copy`), or in the queue when the move task started (`move-task`)."""
    task_handle: str | None = None


async def redrive_dead_letters(
    sqs: Any, dead_letter_url: str, destination_url: str, *, use_move_task: bool = True
) -> Redrive:
    """Send every message of a dead-letter queue back to `destination_url` (the request queue)."""
    if use_move_task:
        arns = [await _queue_arn(sqs, url) for url in (dead_letter_url, destination_url)]
        try:
            depth = await _depth(sqs, dead_letter_url)
            task = await sqs.start_message_move_task(SourceArn=arns[0], DestinationArn=arns[1])
            return Redrive("move-task", depth, str(task.get("TaskHandle", "")) or None)
        except Exception as exc:
            if not _unsupported(exc):
                raise
    depth = await _depth(sqs, dead_letter_url)
    return Redrive("copy", await _move_by_copy(sqs, dead_letter_url, destination_url, depth))


async def _move_by_copy(sqs: Any, source_url: str, destination_url: str, limit: int) -> int:
    """Move the messages sent to `source_url` before now, at most `limit` of them. A request that
    fails again comes back to the dead-letter queue meanwhile: it is left there, not moved round
    and round."""
    began_ms = int(time.time() * 1000)
    moved = 0
    while moved < limit:
        response = await sqs.receive_message(
            QueueUrl=source_url,
            MaxNumberOfMessages=10,
            VisibilityTimeout=60,
            WaitTimeSeconds=1,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        messages = response.get("Messages", [])
        earlier = [m for m in messages if int(m.get("Attributes", {}).get("SentTimestamp", 0)) <= began_ms]
        later = [m["ReceiptHandle"] for m in messages if m not in earlier]
        earlier, spare = earlier[: limit - moved], earlier[limit - moved :]
        await _release(sqs, source_url, later + [m["ReceiptHandle"] for m in spare])
        if not earlier:
            return moved
        for message in earlier:
            attributes = {
                name: {k: v for k, v in value.items() if k in ("DataType", "StringValue", "BinaryValue")}
                for name, value in (message.get("MessageAttributes") or {}).items()
                if name != Attr.DLQ_REASON.value
            }
            await sqs.send_message(
                QueueUrl=destination_url, MessageBody=message["Body"], MessageAttributes=attributes
            )
            await sqs.delete_message(QueueUrl=source_url, ReceiptHandle=message["ReceiptHandle"])
            moved += 1
    return moved


async def _queue_arn(sqs: Any, url: str) -> str:
    found = await sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    return str(found["Attributes"]["QueueArn"])


async def _depth(sqs: Any, url: str) -> int:
    found = await sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
    return int(found["Attributes"].get("ApproximateNumberOfMessages", 0))


def _unsupported(exc: Exception) -> bool:
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return False
    code = str(response.get("Error", {}).get("Code", ""))
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return code in _UNSUPPORTED or status in (500, 501)
