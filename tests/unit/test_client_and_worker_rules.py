"""Decisions of the client transport and the worker that need no AWS: which replies reach the
session, which are left to another connection, FIFO parameters, ledger keys, routing of
`String.Array` server names, oversize answers."""

from __future__ import annotations

import json
import time
from typing import Any

from mcp.shared.message import SessionMessage
from mcp_types import JSONRPCError, JSONRPCNotification, JSONRPCRequest, JSONRPCResponse

from dmcp_aws.client import QueueTarget, TopicTarget, _Connection, _queue_arn
from dmcp_aws.idempotency import Claim
from dmcp_aws.reply_address import ReplyAddress
from dmcp_aws.wire import (
    MAX_MESSAGE_BYTES,
    decode,
    encode_answer,
    encode_reply,
    from_sqs_attributes,
    request_digest,
    to_sqs_attributes,
)
from dmcp_aws.worker import ReplyChannel, _single_outcome_claim, conn_ref, names_one_server


def _connection(*, owned: bool = True) -> _Connection:
    return _Connection(
        QueueTarget("https://q", "example"),
        "me",
        "https://reply",
        sqs=None,
        sns=None,
        wait_time=1,
        owned=owned,
        timeout=60,
    )


def _sent(connection: _Connection, request_id: int | str, token: str | None = None) -> str:
    """Pretend `connection` sent a request; its digest."""
    params: dict[str, Any] = {"name": "echo"}
    if token is not None:
        params["_meta"] = {"progressToken": token}
    request = JSONRPCRequest(jsonrpc="2.0", id=request_id, method="tools/call", params=params)
    digest = request_digest(request.model_dump_json())
    connection._expect(request, digest)
    return digest


def _raw(message: Any, digest: str, conn: str = "me", sent_ms: int | None = None) -> dict[str, Any]:
    wire = encode_reply(message, server="example", conn=conn, digest=digest)
    raw: dict[str, Any] = {"Body": wire.body, "MessageAttributes": to_sqs_attributes(wire.attributes)}
    if sent_ms is not None:
        raw["Attributes"] = {"SentTimestamp": str(sent_ms)}
    return raw


def _accept(connection: _Connection, raw: dict[str, Any]) -> SessionMessage | None:
    return connection._accept(raw, from_sqs_attributes(raw["MessageAttributes"]))


def _progress(token: str) -> JSONRPCNotification:
    return JSONRPCNotification(
        jsonrpc="2.0", method="notifications/progress", params={"progressToken": token, "progress": 1}
    )


def test_only_answers_to_waiting_requests_with_their_digest_reach_the_session() -> None:
    connection = _connection()
    digest = _sent(connection, "r1", token="tok")
    assert isinstance(_accept(connection, _raw(_progress("tok"), digest)), SessionMessage)
    assert _accept(connection, _raw(_progress("other"), digest)) is None, "progress for another token"
    forged = JSONRPCResponse(jsonrpc="2.0", id="r1", result={"forged": True})
    assert _accept(connection, _raw(forged, request_digest("another body"))) is None, "digest mismatch"
    assert _accept(connection, _raw(forged, digest, conn="someone")) is None, "not this connection"
    answer = JSONRPCResponse(jsonrpc="2.0", id="r1", result={})
    assert isinstance(_accept(connection, _raw(answer, digest)), SessionMessage)
    assert _accept(connection, _raw(answer, digest)) is None, "a second answer (a replay) is dropped"
    assert _accept(connection, _raw(_progress("tok"), digest)) is None, "progress after the result"
    never = JSONRPCResponse(jsonrpc="2.0", id=99, result={})
    assert _accept(connection, _raw(never, digest)) is None, "an answer to a request never sent"


def test_undecodable_replies_never_reach_the_session() -> None:
    connection = _connection()
    digest = _sent(connection, 1)
    broken = _raw(JSONRPCResponse(jsonrpc="2.0", id=1, result={}), digest)
    broken["Body"] = "{not json"
    assert _accept(connection, broken) is None


def test_a_shared_provisioned_queue_leaves_only_plausible_replies_to_their_owner() -> None:
    shared, own = _connection(owned=False), _connection(owned=True)
    now = int(time.time() * 1000)
    other = _raw(JSONRPCResponse(jsonrpc="2.0", id=1, result={}), "d", conn="other", sent_ms=now)
    attributes = from_sqs_attributes(other["MessageAttributes"])
    assert shared._leave_to_owner(other, attributes)
    assert not own._leave_to_owner(other, attributes), "a per-connection queue holds nobody else's"
    stale = _raw(JSONRPCResponse(jsonrpc="2.0", id=1, result={}), "d", conn="other", sent_ms=now - 60_000)
    assert not shared._leave_to_owner(stale, from_sqs_attributes(stale["MessageAttributes"]))
    cycled = dict(other, Attributes={"SentTimestamp": str(now), "ApproximateReceiveCount": "20"})
    assert not shared._leave_to_owner(cycled, attributes), "passed over too often: its owner is gone"
    assert not shared._leave_to_owner({"Attributes": {}}, {"dmcp.conn": "x"}), "junk is deleted"


