"""The ledger where it is needed, and only there (issue 12): a call of a tool annotated
read-only (or idempotent) skips the request ledger; a tool with side effects keeps it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from dmcp_aws.local.stack import RunningStack

from .raw import (
    example_queues,
    make_reply_queue,
    new_conn,
    receive_matching,
    request_attributes,
    send,
    tool_call,
)

pytestmark = pytest.mark.anyio


async def ledger_records(stack: RunningStack) -> int:
    """How many request-ledger records the example server has (powertools keys `dmcp#example#…`)."""
    table = stack.topology.idempotency_table
    assert table is not None
    async with stack.session().client("dynamodb", endpoint_url=stack.endpoint_url) as dynamodb:
        found = 0
        async for page in dynamodb.get_paginator("scan").paginate(TableName=table, ProjectionExpression="id"):
            found += sum(1 for item in page["Items"] if item["id"]["S"].startswith("dmcp#example#"))
        return found


async def test_read_only_calls_skip_the_ledger_and_side_effects_keep_it(
    stack: RunningStack, sqs: Any
) -> None:
    requests, _ = example_queues(stack)
    reply = await make_reply_queue(sqs, stack)
    conn = new_conn()
    before = await ledger_records(stack)
    # The same read-only call delivered twice runs twice: no ledger write, the same answer.
    for _ in range(2):
        await send(sqs, requests, tool_call(1, "twice"), request_attributes(stack, reply, conn))
    answers = await receive_matching(sqs, reply, conn, count=2)
    assert [json.loads(body)["result"]["content"][0]["text"] for body, _ in answers] == ["twice", "twice"]
    assert await ledger_records(stack) == before
    # A tool with a side effect (take_ticket) still goes through the ledger: a duplicate is replayed.
    tickets = []
    for _ in range(2):  # the duplicate after the first is answered (else it waits for the claim)
        await send(sqs, requests, tool_call(2, tool="take_ticket"), request_attributes(stack, reply, conn))
        tickets += [json.loads(body)["result"] for body, _ in await receive_matching(sqs, reply, conn)]
    assert len(tickets) == 2 and tickets[0] == tickets[1]
    assert await ledger_records(stack) == before + 1
