"""The dMCP wire format, version 1 (pure functions, no I/O).

One SQS message (or raw-delivered SNS message) carries one JSON-RPC message as UTF-8 JSON in
its body; transport metadata travels in String message attributes:

    >>> wire = encode_request(request, server="example", reply_to=url, conn="c0ffee")
    >>> sqs.send_message(QueueUrl=q, MessageBody=wire.body,
    ...                  MessageAttributes=to_sqs_attributes(wire.attributes))
    >>> inbound = decode(record_body, from_sqs_attributes(record_attributes))
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from mcp_types import (
    INTERNAL_ERROR,
    ErrorData,
    JSONRPCError,
    JSONRPCMessage,
    JSONRPCNotification,
    JSONRPCRequest,
    RequestId,
    jsonrpc_message_adapter,
)
from pydantic import ValidationError

from dmcp_aws.errors import MalformedBody, PayloadTooLarge, Unanswerable, UnsupportedWireVersion

WIRE_VERSION: Final = "1"

MAX_MESSAGE_BYTES: Final = 256 * 1024
"""Largest body + attributes SNS accepts (SQS accepts more; the smaller limit rules)."""


class Attr(StrEnum):
    """Message attribute names of wire format version 1."""

    VERSION = "dmcp.version"
    SERVER = "mcp.server"
    METHOD = "mcp.method"
    NAME = "mcp.name"
    PROTOCOL_VERSION = "mcp.protocol-version"
    REPLY_TO = "dmcp.reply-to"
    CONN = "dmcp.conn"
    PAYLOAD = "dmcp.payload"
    DEADLINE = "dmcp.deadline"
    """On requests: when the caller stops waiting (ms since the epoch); a worker that receives the
    request later does not run it."""
    REQUEST_DIGEST = "dmcp.request-digest"
    """On replies: `request_digest` of the request body they answer. The client transport hands
    the session only replies whose digest is that of a request it sent and still waits for.
    From a client, on `notifications/cancelled` and on its answers to a server's requests: the
    digest of the request they concern (so a worker can find it)."""
    CLIENT_PARAMS = "mcp.client-params"
    """Handshake era, on requests and notifications: the `clientInfo` and `capabilities` the
    client declared in `initialize` (compact JSON), so that a stateless worker knows them."""
    DLQ_REASON = "dmcp.dlq-reason"
    """Set only on a message a worker moved to a dead-letter queue: why it could not be answered."""


_NAME_PARAM: Final = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}
"""Methods whose target (tool, prompt, resource) travels in `mcp.name`, and the param holding it."""

_PROTOCOL_VERSION_META_KEY: Final = "io.modelcontextprotocol/protocolVersion"


@dataclass(frozen=True)
class WireMessage:
    """An encoded message: the body and its String attributes."""

    body: str
    attributes: dict[str, str]

    @property
    def size(self) -> int:
        """Bytes counted against the SQS/SNS limit (body plus attribute names and values)."""
        attribute_bytes = sum(
            len(k.encode()) + len(v.encode()) + len("String") for k, v in self.attributes.items()
        )
        return len(self.body.encode()) + attribute_bytes


@dataclass(frozen=True)
class InboundMessage:
    """A decoded message and its attributes."""

    message: JSONRPCMessage
    attributes: Mapping[str, str]

    @property
    def request_id(self) -> RequestId | None:
        """The JSON-RPC id for requests, responses and errors; None for notifications."""
        return getattr(self.message, "id", None)

    def attribute(self, name: Attr) -> str | None:
        return self.attributes.get(name)


def request_digest(body: str) -> str:
    """The SHA-256 (hex) of a request body's JSON value: binds every reply to its request.

    The value, not its spelling: a body is hashed in canonical form (sorted keys, no spaces), so
    a hop that re-serialises JSON (LocalStack's event source mapping does) cannot break the
    binding. A body that is not JSON is hashed as it is."""
    try:
        canonical = json.dumps(json.loads(body), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    except (ValueError, RecursionError):
        canonical = body
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


def dump_message(message: JSONRPCMessage) -> str:
    """Serialise one JSON-RPC message the way the SDK's transports do."""
    return message.model_dump_json(by_alias=True, exclude_unset=True)


def request_target(message: JSONRPCRequest | JSONRPCNotification) -> str | None:
    """The tool/prompt name or resource URI a request is about, if its method has one."""
    param = _NAME_PARAM.get(message.method)
    value = (message.params or {}).get(param) if param else None
    return value if isinstance(value, str) else None


def request_protocol_version(message: JSONRPCRequest | JSONRPCNotification, hint: str | None) -> str | None:
    """The protocol version a request speaks: its `_meta` envelope's, else `initialize`'s, else `hint`."""
    params = message.params or {}
    meta = params.get("_meta")
    if isinstance(meta, Mapping) and isinstance(meta.get(_PROTOCOL_VERSION_META_KEY), str):
        return str(meta[_PROTOCOL_VERSION_META_KEY])
    if message.method == "initialize" and isinstance(params.get("protocolVersion"), str):
        return str(params["protocolVersion"])
    return hint


def encode_request(
    message: JSONRPCMessage,
    *,
    server: str,
    reply_to: str,
    conn: str,
    protocol_version: str | None = None,
    deadline_ms: int | None = None,
    client_params: str | None = None,
    concerns: str | None = None,
) -> WireMessage:
    """Encode a client-to-server message with its routing attributes.

    `deadline_ms` (requests only) is when the caller stops waiting, in ms since the epoch;
    `client_params` is what `initialize` declared (`client_params_attribute`); `concerns` is the
    `request_digest` of the request a cancellation or an answer to a server's request is about.
    """
    attributes = {
        Attr.VERSION.value: WIRE_VERSION,
        Attr.SERVER.value: server,
        Attr.REPLY_TO.value: reply_to,
        Attr.CONN.value: conn,
    }
    if client_params is not None:
        attributes[Attr.CLIENT_PARAMS.value] = client_params
    if concerns is not None:
        attributes[Attr.REQUEST_DIGEST.value] = concerns
    if isinstance(message, JSONRPCRequest | JSONRPCNotification):
        attributes[Attr.METHOD.value] = message.method
        if (target := request_target(message)) is not None:
            attributes[Attr.NAME.value] = target
        if (version := request_protocol_version(message, protocol_version)) is not None:
            attributes[Attr.PROTOCOL_VERSION.value] = version
    if isinstance(message, JSONRPCRequest) and deadline_ms is not None:
        attributes[Attr.DEADLINE.value] = str(deadline_ms)
    return _checked(WireMessage(dump_message(message), attributes))


def client_params_attribute(initialize_params: Mapping[str, Any] | None) -> str | None:
    """The `mcp.client-params` value for an `initialize` request's params (None without any)."""
    if not isinstance(initialize_params, Mapping):
        return None
    declared = {k: initialize_params[k] for k in ("clientInfo", "capabilities") if k in initialize_params}
    return json.dumps(declared, separators=(",", ":"), ensure_ascii=False) if declared else None


def parse_client_params(value: str | None) -> tuple[Any, Any]:
    """`(clientInfo, capabilities)` from an `mcp.client-params` value; a missing or mis-shaped
    value gives `(None, None)` (treated as not declared, as the SDK treats a bad envelope)."""
    try:
        declared = json.loads(value) if value else None
    except (ValueError, RecursionError):
        return None, None
    if not isinstance(declared, dict):
        return None, None
    return declared.get("clientInfo"), declared.get("capabilities")


def encode_reply(message: JSONRPCMessage, *, server: str, conn: str, digest: str) -> WireMessage:
    """Encode a server-to-client message (notification, response or error) for a reply queue.

    `digest` is the `request_digest` of the request the message belongs to. Raises
    `PayloadTooLarge`, or `Unanswerable` for a message that cannot be serialised at all (e.g. a
    lone surrogate in a string).
    """
    attributes = {
        Attr.VERSION.value: WIRE_VERSION,
        Attr.SERVER.value: server,
        Attr.CONN.value: conn,
        Attr.REQUEST_DIGEST.value: digest,
    }
    try:
        body = dump_message(message)
        body.encode()
    except (ValueError, UnicodeError) as exc:
        raise Unanswerable(f"the message cannot be encoded as UTF-8 JSON: {exc}") from None
    return _checked(WireMessage(body, attributes))


def encode_answer(message: JSONRPCMessage, *, server: str, conn: str, digest: str) -> WireMessage:
    """Encode a reply; a response that is too large or cannot be encoded becomes an error with its id.

    Raises `WireError` only when not even that error can be sent (`Unanswerable`: the request's
    own id is too large or not encodable), or for a notification that cannot be sent.
    """
    try:
        return encode_reply(message, server=server, conn=conn, digest=digest)
    except (PayloadTooLarge, Unanswerable) as exc:
        request_id = getattr(message, "id", None)
        if isinstance(message, JSONRPCNotification) or request_id is None:
            raise
        what = "too large" if isinstance(exc, PayloadTooLarge) else "not encodable"
        error = ErrorData(code=INTERNAL_ERROR, message=f"the result is {what} to send: {exc}")
        try:
            return encode_reply(
                JSONRPCError(jsonrpc="2.0", id=request_id, error=error),
                server=server,
                conn=conn,
                digest=digest,
            )
        except (PayloadTooLarge, Unanswerable) as again:
            raise Unanswerable(
                f"not even an error can answer request id of this size or form: {again}"
            ) from None


def check_answerable(request_id: RequestId, *, server: str, conn: str, digest: str) -> None:
    """Raise `Unanswerable` if no reply could carry `request_id` (too long, or not encodable).

    Checked before a request runs, so a request that could never be answered is dead-lettered
    without running its tool."""
    if isinstance(request_id, int) or (len(request_id) < 1024 and request_id.isascii()):
        return
    error = ErrorData(code=INTERNAL_ERROR, message="x" * 200)
    try:
        encode_reply(
            JSONRPCError(jsonrpc="2.0", id=request_id, error=error), server=server, conn=conn, digest=digest
        )
    except (PayloadTooLarge, Unanswerable) as exc:
        raise Unanswerable(f"the request id cannot be carried by any reply: {exc}") from None


def decode(body: str | bytes, attributes: Mapping[str, str]) -> InboundMessage:
    """Decode a wire message; raise a `WireError` subclass naming what is wrong.

    A body that is JSON with a usable `id` but not a valid JSON-RPC message raises `MalformedBody`
    with `request_id` set, so the caller can still answer it.
    """
    version = attributes.get(Attr.VERSION)
    if version != WIRE_VERSION:
        raise UnsupportedWireVersion(f"dmcp.version is {version!r}; this worker speaks {WIRE_VERSION!r}")
    if Attr.PAYLOAD in attributes:
        raise MalformedBody("the body was offloaded (dmcp.payload); claim checks are not supported yet")
    try:
        text = body.decode() if isinstance(body, bytes) else body
        decoded: Any = json.loads(text)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise MalformedBody(f"body is not UTF-8 JSON: {exc}") from None
    if isinstance(decoded, dict) and "id" in decoded and _usable_id(decoded) is None:
        # Without this, a request with a float/bool/null/object id validates as a notification.
        raise MalformedBody(
            f"the JSON-RPC id must be a string or an integer, not {_json_type(decoded['id'])}"
        )
    try:
        message = jsonrpc_message_adapter.validate_python(decoded)
    except ValidationError:
        raise MalformedBody(
            "body is not a single JSON-RPC 2.0 message", request_id=_usable_id(decoded)
        ) from None
    return InboundMessage(message, dict(attributes))


def to_sqs_attributes(attributes: Mapping[str, str]) -> dict[str, dict[str, str]]:
    """String attributes in the shape SQS `SendMessage` (and SNS `Publish`) takes."""
    return {name: {"DataType": "String", "StringValue": value} for name, value in attributes.items()}


def from_sqs_attributes(raw: Mapping[str, Mapping[str, Any]] | None) -> dict[str, str]:
    """String attributes from an SQS `ReceiveMessage` result or a Lambda SQS record.

    Accepts both spellings: `StringValue` (SQS API) and `stringValue` (Lambda event).
    """
    out: dict[str, str] = {}
    for name, value in (raw or {}).items():
        string = value.get("StringValue", value.get("stringValue"))
        if isinstance(string, str):
            out[name] = string
    return out


def _checked(wire: WireMessage) -> WireMessage:
    if wire.size > MAX_MESSAGE_BYTES:
        raise PayloadTooLarge(f"message is {wire.size} bytes; SQS/SNS accept at most {MAX_MESSAGE_BYTES}")
    return wire


def _json_type(value: Any) -> str:
    names = {bool: "a boolean", float: "a number with a fraction", dict: "an object", list: "an array"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def _usable_id(decoded: Any) -> RequestId | None:
    if not isinstance(decoded, dict):
        return None
    request_id = decoded.get("id")
    if isinstance(request_id, bool) or not isinstance(request_id, str | int):
        return None
    return request_id
