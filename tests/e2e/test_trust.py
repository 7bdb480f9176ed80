"""Trust between clients and no silent loss (issue 7): each test is an attack or a failure that
the kit used to let through, run against the embedded stack with real clients and workers."""

from __future__ import annotations

import json
import secrets
import signal
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

from dmcp_aws.client import sqs_client_transport
from dmcp_aws.deployment import Deployment
from dmcp_aws.local.stack import RunningStack
from dmcp_aws.wire import Attr, from_sqs_attributes, request_digest, to_sqs_attributes

from .raw import (
    example_queues,
    make_reply_queue,
    new_conn,
    receive_matching,
    request_attributes,
    send,
    tool_call,
)
from .second_deployment import provision_deployment, start_worker

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parents[2]


def _client(stack: RunningStack, **options: Any) -> Client:
    transport = sqs_client_transport(stack.topic_target("example"), **(stack.client_options() | options))
    return Client(transport, read_timeout_seconds=60)


async def _own_queue(sqs: Any, stack: RunningStack, before: set[str]) -> str:
    """The per-connection queue a client just created (the only new one under its prefix)."""
    listed = await sqs.list_queues(QueueNamePrefix=stack.client_connection_prefix())
    [url] = set(listed.get("QueueUrls", [])) - before
    return str(url)


async def _listed(sqs: Any, stack: RunningStack) -> set[str]:
    return set((await sqs.list_queues(QueueNamePrefix=stack.client_connection_prefix())).get("QueueUrls", []))


async def test_a_client_that_sees_every_request_still_cannot_forge_answers_into_another(
    stack: RunningStack,
    sqs,  # type: ignore[no-untyped-def]
) -> None:
    """The strongest attacker: it reads every request on the topic (clients cannot, by IAM), so it
    knows the victim's connection id, reply queue and request ids, and races forged requests."""
    spy = (await sqs.create_queue(QueueName=f"spy-{secrets.token_hex(4)}"))["QueueUrl"]
    spy_arn = (await sqs.get_queue_attributes(QueueUrl=spy, AttributeNames=["QueueArn"]))["Attributes"][
        "QueueArn"
    ]
    requests = stack.queue_url(stack.worker("example").request_queue)
    forged = 0
    async with stack.session().client("sns", endpoint_url=stack.endpoint_url) as sns:
        subscription = (
            await sns.subscribe(
                TopicArn=stack.topic_arn,
                Protocol="sqs",
                Endpoint=spy_arn,
                Attributes={"RawMessageDelivery": "true"},
                ReturnSubscriptionArn=True,
            )
        )["SubscriptionArn"]

        async def attack() -> None:
            nonlocal forged
            while True:
                got = await sqs.receive_message(
                    QueueUrl=spy, MaxNumberOfMessages=10, WaitTimeSeconds=1, MessageAttributeNames=["All"]
                )
                for message in got.get("Messages", []):
                    seen = from_sqs_attributes(message["MessageAttributes"])
                    request = json.loads(message["Body"])
                    if "id" not in request:
                        continue
                    for offset in (0, 1, 2):  # this id, and the victim's next ones
                        lie = tool_call(
                            request["id"] + offset if isinstance(request["id"], int) else 0, "FORGED"
                        )
                        await send(sqs, requests, lie, dict(seen))
                        forged += 1

        try:
            async with _client(stack) as victim, anyio.create_task_group() as tg:
                tg.start_soon(attack)
                answers: dict[int, str] = {}

                async def call(i: int) -> None:
                    result = await victim.call_tool("echo", {"text": f"victim-{i}"})
                    answers[i] = result.content[0].text  # type: ignore[union-attr]

                async with anyio.create_task_group() as calls:
                    for i in range(20):
                        calls.start_soon(call, i)
                        await anyio.sleep(0.05)
                tg.cancel_scope.cancel()
        finally:
            await sns.unsubscribe(SubscriptionArn=subscription)
            await sqs.delete_queue(QueueUrl=spy)
    assert forged >= 20, "the attack ran"
    assert answers == {i: f"victim-{i}" for i in range(20)}, "every call got its own answer, none forged"


async def test_a_flood_of_junk_replies_does_not_starve_a_connection(stack: RunningStack, sqs) -> None:  # type: ignore[no-untyped-def]
    before = await _listed(sqs, stack)
    async with _client(stack, request_timeout=30) as client:
        queue = await _own_queue(sqs, stack, before)
        junk = []
        for i in range(300):
            attributes = {"dmcp.version": "1", "mcp.server": "example", "dmcp.conn": new_conn()}
            if i % 3:
                attributes["dmcp.request-digest"] = request_digest(str(i))
            body = (
                json.dumps({"jsonrpc": "2.0", "id": i % 12, "result": {"content": []}}) if i % 5 else "junk"
            )
            junk.append(
                {"Id": str(i % 10), "MessageBody": body, "MessageAttributes": to_sqs_attributes(attributes)}
            )
            if len(junk) == 10:
                await sqs.send_message_batch(QueueUrl=queue, Entries=junk)
                junk = []
        with anyio.fail_after(30):
            for i in range(10):
                result = await client.call_tool("echo", {"text": f"through-{i}"})
                assert result.content[0].text == f"through-{i}"  # type: ignore[union-attr]


