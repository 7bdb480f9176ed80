"""Decisions of the client transport and the worker that need no AWS: which replies to hand to
the session, which are stale, FIFO parameters, request fingerprints, oversize answers."""

from __future__ import annotations

import json
from typing import Any

from mcp.shared.message import SessionMessage
from mcp_types import JSONRPCError, JSONRPCNotification, JSONRPCResponse

from dmcp_aws.client import QueueTarget, _Connection
from dmcp_aws.idempotency import Claim
from dmcp_aws.reply_address import ReplyAddress
from dmcp_aws.wire import (
    MAX_MESSAGE_BYTES,
    decode,
    encode_answer,
    encode_reply,
    from_sqs_attributes,
    to_sqs_attributes,
)
from dmcp_aws.worker import ReplyChannel


def _connection() -> _Connection:
    return _Connection(
        QueueTarget("https://q", "example"), "me", "https://reply", sqs=None, sns=None, wait_time=1
    )


def _raw(message: Any, conn: str = "me", sent_ms: int | None = None) -> dict[str, Any]:
    wire = encode_reply(message, server="example", conn=conn)
    raw: dict[str, Any] = {"Body": wire.body, "MessageAttributes": to_sqs_attributes(wire.attributes)}
    if sent_ms is not None:
        raw["Attributes"] = {"SentTimestamp": str(sent_ms)}
    return raw


def _accept(connection: _Connection, raw: dict[str, Any]) -> SessionMessage | Exception | None:
    return connection._accept(raw, from_sqs_attributes(raw["MessageAttributes"]))


def test_progress_after_its_result_is_dropped_and_a_reused_token_revives() -> None:
    connection = _connection()
    connection._progress_token_of["r1"] = "tok"
    progress = JSONRPCNotification(
        jsonrpc="2.0", method="notifications/progress", params={"progressToken": "tok", "progress": 1}
    )
    assert isinstance(_accept(connection, _raw(progress)), SessionMessage), "progress while the call runs"
    assert isinstance(
        _accept(connection, _raw(JSONRPCResponse(jsonrpc="2.0", id="r1", result={}))), SessionMessage
    )
    assert _accept(connection, _raw(progress)) is None, "progress after the result is dropped"


def test_replies_of_other_connections_never_reach_the_session() -> None:
    connection = _connection()
    assert _accept(connection, _raw(JSONRPCResponse(jsonrpc="2.0", id=1, result={}), conn="other")) is None
    broken = {
        "Body": "{not json",
        "MessageAttributes": to_sqs_attributes({"dmcp.version": "1", "dmcp.conn": "other"}),
    }
    assert _accept(connection, broken) is None, "another connection's garbage is not this session's error"
    mine = {
        "Body": "{not json",
        "MessageAttributes": to_sqs_attributes({"dmcp.version": "1", "dmcp.conn": "me"}),
    }
    assert isinstance(_accept(connection, mine), Exception)


def test_stale_means_sent_before_the_connection_started() -> None:
    connection = _connection()
    response = JSONRPCResponse(jsonrpc="2.0", id=1, result={})
    assert connection._stale(_raw(response, sent_ms=connection.started_ms - 60_000))
    assert not connection._stale(_raw(response, sent_ms=connection.started_ms))
    assert not connection._stale(_raw(response))


def test_fifo_parameters_are_valid_for_any_request_id() -> None:
    fifo = ReplyAddress("https://sqs/1/q.fifo", "123456789012", "us-east-1", "q.fifo")
    channel = ReplyChannel(fifo, "conn", "example", sqs=None)
    first, second = (
        channel.fifo_parameters("ünïcode id with spaces"),
        channel.fifo_parameters("ünïcode id with spaces"),
    )
    assert first["MessageGroupId"] == second["MessageGroupId"]
    assert first["MessageGroupId"].isalnum() and len(first["MessageGroupId"]) <= 128
    assert first["MessageDeduplicationId"] != second["MessageDeduplicationId"]
    standard = ReplyAddress("https://sqs/1/q", "123456789012", "us-east-1", "q")
    assert ReplyChannel(standard, "conn", "example", sqs=None).fifo_parameters(1) == {}


def test_fingerprint_tells_requests_apart() -> None:
    base = Claim.of("c", 1, "tools/call", {"name": "echo", "arguments": {"text": "a"}}, "https://r")
    assert base == Claim.of("c", 1, "tools/call", {"arguments": {"text": "a"}, "name": "echo"}, "https://r")
    assert (
        base.fingerprint
        != Claim.of(
            "c", 1, "tools/call", {"name": "echo", "arguments": {"text": "b"}}, "https://r"
        ).fingerprint
    )
    assert (
        base.fingerprint
        != Claim.of(
            "c", 1, "tools/call", {"name": "echo", "arguments": {"text": "a"}}, "https://x"
        ).fingerprint
    )


def test_an_answer_too_large_to_send_becomes_its_error() -> None:
    big = JSONRPCResponse(jsonrpc="2.0", id=7, result={"text": "x" * MAX_MESSAGE_BYTES})
    wire = encode_answer(big, server="example", conn="c")
    error = decode(wire.body, wire.attributes).message
    assert isinstance(error, JSONRPCError) and error.id == 7
    assert "too large to send" in json.loads(wire.body)["error"]["message"]
