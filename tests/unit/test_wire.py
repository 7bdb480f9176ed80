"""The wire format: encoding, decoding and each way a message can be wrong."""

from __future__ import annotations

import json

import pytest
from mcp_types import JSONRPCError, JSONRPCNotification, JSONRPCRequest, JSONRPCResponse

from dmcp_aws.errors import MalformedBody, PayloadTooLarge, UnsupportedWireVersion
from dmcp_aws.wire import (
    MAX_MESSAGE_BYTES,
    Attr,
    decode,
    encode_reply,
    encode_request,
    from_sqs_attributes,
    to_sqs_attributes,
)

MODERN_META = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientCapabilities": {},
}


def _request(method: str, params: dict | None = None, request_id: int | str = 1) -> JSONRPCRequest:
    return JSONRPCRequest(jsonrpc="2.0", id=request_id, method=method, params=params)


def test_request_attributes_follow_the_design_table() -> None:
    request = _request("tools/call", {"name": "add", "arguments": {"a": 1}, "_meta": MODERN_META})
    wire = encode_request(request, server="example", reply_to="https://q/1/r", conn="c1")
    assert wire.attributes == {
        "dmcp.version": "1",
        "mcp.server": "example",
        "mcp.method": "tools/call",
        "mcp.name": "add",
        "mcp.protocol-version": "2026-07-28",
        "dmcp.reply-to": "https://q/1/r",
        "dmcp.conn": "c1",
    }
    assert len(wire.attributes) <= 10
    assert json.loads(wire.body) == {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": "add", "arguments": {"a": 1}, "_meta": MODERN_META},
    }


@pytest.mark.parametrize(
    ("method", "params", "name"),
    [
        ("resources/read", {"uri": "dmcp://x/y"}, "dmcp://x/y"),
        ("prompts/get", {"name": "review"}, "review"),
        ("tools/list", {}, None),
    ],
)
def test_name_attribute_only_where_the_method_has_one(method: str, params: dict, name: str | None) -> None:
    wire = encode_request(_request(method, params), server="s", reply_to="u", conn="c")
    assert wire.attributes.get(Attr.NAME) == name


def test_protocol_version_of_handshake_requests() -> None:
    initialize = _request(
        "initialize", {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {}}
    )
    assert (
        encode_request(initialize, server="s", reply_to="u", conn="c").attributes[Attr.PROTOCOL_VERSION]
        == "2025-11-25"
    )
    later = encode_request(
        _request("tools/list"), server="s", reply_to="u", conn="c", protocol_version="2025-06-18"
    )
    assert later.attributes[Attr.PROTOCOL_VERSION] == "2025-06-18"
    unknown = encode_request(_request("tools/list"), server="s", reply_to="u", conn="c")
    assert Attr.PROTOCOL_VERSION not in unknown.attributes


def test_reply_round_trip() -> None:
    for message in (
        JSONRPCResponse(jsonrpc="2.0", id="a", result={"x": 1}),
        JSONRPCNotification(
            jsonrpc="2.0", method="notifications/progress", params={"progressToken": 1, "progress": 1}
        ),
    ):
        wire = encode_reply(message, server="example", conn="c9", digest="d")
        assert wire.attributes == {
            "dmcp.version": "1",
            "mcp.server": "example",
            "dmcp.conn": "c9",
            "dmcp.request-digest": "d",
        }
        assert decode(wire.body, wire.attributes).message == message


def test_sqs_attribute_shapes_both_spellings() -> None:
    sqs = to_sqs_attributes({"a": "1"})
    assert sqs == {"a": {"DataType": "String", "StringValue": "1"}}
    assert from_sqs_attributes(sqs) == {"a": "1"}
    assert from_sqs_attributes(
        {"a": {"dataType": "String", "stringValue": "2"}, "b": {"binaryValue": "AA=="}}
    ) == {"a": "2"}
    assert from_sqs_attributes(None) == {}


def test_decode_rejects_unknown_wire_versions() -> None:
    with pytest.raises(UnsupportedWireVersion, match="'2'"):
        decode("{}", {"dmcp.version": "2"})
    with pytest.raises(UnsupportedWireVersion):
        decode("{}", {})