def test_a_deadline_expires_the_wait() -> None:
    connection = _connection()
    digest = _sent(connection, 5)
    connection._pending[5].deadline = 0
    connection._finish(5)
    assert _accept(connection, _raw(JSONRPCResponse(jsonrpc="2.0", id=5, result={}), digest)) is None


def test_per_connection_queue_arns_follow_the_target() -> None:
    topic = TopicTarget("arn:aws-cn:sns:cn-north-1:123456789012:dmcp-requests", "s")
    assert _queue_arn(topic, "q") == "arn:aws-cn:sqs:cn-north-1:123456789012:q"
    queue = QueueTarget("https://sqs.eu-west-1.amazonaws.com/123456789012/dmcp-x-requests", "s")
    assert _queue_arn(queue, "q") == "arn:aws:sqs:eu-west-1:123456789012:q"
    local = QueueTarget("http://127.0.0.1:4566/queue/us-east-1/000000000000/r", "s")
    assert _queue_arn(local, "q") == "arn:aws:sqs:us-east-1:000000000000:q"


def test_fifo_parameters_are_valid_for_any_request_id() -> None:
    fifo = ReplyAddress("https://sqs/1/q.fifo", "123456789012", "us-east-1", "q.fifo")
    channel = ReplyChannel(fifo, "conn", "example", sqs=None, replies=None, digest="d", per_connection=False)
    first, second = (
        channel.fifo_parameters("ünïcode id with spaces"),
        channel.fifo_parameters("ünïcode id with spaces"),
    )
    assert first["MessageGroupId"] == second["MessageGroupId"]
    assert first["MessageGroupId"].isalnum() and len(first["MessageGroupId"]) <= 128
    assert first["MessageDeduplicationId"] != second["MessageDeduplicationId"]
    standard = ReplyAddress("https://sqs/1/q", "123456789012", "us-east-1", "q")
    plain = ReplyChannel(
        standard, "conn", "example", sqs=None, replies=None, digest="d", per_connection=False
    )
    assert plain.fifo_parameters(1) == {}


def test_ledger_keys_bind_connection_reply_queue_and_exact_request() -> None:
    base = Claim.of("c", "https://r", request_digest('{"id":1}'))
    assert base == Claim.of("c", "https://r", request_digest('{"id":1}'))
    assert base != Claim.of("c2", "https://r", request_digest('{"id":1}')), "another connection"
    assert base != Claim.of("c", "https://x", request_digest('{"id":1}')), "another reply queue"
    assert base != Claim.of("c", "https://r", request_digest('{"id":2}')), "another request"
    assert len(base.key) == 64 and base.key.isalnum()


def test_connection_references_do_not_reveal_the_secret() -> None:
    secret = "0123456789abcdef0123456789abcdef"
    reference = conn_ref(secret)
    assert reference is not None and reference not in secret and len(reference) == 12
    assert conn_ref(None) is None


def _record(server: dict[str, str] | None, reply_to: str = "https://r", body: str = "{}") -> dict[str, Any]:
    attributes = {"dmcp.reply-to": {"dataType": "String", "stringValue": reply_to}}
    if server is not None:
        attributes["mcp.server"] = server
    return {"body": body, "messageAttributes": attributes}


def test_only_a_record_that_may_reach_several_workers_needs_a_single_outcome_claim() -> None:
    one = _record({"dataType": "String", "stringValue": "example"})
    array = _record({"dataType": "String.Array", "stringValue": '["example", "nope"]'})
    assert names_one_server(one) and names_one_server(_record(None))
    assert not names_one_server(array)
    assert not names_one_server(_record({"dataType": "Number", "stringValue": "5"}))
    assert _single_outcome_claim(one, from_sqs_attributes(one["messageAttributes"]), "d") is None
    # every copy SNS made of one publish claims the same key; another publish does not
    copy = _record({"dataType": "String.Array", "stringValue": '["example", "nope"]'})
    claim = _single_outcome_claim(array, from_sqs_attributes(array["messageAttributes"]), "d")
    assert claim is not None
    assert claim == _single_outcome_claim(copy, from_sqs_attributes(copy["messageAttributes"]), "d")
    other = _record({"dataType": "String.Array", "stringValue": '["example", "nope"]'}, reply_to="https://x")
    assert claim != _single_outcome_claim(other, from_sqs_attributes(other["messageAttributes"]), "d")


def test_an_answer_too_large_to_send_becomes_its_error() -> None:
    big = JSONRPCResponse(jsonrpc="2.0", id=7, result={"text": "x" * MAX_MESSAGE_BYTES})
    wire = encode_answer(big, server="example", conn="c", digest="d")
    error = decode(wire.body, wire.attributes).message
    assert isinstance(error, JSONRPCError) and error.id == 7
    assert "too large to send" in json.loads(wire.body)["error"]["message"]