async def test_a_flood_on_a_shared_provisioned_queue_backs_off_and_is_cleared(
    stack: RunningStack, sqs
) -> None:  # type: ignore[no-untyped-def]
    reply = await make_reply_queue(sqs, stack)
    for batch in range(30):
        entries = [
            {
                "Id": str(i),
                "MessageBody": json.dumps({"jsonrpc": "2.0", "id": i, "result": {}}),
                "MessageAttributes": to_sqs_attributes(
                    {"dmcp.version": "1", "dmcp.conn": new_conn(), "dmcp.request-digest": "0" * 64}
                ),
            }
            for i in range(10)
        ]
        await sqs.send_message_batch(QueueUrl=reply, Entries=entries)
        del batch
    # moto hands out a standard queue's messages oldest first, so the first pass over the flood
    # is slow here (about 15 s on a 2-core machine); real SQS samples its servers.
    async with _client(stack, reply_queue_url=reply, request_timeout=60) as client:
        with anyio.fail_after(60):
            for i in range(10):
                assert (await client.call_tool("echo", {"text": f"s{i}"})).content[0].text == f"s{i}"  # type: ignore[union-attr]


async def test_a_server_array_gets_exactly_one_answer(stack: RunningStack, sqs) -> None:  # type: ignore[no-untyped-def]
    async with stack.session().client("sns", endpoint_url=stack.endpoint_url) as sns:
        for names in (["example", "nope"], ["example"]):
            reply = await make_reply_queue(sqs, stack)
            conn = new_conn()
            attributes = to_sqs_attributes(request_attributes(stack, reply, conn, mcp_server=None))
            attributes[Attr.SERVER.value] = {"DataType": "String.Array", "StringValue": json.dumps(names)}
            await sns.publish(TopicArn=stack.topic_arn, Message=tool_call(51), MessageAttributes=attributes)
            answers = await receive_matching(sqs, reply, conn, count=2, timeout_s=6)
            assert len(answers) == 1, (names, answers)
            error = json.loads(answers[0][0])["error"]
            assert error["code"] == -32600 and "one server" in error["message"]


@pytest.mark.parametrize("bad_id", ["1.5", "true", "null", '{"a": 1}', "[1]"])
async def test_a_request_with_an_id_of_the_wrong_type_is_dead_lettered_with_a_reason(
    stack: RunningStack,
    sqs,  # type: ignore[no-untyped-def]
    bad_id: str,
) -> None:
    requests, dlq = example_queues(stack)
    reply = await make_reply_queue(sqs, stack)
    conn = new_conn()
    body = tool_call(1).replace('"id": 1', f'"id": {bad_id}')
    await send(sqs, requests, body, request_attributes(stack, reply, conn))
    [(dead, attributes)] = await receive_matching(sqs, dlq, conn)
    assert dead == body
    assert attributes[Attr.DLQ_REASON].startswith(
        "malformed-body: the JSON-RPC id must be a string or an integer"
    )
    assert Attr.CONN.value not in attributes, "the connection's secret does not go to the DLQ"


async def test_an_answer_that_cannot_be_encoded_is_an_error_the_first_time(stack: RunningStack, sqs) -> None:  # type: ignore[no-untyped-def]
    requests = stack.queue_url(stack.worker("example").request_queue)
    reply = await make_reply_queue(sqs, stack)
    conn = new_conn()
    await send(
        sqs,
        requests,
        tool_call(61, "SURROGATE").replace("SURROGATE", "\\ud800"),
        request_attributes(stack, reply, conn),
    )
    [(body, _)] = await receive_matching(sqs, reply, conn)
    error = json.loads(body)["error"]
    assert json.loads(body)["id"] == 61 and "not encodable" in error["message"]
    assert await receive_matching(sqs, reply, conn, timeout_s=2) == [], "answered once, not retried"


@pytest.mark.parametrize("request_id", ["x" * 300_000, "\\udc00"])
async def test_a_request_no_reply_can_carry_is_dead_lettered_without_running(
    stack: RunningStack,
    sqs,  # type: ignore[no-untyped-def]
    request_id: str,
) -> None:
    requests, dlq = example_queues(stack)
    reply = await make_reply_queue(sqs, stack)
    conn = new_conn()
    body = tool_call(0, tool="take_ticket").replace('"id": 0', f'"id": "{request_id}"')
    await send(sqs, requests, body, request_attributes(stack, reply, conn))
    [(_, attributes)] = await receive_matching(sqs, dlq, conn)
    assert attributes[Attr.DLQ_REASON].startswith("unanswerable: the request id cannot be carried")
    assert await receive_matching(sqs, reply, conn, timeout_s=1) == []


