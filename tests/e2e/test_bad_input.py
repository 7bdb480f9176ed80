"""Bad input: every message gets an answer or lands in the DLQ with a reason; the worker goes on."""

from __future__ import annotations

import json

import pytest
from mcp import Client

from dmcp_aws.client import sqs_client_transport
from dmcp_aws.local.stack import RunningStack
from dmcp_aws.wire import Attr, to_sqs_attributes

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


async def _expect_dead_letter(
    sqs, stack: RunningStack, body: str, attributes: dict[str, str], reason: str
) -> str:  # type: ignore[no-untyped-def]
    requests, dlq = example_queues(stack)
    await send(sqs, requests, body, attributes)
    [(dead_body, dead_attributes)] = await receive_matching(sqs, dlq, attributes[Attr.CONN])
    assert dead_body == body, "the DLQ keeps the original body"
    assert dead_attributes[Attr.DLQ_REASON].startswith(reason), dead_attributes[Attr.DLQ_REASON]
    return dead_attributes[Attr.DLQ_REASON]


async def test_undecodable_body_goes_to_the_dlq(stack: RunningStack, sqs) -> None:  # type: ignore[no-untyped-def]
    reply = await make_reply_queue(sqs, stack)
    conn = new_conn()
    reason = await _expect_dead_letter(
        sqs, stack, "{not json", request_attributes(stack, reply, conn), "malformed-body"
    )
    assert "not UTF-8 JSON" in reason
    assert await receive_matching(sqs, reply, conn, timeout_s=2) == []


async def test_missing_reply_address_goes_to_the_dlq(stack: RunningStack, sqs) -> None:  # type: ignore[no-untyped-def]
    reason = await _expect_dead_letter(
        sqs, stack, tool_call(1), request_attributes(stack, None, new_conn()), "forbidden-reply-address"
    )
    assert "missing" in reason


@pytest.mark.parametrize(
    ("make_url", "why"),
    [
        (lambda url: url.rsplit("/", 1)[0] + "/some-other-queue", "not under the reply prefix"),
        (lambda url: url.replace("123456789012", "210987654321"), "not in account"),
        (lambda url: "https://sqs.us-east-1.amazonaws.com/123456789012/dmcp-reply-x", "not on the endpoint"),
        (lambda url: "not a url at all", "not an SQS queue URL"),
    ],
)
async def test_forbidden_reply_address_goes_to_the_dlq(stack: RunningStack, sqs, make_url, why) -> None:  # type: ignore[no-untyped-def]
    reply = await make_reply_queue(sqs, stack)
    attributes = request_attributes(stack, make_url(reply), new_conn())
    reason = await _expect_dead_letter(sqs, stack, tool_call(2), attributes, "forbidden-reply-address")
    assert why in reason


async def test_unknown_wire_version_goes_to_the_dlq(stack: RunningStack, sqs) -> None:  # type: ignore[no-untyped-def]
    reply = await make_reply_queue(sqs, stack)
    attributes = request_attributes(stack, reply, new_conn(), dmcp_version="99")
    await _expect_dead_letter(sqs, stack, tool_call(3), attributes, "unsupported-wire-version")


async def test_a_response_from_a_client_goes_to_the_dlq(stack: RunningStack, sqs) -> None:  # type: ignore[no-untyped-def]
    reply = await make_reply_queue(sqs, stack)
    body = json.dumps({"jsonrpc": "2.0", "id": 5, "result": {}})
    await _expect_dead_letter(sqs, stack, body, request_attributes(stack, reply, new_conn()), "wire-error")


async def test_invalid_jsonrpc_with_an_id_is_answered_with_that_id(stack: RunningStack, sqs) -> None:  # type: ignore[no-untyped-def]
    requests, _ = example_queues(stack)
    reply = await make_reply_queue(sqs, stack)
    conn = new_conn()
    await send(
        sqs,
        requests,
        json.dumps({"jsonrpc": "2.0", "id": "req-7", "params": 3}),
        request_attributes(stack, reply, conn),
    )
    [(body, attributes)] = await receive_matching(sqs, reply, conn)
    answer = json.loads(body)
    assert answer["id"] == "req-7"
    assert answer["error"]["code"] == -32600
    assert attributes[Attr.CONN] == conn and attributes[Attr.VERSION] == "1"


