"""The pure rules behind held-connection behaviour over the queue (issue 10)."""

from __future__ import annotations

import json

from mcp.shared.exceptions import MCPError
from mcp_types import ErrorData, JSONRPCNotification, JSONRPCResponse

from dmcp_aws.back_channel import SERVER_REQUEST_ID_PREFIX, answer_key, new_server_request_id
from dmcp_aws.serving import handshake_error_data, without_undeliverable_capabilities
from dmcp_aws.wire import Attr, client_params_attribute, encode_request, parse_client_params

INITIALIZE = {
    "protocolVersion": "2025-11-25",
    "clientInfo": {"name": "host", "version": "1.0"},
    "capabilities": {"elicitation": {}, "sampling": {}},
}


def test_initialize_params_round_trip_through_the_attribute() -> None:
    value = client_params_attribute(INITIALIZE)
    assert value is not None and " " not in value
    assert parse_client_params(value) == (INITIALIZE["clientInfo"], INITIALIZE["capabilities"])
    assert "protocolVersion" not in json.loads(value)  # the version travels in its own attribute


def test_missing_or_mis_shaped_client_params_count_as_not_declared() -> None:
    assert client_params_attribute(None) is None
    assert client_params_attribute({}) is None
    for bad in (None, "", "not json", "[1, 2]", "7", '{"clientInfo": '):
        assert parse_client_params(bad) == (None, None)


def test_a_cancellation_and_an_answer_carry_the_digest_they_concern() -> None:
    cancel = JSONRPCNotification(jsonrpc="2.0", method="notifications/cancelled", params={"requestId": 3})
    wire = encode_request(cancel, server="s", reply_to="q", conn="c", concerns="d" * 64, client_params="{}")
    assert wire.attributes[Attr.REQUEST_DIGEST] == "d" * 64
    assert wire.attributes[Attr.CLIENT_PARAMS] == "{}"
    answer = JSONRPCResponse(jsonrpc="2.0", id="dmcp-s-1", result={})
    wire = encode_request(answer, server="s", reply_to="q", conn="c", concerns="e" * 64, deadline_ms=5)
    assert wire.attributes[Attr.REQUEST_DIGEST] == "e" * 64
    assert Attr.DEADLINE not in wire.attributes and Attr.METHOD not in wire.attributes


def test_answer_slots_are_named_by_what_only_the_connection_knows() -> None:
    first, second = new_server_request_id(), new_server_request_id()
    assert first != second and first.startswith(SERVER_REQUEST_ID_PREFIX) and len(first) == 7 + 32
    key = answer_key("conn", "digest", first)
    assert key == answer_key("conn", "digest", first)
    assert key not in {
        answer_key("other", "digest", first),
        answer_key("conn", "other", first),
        answer_key("conn", "digest", second),
    }
    assert "conn" not in key


def test_handshake_errors_keep_the_exceptions_code_and_message() -> None:
    assert handshake_error_data(ValueError("Unknown prompt: x")) == ErrorData(
        code=0, message="Unknown prompt: x"
    )
    own = ErrorData(code=-32602, message="bad", data={"k": 1})
    assert handshake_error_data(MCPError.from_error_data(own)) == own


def test_capabilities_promise_nothing_the_queue_cannot_deliver() -> None:
    result = {
        "capabilities": {
            "tools": {"listChanged": True},
            "resources": {"subscribe": True, "listChanged": True},
            "prompts": {"listChanged": False},
            "logging": {},
        },
        "serverInfo": {"name": "x"},
    }
    honest = without_undeliverable_capabilities(result)
    assert honest["capabilities"] == {"tools": {}, "resources": {}, "prompts": {}, "logging": {}}
    assert honest["serverInfo"] == {"name": "x"}
    assert result["capabilities"]["tools"] == {"listChanged": True}  # the input is not changed
    assert without_undeliverable_capabilities({"other": 1}) == {"other": 1}
