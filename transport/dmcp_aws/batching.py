"""Messages that leave together: a batch call for several messages, each with its own outcome.

`send_chunk` sends one batch's worth (`chunks` cuts them) and tells each message's fate; the
client transport uses it for the requests its session queued together. `ReplyBatcher` decides
which of a worker's replies go together: one `SendMessageBatch` per reply queue for the messages
a batch's records send at about the same time.

    >>> replies = ReplyBatcher(sqs)
    >>> with replies.handling():            # around each record's handling
    ...     await replies.send(queue_url, {"MessageBody": body, "MessageAttributes": attributes})

A Lambda invocation handles up to ten records at once, and their answers are ready within a few
event-loop turns of each other. Sending each with its own `SendMessage` costs one request per
record; here a message waits until every record being handled is waiting to send too (then all
go at once), or until no other message has joined it for `linger_s` (a sibling busy with slow
work), and never longer than `max_linger_s`. So a lone record's answer leaves at once, and a
batch of answers to one client leaves as one request.

Records started together must all be counted before one of them sends: each enters `handling()`
and yields to the loop once before it works (the worker does).

`send` returns when SQS has accepted the message, and raises what `SendMessage` would have
raised for it alone: botocore's `ClientError` with the entry's own error code when SQS refused
just that entry, or the call's error when the whole request failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from botocore.exceptions import ClientError

from dmcp_aws.wire import MAX_MESSAGE_BYTES

MAX_ENTRIES: Final = 10
"""Entries SQS takes in one `SendMessageBatch`."""
DEFAULT_LINGER_S: Final = 0.002
"""How long messages wait for another to join them while a sibling record still works."""
DEFAULT_MAX_LINGER_S: Final = 0.01
"""The longest the first message of a batch waits."""


@dataclass
class _Pending:
    entry: Mapping[str, Any]
    sent: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


def entry_size(entry: Mapping[str, Any]) -> int:
    """The bytes SQS (or SNS) counts for a message: its body (`MessageBody`, or SNS's `Message`)
    and its attributes' names, types and values."""
    size = len(str(entry.get("MessageBody", entry.get("Message", ""))).encode())
    for name, attribute in (entry.get("MessageAttributes") or {}).items():
        value = attribute.get("StringValue") or attribute.get("BinaryValue") or b""
        value_bytes = value if isinstance(value, bytes) else str(value).encode()
        size += len(name.encode()) + len(str(attribute.get("DataType", "")).encode()) + len(value_bytes)
    return size


def chunks(entries: list[Mapping[str, Any]], max_bytes: int = MAX_MESSAGE_BYTES) -> Iterator[list[int]]:
    """Indexes of `entries` in order, cut into batches SQS accepts (≤ 10 entries, ≤ `max_bytes`
    in all; an entry larger than that alone still gets its own batch, for SQS to judge)."""
    batch: list[int] = []
    total = 0
    for index, entry in enumerate(entries):
        size = entry_size(entry)
        if batch and (len(batch) == MAX_ENTRIES or total + size > max_bytes):
            yield batch
            batch, total = [], 0
        batch.append(index)
        total += size
    if batch:
        yield batch


async def send_chunk(
    entries: Sequence[Mapping[str, Any]],
    send_one: Callable[..., Awaitable[Any]],
    send_batch: Callable[[list[dict[str, Any]]], Awaitable[Any]],
    operation: str,
) -> list[Exception | None]:
    """Send one batch's worth of messages: a lone one as `send_one(**entry)` (a plain `Publish` or
    `SendMessage`), more in one `send_batch(entries)` call (`operation`: its name) with an `Id`
    each. What went wrong with each message (None: sent): the call's error for all of them when
    the call failed, else `entry_error` for each entry the call refused."""
    if len(entries) == 1:
        try:
            await send_one(**entries[0])
        except Exception as exc:
            return [exc]
        return [None]
    try:
        response = await send_batch([{"Id": str(i), **entry} for i, entry in enumerate(entries)])
    except Exception as exc:
        return [exc] * len(entries)
    problems: list[Exception | None] = [None] * len(entries)
    for refusal in response.get("Failed", []):
        problems[int(refusal["Id"])] = entry_error(refusal, operation)
    return problems


class ReplyBatcher:
    """Gathers the messages one event loop's records send, per reply queue (see the module)."""

    def __init__(self, sqs: Any, linger_s: float | None = None, max_linger_s: float | None = None) -> None:
        self._sqs = sqs
        self._linger_s = DEFAULT_LINGER_S if linger_s is None else linger_s
        self._max_linger_s = max(
            self._linger_s, DEFAULT_MAX_LINGER_S if max_linger_s is None else max_linger_s
        )
        self._pending: dict[str, list[_Pending]] = {}
        self._handling = 0
        """Records being handled on this loop."""
        self._waiting = 0
        """Sends waiting to be flushed."""
        self._timer: asyncio.TimerHandle | None = None
        self._first_waiting_since = 0.0
        self._in_flight: set[asyncio.Task[None]] = set()

    @contextlib.contextmanager
    def handling(self) -> Iterator[None]:
        """Count a record as being handled while the block runs."""
        self._handling += 1
        try:
            yield
        finally:
            self._handling -= 1
            self._flush_if_all_wait()

    async def send(self, queue_url: str, entry: Mapping[str, Any]) -> None:
        """Send one message (`SendMessage`'s parameters but `QueueUrl`), maybe with others."""
        pending = _Pending(entry)
        self._pending.setdefault(queue_url, []).append(pending)
        self._waiting += 1
        try:
            self._flush_if_all_wait()
            await pending.sent
        except asyncio.CancelledError:
            waiting = self._pending.get(queue_url, [])
            if pending in waiting:  # not sent yet: it never will be
                waiting.remove(pending)
            raise
        finally:
            self._waiting -= 1

    def _flush_if_all_wait(self) -> None:
        if not self._pending:
            return
        if self._waiting >= self._handling:
            self._flush()
            return
        loop = asyncio.get_running_loop()
        if self._timer is None:
            self._first_waiting_since = loop.time()
        else:
            self._timer.cancel()
        flush_at = min(loop.time() + self._linger_s, self._first_waiting_since + self._max_linger_s)
        self._timer = loop.call_at(flush_at, self._flush)

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        pending, self._pending = self._pending, {}
        for queue_url, messages in pending.items():
            messages = [m for m in messages if not m.sent.done()]
            entries = [m.entry for m in messages]
            for batch in chunks(entries):
                task = asyncio.get_running_loop().create_task(
                    self._deliver(queue_url, [messages[i] for i in batch])
                )
                self._in_flight.add(task)
                task.add_done_callback(self._in_flight.discard)

    async def _deliver(self, queue_url: str, messages: list[_Pending]) -> None:
        async def send_batch(entries: list[dict[str, Any]]) -> Any:
            return await self._sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)

        send_one = functools.partial(self._sqs.send_message, QueueUrl=queue_url)
        try:
            problems = await send_chunk([m.entry for m in messages], send_one, send_batch, "SendMessageBatch")
        except BaseException as cancelled:  # the loop is going away: nobody gets an answer
            for message in messages:
                _settle(message, cancelled)
            raise
        for message, problem in zip(messages, problems, strict=True):
            _settle(message, problem)


def _settle(message: _Pending, problem: BaseException | None) -> None:
    if message.sent.done():
        return
    if problem is None:
        message.sent.set_result(None)
    elif isinstance(problem, asyncio.CancelledError):
        message.sent.cancel()
    else:
        message.sent.set_exception(problem)


def entry_error(refusal: Mapping[str, Any], operation: str) -> ClientError:
    """The error a single send would have raised for an entry a batch call (`operation`) refused
    (its `Failed` item: `Code`, `Message`, `SenderFault`)."""
    error = {"Code": refusal.get("Code", ""), "Message": refusal.get("Message", "")}
    if refusal.get("SenderFault"):
        error["Type"] = "Sender"
    return ClientError({"Error": error}, operation)