async def test_reply_queue_deleted_before_the_answer_goes_to_the_dlq(stack: RunningStack, sqs) -> None:  # type: ignore[no-untyped-def]
    reply = await make_reply_queue(sqs, stack)
    await sqs.delete_queue(QueueUrl=reply)
    reason = await _expect_dead_letter(
        sqs, stack, tool_call(9), request_attributes(stack, reply, new_conn()), "reply-undeliverable"
    )
    assert "NonExistentQueue" in reason or "QueueDoesNotExist" in reason


async def test_a_duplicated_request_runs_once(stack: RunningStack, sqs) -> None:  # type: ignore[no-untyped-def]
    requests, _ = example_queues(stack)
    reply = await make_reply_queue(sqs, stack)
    conn = new_conn()
    tickets: dict[int, set[int]] = {}

    async def collect(count: int, timeout_s: float = 20) -> None:
        for body, _ in await receive_matching(sqs, reply, conn, count=count, timeout_s=timeout_s):
            answer = json.loads(body)
            tickets.setdefault(answer["id"], set()).add(answer["result"]["structuredContent"]["result"])

    for request_id in (11, 11, 12):
        await send(
            sqs, requests, tool_call(request_id, tool="take_ticket"), request_attributes(stack, reply, conn)
        )
    await collect(2)
    await send(sqs, requests, tool_call(13, tool="take_ticket"), request_attributes(stack, reply, conn))
    await collect(1)
    await collect(3, timeout_s=2)  # a replayed answer for the duplicate of 11, if it came after the first
    assert {11, 12, 13} <= set(tickets)
    assert len(tickets[11]) == 1, "every answer to request 11 carries the ticket of its one execution"
    issued = sorted(tickets[11] | tickets[12] | tickets[13])
    assert issued == list(range(issued[0], issued[0] + 3)), f"three executions, not four: {issued}"


async def test_answers_a_live_client_did_not_ask_for_never_reach_it(stack: RunningStack, sqs) -> None:  # type: ignore[no-untyped-def]
    reply = await make_reply_queue(sqs, stack)
    transport = sqs_client_transport(
        stack.topic_target("example"), reply_queue_url=reply, **stack.client_options()
    )
    stray: list[object] = []

    async def on_message(message: object) -> None:
        stray.append(message)

    async with Client(transport, message_handler=on_message) as client:
        first = await client.call_tool("echo", {"text": "one"})
        assert first.content[0].text == "one"  # type: ignore[union-attr]
        for request_id in (0, 1, 2, 99):  # answers to finished requests, and to one never asked
            duplicate = json.dumps({"jsonrpc": "2.0", "id": request_id, "result": {"content": []}})
            attributes = {"dmcp.version": "1", "mcp.server": "example", "dmcp.conn": new_conn()}
            await send(sqs, reply, duplicate, attributes | {"dmcp.request-digest": "0" * 64})
        second = await client.call_tool("echo", {"text": "two"})
        assert second.content[0].text == "two"  # type: ignore[union-attr]
        third = await client.call_tool("echo", {"text": "three"})
        assert third.content[0].text == "three"  # type: ignore[union-attr]
    assert stray == []


async def test_oversize_request_and_oversize_result_are_clear_errors(stack: RunningStack) -> None:
    from mcp.shared.exceptions import MCPError

    async with Client(
        sqs_client_transport(stack.topic_target("example"), **stack.client_options())
    ) as client:
        with pytest.raises(
            MCPError, match=r"could not send the request: message is \d+ bytes; SQS/SNS accept at most"
        ):
            await client.call_tool("echo", {"text": "x" * 300_000})
        # 200 kB in, about 400 kB out (text content + structured result): too large to reply.
        with pytest.raises(MCPError, match="the result is too large to send"):
            await client.call_tool("echo", {"text": "y" * 200_000})
        assert (await client.call_tool("echo", {"text": "still fine"})).content[0].text == "still fine"  # type: ignore[union-attr]