@pytest.mark.parametrize(
    "body", ["{not json", b"\xff\xfe", "[1, 2]", '"text"', '{"jsonrpc": "1.0", "method": "x"}']
)
def test_decode_rejects_bodies_that_are_not_one_jsonrpc_message(body: str | bytes) -> None:
    with pytest.raises(MalformedBody) as caught:
        decode(body, {"dmcp.version": "1"})
    assert caught.value.request_id is None
    assert caught.value.reason == "malformed-body"


def test_malformed_message_with_an_id_keeps_it_so_it_can_be_answered() -> None:
    with pytest.raises(MalformedBody) as caught:
        decode('{"jsonrpc": "2.0", "id": 42, "params": 1}', {"dmcp.version": "1"})
    assert caught.value.request_id == 42
    with pytest.raises(MalformedBody) as caught_bool:
        decode('{"jsonrpc": "2.0", "id": true}', {"dmcp.version": "1"})
    assert caught_bool.value.request_id is None


def test_offloaded_payloads_are_refused_clearly() -> None:
    with pytest.raises(MalformedBody, match="claim checks"):
        decode("{}", {"dmcp.version": "1", "dmcp.payload": "s3://b/k"})


def test_oversize_messages_are_refused_before_sending() -> None:
    big = _request("tools/call", {"name": "echo", "arguments": {"text": "x" * MAX_MESSAGE_BYTES}})
    with pytest.raises(PayloadTooLarge, match="SQS/SNS accept at most 262144"):
        encode_request(big, server="s", reply_to="u", conn="c")
    error = JSONRPCError(jsonrpc="2.0", id=1, error={"code": 1, "message": "m" * MAX_MESSAGE_BYTES})
    with pytest.raises(PayloadTooLarge):
        encode_reply(error, server="s", conn="c", digest="d")


@pytest.mark.parametrize("bad_id", ["1.5", "true", "null", "{}", "[1]", "2.0"])
def test_a_request_whose_id_is_not_a_string_or_integer_is_malformed_not_a_notification(bad_id: str) -> None:
    body = f'{{"jsonrpc": "2.0", "id": {bad_id}, "method": "tools/call", "params": {{}}}}'
    with pytest.raises(MalformedBody, match="must be a string or an integer") as caught:
        decode(body, {"dmcp.version": "1"})
    assert caught.value.request_id is None, "no usable id: it is dead-lettered, not answered"


def test_an_unencodable_result_becomes_an_error_and_an_unanswerable_id_is_refused_up_front() -> None:
    from dmcp_aws.errors import Unanswerable
    from dmcp_aws.wire import check_answerable, encode_answer

    surrogate = JSONRPCResponse(jsonrpc="2.0", id=7, result={"text": "a\ud800b"})
    wire = encode_answer(surrogate, server="s", conn="c", digest="d")
    answer = json.loads(wire.body)
    assert answer["id"] == 7 and "not encodable" in answer["error"]["message"]
    for request_id in ("x" * (MAX_MESSAGE_BYTES + 1), "\udc00"):
        with pytest.raises(Unanswerable):
            check_answerable(request_id, server="s", conn="c", digest="d")
    check_answerable("ordinary", server="s", conn="c", digest="d")
    check_answerable(10**30, server="s", conn="c", digest="d")


def test_the_request_digest_is_over_the_json_value_not_its_spelling() -> None:
    from dmcp_aws.wire import request_digest

    assert request_digest('{"a":1,"b":"/"}') == request_digest('{"b": "\\/", "a": 1}')
    assert request_digest('{"a":1}') != request_digest('{"a":2}')
    assert request_digest("{not json") != request_digest("{not  json")
    assert len(request_digest("x")) == 64


def test_a_request_carries_its_callers_deadline_and_a_notification_does_not() -> None:
    request = _request("tools/call", {"name": "echo"})
    assert (
        encode_request(request, server="s", reply_to="u", conn="c", deadline_ms=123).attributes[
            "dmcp.deadline"
        ]
        == "123"
    )
    note = JSONRPCNotification(jsonrpc="2.0", method="notifications/cancelled", params={"requestId": 1})
    assert (
        "dmcp.deadline"
        not in encode_request(note, server="s", reply_to="u", conn="c", deadline_ms=1).attributes
    )