async def test_a_new_connection_never_gets_an_earlier_ones_answers(stack: RunningStack, sqs) -> None:  # type: ignore[no-untyped-def]
    reply = await make_reply_queue(sqs, stack)
    tickets = []
    for _ in range(2):  # the SDK restarts its ids at the same number on every connection
        async with _client(stack, reply_queue_url=reply) as client:
            tickets.append((await client.call_tool("take_ticket", {})).structured_content["result"])  # type: ignore[index]
    assert tickets[0] != tickets[1], "the second connection's call ran; it was not the first's replay"
    with pytest.raises(TypeError):
        sqs_client_transport(stack.topic_target("example"), connection_id="chosen")  # type: ignore[call-arg]


LAST_WORD = {
    "name": "lastword",
    "servers": [{"name": "example", "timeout_s": 3, "max_receive_count": 1, "max_concurrency": 2}],
}


async def test_a_request_out_of_deliveries_is_answered_with_an_error_and_dead_lettered_with_a_reason(
    stack: RunningStack, tmp_path: Path
) -> None:
    deployment = Deployment.parse(LAST_WORD)
    created = await provision_deployment(stack, LAST_WORD)
    async with stack.session().client("sqs", endpoint_url=stack.endpoint_url) as sqs:
        requests = created.queue_urls["lastword-example-requests"]
        dlq = created.queue_urls["lastword-example-dlq"]
        reply = (await sqs.create_queue(QueueName=f"{deployment.reply_prefix}t-{secrets.token_hex(4)}"))[
            "QueueUrl"
        ]
        conn = new_conn()
        # A request whose only allowed delivery died with its worker (received, never deleted) ...
        await send(sqs, requests, tool_call(71, "never runs"), request_attributes(stack, reply, conn))
        taken = await sqs.receive_message(QueueUrl=requests, VisibilityTimeout=0, WaitTimeSeconds=1)
        assert len(taken["Messages"]) == 1
        # ... and one that overruns the function timeout on its only allowed delivery.
        slow = tool_call(72, tool="count_slowly").replace("{}", '{"steps": 100, "delay_s": 0.1}', 1)
        await send(sqs, requests, slow, request_attributes(stack, reply, conn))
        worker = start_worker(stack, LAST_WORD, tmp_path, "example")
        try:
            answers = await receive_matching(sqs, reply, conn, count=2, timeout_s=30)
            dead = await receive_matching(sqs, dlq, conn, count=2, timeout_s=10)
        finally:
            worker.send_signal(signal.SIGINT)
            output, _ = worker.communicate(timeout=60)
    errors = {json.loads(body)["id"]: json.loads(body)["error"]["message"] for body, _ in answers}
    assert set(errors) == {71, 72}, output
    assert all("will not be retried" in message for message in errors.values()), errors
    assert "ran out of time" in errors[72]
    reasons = sorted(attributes[Attr.DLQ_REASON] for _, attributes in dead)
    assert len(reasons) == 2 and all(r.startswith("retries-exhausted: ") for r in reasons), reasons


async def test_a_reply_to_a_connection_that_left_is_counted_not_dead_lettered(
    stack: RunningStack, sqs
) -> None:  # type: ignore[no-untyped-def]
    before = await _listed(sqs, stack)
    with pytest.raises((MCPError, TimeoutError)):
        with anyio.fail_after(1.5):  # Ctrl-C: the client leaves during a call and deletes its queue
            async with _client(stack) as client:
                await client.call_tool("count_slowly", {"steps": 20, "delay_s": 0.1})
    assert await _listed(sqs, stack) == before, "the per-connection queue was deleted on the way out"
    await anyio.sleep(3)  # the call finishes; its answer has nowhere to go
    dlq = stack.queue_url(stack.worker("example").dead_letter_queue)
    left = await sqs.receive_message(QueueUrl=dlq, MessageAttributeNames=["All"], WaitTimeSeconds=1)
    reasons = [
        from_sqs_attributes(m["MessageAttributes"]).get(Attr.DLQ_REASON, "") for m in left.get("Messages", [])
    ]
    assert not [r for r in reasons if r.startswith("reply-undeliverable") and "conn-" in r], reasons


async def test_a_request_whose_caller_stopped_waiting_is_not_run(stack: RunningStack, sqs) -> None:  # type: ignore[no-untyped-def]
    requests = stack.queue_url(stack.worker("example").request_queue)
    reply = await make_reply_queue(sqs, stack)
    conn = new_conn()
    gone = request_attributes(stack, reply, conn, dmcp_deadline="1")  # long past
    await send(sqs, requests, tool_call(81, "too late"), gone)
    waiting = request_attributes(stack, reply, conn, dmcp_deadline=str(2**53))
    await send(sqs, requests, tool_call(82, "in time"), waiting)
    answers = {
        json.loads(body)["id"]: json.loads(body)
        for body, _ in await receive_matching(sqs, reply, conn, count=2)
    }
    assert answers[81]["error"]["code"] == -32001 and "deadline" in answers[81]["error"]["message"]
    assert answers[82]["result"]["content"][0]["text"] == "in time"