async def test_worker_keeps_serving_after_bad_input(stack: RunningStack) -> None:
    async with Client(
        sqs_client_transport(stack.topic_target("example"), **stack.client_options())
    ) as client:
        result = await client.call_tool("add", {"a": 1, "b": 1})
    assert result.structured_content == {"a": 1.0, "b": 1.0, "sum": 2.0}


async def test_a_duplicate_of_a_request_in_progress_waits_for_the_holder_and_is_never_lost(
    stack: RunningStack,
    sqs,  # type: ignore[no-untyped-def]
) -> None:
    from dmcp_aws.idempotency import Claim, RequestLedger
    from dmcp_aws.wire import request_digest

    assert stack.topology.idempotency_table is not None
    ledger = RequestLedger(stack.topology.idempotency_table, function_name="example")
    requests, dlq = example_queues(stack)
    reply = await make_reply_queue(sqs, stack)
    conn = new_conn()
    body = tool_call(21, tool="take_ticket")
    claim = Claim.of(conn, reply, request_digest(body))
    assert await ledger.begin(claim, remaining_ms=3_000) is None  # "another worker" holds request 21

    await send(sqs, requests, body, request_attributes(stack, reply, conn))
    assert await receive_matching(sqs, reply, conn, timeout_s=2) == [], (
        "the holder answers, not the duplicate"
    )
    # The holder finishes: the deferred duplicate comes back after the claim and gets the stored
    # answer, which proves it was kept (hidden), not deleted.
    await ledger.complete(claim, {"jsonrpc": "2.0", "id": 21, "result": {"content": [], "held": True}})
    [(answer, _)] = await receive_matching(sqs, reply, conn, timeout_s=15)
    assert json.loads(answer)["result"]["held"] is True
    assert await receive_matching(sqs, dlq, conn, timeout_s=1) == [], "a duplicate is no poison message"


async def test_a_duplicate_whose_holder_died_is_served_once_the_claim_expires(
    stack: RunningStack, sqs
) -> None:  # type: ignore[no-untyped-def]
    from dmcp_aws.idempotency import Claim, RequestLedger
    from dmcp_aws.wire import request_digest

    assert stack.topology.idempotency_table is not None
    ledger = RequestLedger(stack.topology.idempotency_table, function_name="example")
    requests, _ = example_queues(stack)
    reply = await make_reply_queue(sqs, stack)
    conn = new_conn()
    body = tool_call(22, "survivor")
    assert await ledger.begin(Claim.of(conn, reply, request_digest(body)), remaining_ms=1_000) is None
    await send(sqs, requests, body, request_attributes(stack, reply, conn))  # the holder never answers
    [(answer, _)] = await receive_matching(sqs, reply, conn, timeout_s=15)
    assert json.loads(answer)["result"]["content"][0]["text"] == "survivor"


async def test_a_request_naming_no_server_is_answered_by_the_catch_all(stack: RunningStack, sqs) -> None:  # type: ignore[no-untyped-def]
    reply = await make_reply_queue(sqs, stack)
    conn = new_conn()
    attributes = request_attributes(stack, reply, conn, mcp_server=None)
    async with stack.session().client("sns", endpoint_url=stack.endpoint_url) as sns:
        await sns.publish(
            TopicArn=stack.topic_arn, Message=tool_call(31), MessageAttributes=to_sqs_attributes(attributes)
        )
    [(body, _)] = await receive_matching(sqs, reply, conn)
    answer = json.loads(body)
    assert answer["id"] == 31
    assert answer["error"]["code"] == -32601
    assert answer["error"]["message"] == "the request names no server (mcp.server)"


async def test_a_request_id_reused_for_something_else_is_a_new_request(stack: RunningStack, sqs) -> None:  # type: ignore[no-untyped-def]
    requests, _ = example_queues(stack)
    reply = await make_reply_queue(sqs, stack)
    conn = new_conn()
    await send(sqs, requests, tool_call(41, "first"), request_attributes(stack, reply, conn))
    [(first, _)] = await receive_matching(sqs, reply, conn)
    await send(sqs, requests, tool_call(41, "second"), request_attributes(stack, reply, conn))
    [(second, _)] = await receive_matching(sqs, reply, conn)
    assert json.loads(first)["result"]["content"][0]["text"] == "first"
    assert json.loads(second)["result"]["content"][0]["text"] == "second", "never another request's answer"
