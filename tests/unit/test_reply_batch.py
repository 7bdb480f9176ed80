"""How replies leave together (`dmcp_aws.batching`): the coordination, against a recording SQS
stand-in; the real SQS semantics are exercised end to end (tests/e2e/test_reply_batching.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from botocore.exceptions import ClientError

from dmcp_aws.batching import MAX_ENTRIES, ReplyBatcher, chunks, entry_size
from dmcp_aws.wire import MAX_MESSAGE_BYTES


class RecordingSqs:
    """Records each call; refuses the entries whose body is "refuse" (as SQS does per entry)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    async def send_message(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(("send_message", kwargs))
        if kwargs["MessageBody"] == "refuse":
            raise ClientError({"Error": {"Code": "InvalidMessageContents"}}, "SendMessage")
        return {"MessageId": "m"}

    async def send_message_batch(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(("send_message_batch", kwargs))
        if kwargs["QueueUrl"] == "gone":
            raise ClientError({"Error": {"Code": "QueueDoesNotExist"}}, "SendMessageBatch")
        failed = [
            {"Id": e["Id"], "Code": "InvalidMessageContents", "SenderFault": True, "Message": "no"}
            for e in kwargs["Entries"]
            if e["MessageBody"] == "refuse"
        ]
        ok = [{"Id": e["Id"]} for e in kwargs["Entries"] if e["MessageBody"] != "refuse"]
        return {"Successful": ok, "Failed": failed}


def message(body: str) -> dict[str, Any]:
    return {"MessageBody": body, "MessageAttributes": {"a": {"DataType": "String", "StringValue": "v"}}}


async def records_reply(replies: ReplyBatcher, queue: str, bodies: list[str]) -> list[BaseException | None]:
    """Each body is one record's reply, sent after a little work of its own."""

    async def one(body: str) -> None:
        with replies.handling():
            await asyncio.sleep(0)
            await replies.send(queue, message(body))

    results = await asyncio.gather(*(one(b) for b in bodies), return_exceptions=True)
    return [r if isinstance(r, BaseException) else None for r in results]


def test_a_lone_reply_leaves_at_once_as_one_send_message() -> None:
    async def scenario() -> list[tuple[str, dict[str, Any]]]:
        sqs = RecordingSqs()
        replies = ReplyBatcher(sqs, linger_s=10)  # a linger would show as a hang
        await asyncio.wait_for(records_reply(replies, "q", ["one"]), 1)
        return sqs.calls

    calls = asyncio.run(scenario())
    assert [name for name, _ in calls] == ["send_message"]
    assert calls[0][1]["QueueUrl"] == "q"
    assert calls[0][1]["MessageBody"] == "one"


def test_a_batch_of_records_answering_one_queue_sends_once_per_ten() -> None:
    async def scenario() -> list[tuple[str, dict[str, Any]]]:
        sqs = RecordingSqs()
        replies = ReplyBatcher(sqs, linger_s=10)
        outcomes = await asyncio.wait_for(records_reply(replies, "q", [str(i) for i in range(13)]), 1)
        assert outcomes == [None] * 13
        return sqs.calls

    calls = asyncio.run(scenario())
    assert [name for name, _ in calls] == ["send_message_batch", "send_message_batch"]
    bodies = [[e["MessageBody"] for e in kwargs["Entries"]] for _, kwargs in calls]
    assert bodies == [[str(i) for i in range(MAX_ENTRIES)], ["10", "11", "12"]]  # in order


def test_replies_to_different_queues_go_in_separate_requests() -> None:
    async def scenario() -> list[tuple[str, dict[str, Any]]]:
        sqs = RecordingSqs()
        replies = ReplyBatcher(sqs, linger_s=10)

        async def one(queue: str, body: str) -> None:
            with replies.handling():
                await asyncio.sleep(0)
                await replies.send(queue, message(body))

        await asyncio.wait_for(asyncio.gather(one("a", "1"), one("b", "2"), one("a", "3")), 1)
        return sqs.calls

    calls = asyncio.run(scenario())
    by_queue = {kwargs["QueueUrl"]: (name, kwargs) for name, kwargs in calls}
    assert by_queue["a"][0] == "send_message_batch"
    assert [e["MessageBody"] for e in by_queue["a"][1]["Entries"]] == ["1", "3"]
    assert by_queue["b"][0] == "send_message"


def test_a_reply_waits_at_most_the_linger_for_a_record_still_working() -> None:
    async def scenario() -> tuple[float, list[str]]:
        sqs = RecordingSqs()
        replies = ReplyBatcher(sqs, linger_s=0.05)
        sent_at: list[float] = []
        slow_done = asyncio.Event()

        async def slow() -> None:
            with replies.handling():
                await slow_done.wait()

        async def quick() -> None:
            with replies.handling():
                started = asyncio.get_running_loop().time()
                await replies.send("q", message("quick"))
                sent_at.append(asyncio.get_running_loop().time() - started)
                slow_done.set()

        await asyncio.wait_for(asyncio.gather(slow(), quick()), 2)
        return sent_at[0], [name for name, _ in sqs.calls]

    waited, names = asyncio.run(scenario())
    assert 0.04 <= waited < 1
    assert names == ["send_message"]


def test_each_entry_gets_its_own_outcome() -> None:
    async def scenario() -> list[BaseException | None]:
        replies = ReplyBatcher(RecordingSqs(), linger_s=10)
        return await asyncio.wait_for(records_reply(replies, "q", ["fine", "refuse", "fine too"]), 1)

    fine, refused, fine_too = asyncio.run(scenario())
    assert fine is None and fine_too is None
    assert isinstance(refused, ClientError)
    assert refused.response["Error"]["Code"] == "InvalidMessageContents"


def test_a_failed_request_fails_every_entry_with_its_error() -> None:
    async def scenario() -> list[BaseException | None]:
        replies = ReplyBatcher(RecordingSqs(), linger_s=10)
        return await asyncio.wait_for(records_reply(replies, "gone", ["1", "2"]), 1)

    results = asyncio.run(scenario())
    assert all(isinstance(r, ClientError) for r in results)
    codes = {r.response["Error"]["Code"] for r in results if isinstance(r, ClientError)}
    assert codes == {"QueueDoesNotExist"}


def test_a_cancelled_send_that_has_not_left_is_never_sent() -> None:
    async def scenario() -> list[tuple[str, dict[str, Any]]]:
        sqs = RecordingSqs()
        replies = ReplyBatcher(sqs, linger_s=0.05)
        hold = asyncio.Event()

        async def working() -> None:
            with replies.handling():
                await hold.wait()

        async def cancelled() -> None:
            with replies.handling():
                await replies.send("q", message("never"))

        worker = asyncio.ensure_future(working())
        doomed = asyncio.ensure_future(cancelled())
        await asyncio.sleep(0)
        doomed.cancel()
        with pytest.raises(asyncio.CancelledError):
            await doomed
        await asyncio.sleep(0.1)
        hold.set()
        await worker
        return sqs.calls

    assert asyncio.run(scenario()) == []


def test_batches_respect_the_size_limit_and_keep_order() -> None:
    big = {"MessageBody": "x" * (MAX_MESSAGE_BYTES // 2 + 10)}
    small = {"MessageBody": "y"}
    entries = [big, small, big, big, small]
    cut = list(chunks(entries))
    assert [i for batch in cut for i in batch] == list(range(5))
    for batch in cut:
        assert sum(entry_size(entries[i]) for i in batch) <= MAX_MESSAGE_BYTES
    assert cut == [[0, 1], [2], [3, 4]]


def test_an_entry_size_counts_attribute_names_types_and_values() -> None:
    entry = {
        "MessageBody": "héllo",
        "MessageAttributes": {
            "name": {"DataType": "String", "StringValue": "v"},
            "bin": {"DataType": "Binary", "BinaryValue": b"\x00\x01"},
        },
    }
    assert entry_size(entry) == 6 + (4 + 6 + 1) + (3 + 6 + 2)
