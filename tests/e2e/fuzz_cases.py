"""Hostile messages for the fuzz test (`test_fuzz.py`), each with the outcome it must have.

Pure: no I/O. `generate(layout)` draws the same cases for the same seed every time (only the
queue URLs in `layout` differ between runs). `predict()` is the oracle: it applies the wire
format's rules (DESIGN.md, "Wire format" and "Failure rules") and the MCP rule that an id is a
string or an integer, and uses the SDK's own JSON-RPC schema only to tell requests, notifications
and responses apart, so a case's expected fate is known before it is sent:

- `ANSWER`: a reply with the request's own id (a result, or a JSON-RPC error) in the sender's
  reply queue, carrying its `dmcp.conn` and the digest of its body;
- `DLQ`: moved to a dead-letter queue with a `dmcp.dlq-reason` (the expected reason's prefix);
- `NOTIFICATION`: a client notification, deleted with no answer (counted, `ClientNotification`);
- `GONE`: the answer's per-connection reply queue does not exist: its client left, and the
  answer is counted and dropped (`ReplyQueueGone`), by design never dead-lettered.

What is not generated, and why: bodies that are not valid Unicode (a lone surrogate as a raw
character) cannot be sent through the SQS API at all (SQS rejects them, and moto answers HTTP 500
and then fails every later receive of that queue), so lone surrogates are sent the only way a
client can: as JSON escapes (`"\\ud800"`) inside valid UTF-8 text. Binary attributes are sent
straight to the request queue only, never through the topic (moto breaks a queue that SNS
delivers one to). Attribute values are never empty and a message has at most 10 attributes
(SQS refuses both). `String.Array` values through the topic are valid JSON arrays (SNS refuses
others); through the queue any text goes.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from typing import Any, Final

from mcp_types import JSONRPCError, JSONRPCNotification, JSONRPCResponse, jsonrpc_message_adapter
from pydantic import ValidationError

from dmcp_aws.wire import request_digest

SEED: Final = 20261121
COUNT: Final = 600
TOPIC_SHARE: Final = 0.15

QUEUE: Final = "queue"
TOPIC: Final = "topic"

ANSWER: Final = "answer"
DLQ: Final = "dlq"
NOTIFICATION: Final = "notification"
GONE: Final = "gone"

INVALID_REQUEST: Final = -32600
METHOD_NOT_FOUND: Final = -32601

MAX_REPLY_BYTES: Final = 256 * 1024
FORGED_REASON: Final = "forged-by-the-client"

VERSION, SERVER, METHOD, NAME = "dmcp.version", "mcp.server", "mcp.method", "mcp.name"
PROTOCOL, REPLY_TO, CONN, PAYLOAD = "mcp.protocol-version", "dmcp.reply-to", "dmcp.conn", "dmcp.payload"
DIGEST, REASON = "dmcp.request-digest", "dmcp.dlq-reason"

MODERN_META: Final = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientCapabilities": {},
}

_NO_ID: Final = object()


@dataclass(frozen=True)
class Attribute:
    """One message attribute as sent: its SQS data type and value."""

    data_type: str
    value: str | bytes

    def to_sqs(self) -> dict[str, Any]:
        if isinstance(self.value, bytes):
            return {"DataType": self.data_type, "BinaryValue": self.value}
        return {"DataType": self.data_type, "StringValue": self.value}

    @property
    def text(self) -> str | None:
        """What a worker reads: the string value of any non-binary type."""
        return self.value if isinstance(self.value, str) else None


def s(value: str) -> Attribute:
    return Attribute("String", value)


@dataclass(frozen=True)
class Layout:
    """Where the cases point: the stack's endpoint, prefixes and the test's queues (by name)."""

    endpoint: str
    account: str
    region: str
    reply_prefix: str
    connection_prefix: str
    senders: tuple[str, ...]
    """Reply queues of the fuzzing client: every answer must land in the one its request named."""
    bystanders: tuple[str, ...]
    """Reply queues under the prefix nobody names validly: they must stay empty."""
    not_reply_queues: tuple[str, ...]
    """Existing queues outside the reply prefix (request queues, DLQs)."""

    def url(self, name: str) -> str:
        return f"{self.endpoint}/{self.account}/{name}"


@dataclass
class Case:
    """One hostile message and the outcome it must have."""

    index: int
    family: str
    via: str
    body: str
    attributes: dict[str, Attribute]
    note: str
    expect: str
    reply_queue: str | None = None
    """Sender queue (name) the request validly names: an answer may land nowhere else."""
    request_id: Any = _NO_ID
    error_code: int | None = None
    reason: str | None = None
    """Expected `dmcp.dlq-reason` prefix."""
    also: frozenset[str] = frozenset()
    """Other acceptable outcomes (exactly one outcome in all)."""

    @property
    def conn(self) -> str | None:
        attribute = self.attributes.get(CONN)
        return attribute.text if attribute is not None else None

    @property
    def digest(self) -> str:
        return request_digest(self.body)

    @property
    def has_id(self) -> bool:
        return self.request_id is not _NO_ID

    def describe(self, width: int = 160) -> str:
        attributes = {
            k: (a.data_type, a.value[:60] if isinstance(a.value, str | bytes) else a.value)
            for k, a in self.attributes.items()
        }
        body = self.body if len(self.body) <= width else f"{self.body[:width]}… ({len(self.body)} chars)"
        expected = "/".join([self.expect, *sorted(self.also)])
        return (
            f"#{self.index} [{self.family}/{self.note}] via {self.via}, expected {expected}; "
            f"body {body!r}; attributes {attributes}"
        )


# ---------------------------------------------------------------------------------------------
# bodies


def _dump(rng: random.Random, value: Any) -> str:
    compact = rng.random() < 0.6
    return json.dumps(
        value, separators=(",", ":") if compact else (", ", ": "), ensure_ascii=rng.random() < 0.5
    )


def _meta(rng: random.Random, nonce: str, modern: bool | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"fuzz": nonce}
    if modern if modern is not None else rng.random() < 0.5:
        meta |= MODERN_META
    return meta


def _valid_call(rng: random.Random, nonce: str) -> tuple[str, dict[str, Any]]:
    """A request the example server can serve (method, params), with the nonce inside."""
    pick = rng.random()
    if pick < 0.30:
        method, params = "tools/call", {"name": "echo", "arguments": {"text": f"fuzz {nonce}"}}
    elif pick < 0.40:
        a = round(rng.uniform(-1e6, 1e6), 3)
        method, params = "tools/call", {"name": "add", "arguments": {"a": a, "b": rng.randint(-9, 9)}}
    elif pick < 0.44:
        method, params = "tools/call", {"name": "divide", "arguments": {"a": 1, "b": 0}}
    elif pick < 0.46:
        method, params = "tools/call", {"name": "take_ticket", "arguments": {}}
    elif pick < 0.50:
        method = "tools/call"
        params = {"name": "count_slowly", "arguments": {"steps": 2, "delay_s": 0.01}}
        params["_meta"] = _meta(rng, nonce) | {"progressToken": rng.choice([nonce, rng.randint(1, 10**6)])}
        return method, params
    elif pick < 0.58:
        method, params = "tools/list", {}
    elif pick < 0.66:
        method, params = "ping", {}
    elif pick < 0.72:
        method, params = "server/discover", {}
        params["_meta"] = _meta(rng, nonce, modern=True)
        return method, params
    elif pick < 0.78:
        method, params = "resources/read", {"uri": f"dmcp://example/greeting/{nonce}"}
    elif pick < 0.82:
        method, params = "resources/list", {}
    elif pick < 0.90:
        method, params = "prompts/get", {"name": "review_code", "arguments": {"code": f"x = '{nonce}'"}}
    elif pick < 0.95:
        method, params = "prompts/list", {}
    else:
        method = "initialize"
        params = {
            "protocolVersion": rng.choice(["2025-11-25", "2025-06-18", "2024-11-05", "1999-01-01"]),
            "capabilities": {},
            "clientInfo": {"name": "fuzz", "version": nonce},
        }
    params["_meta"] = _meta(rng, nonce)
    return method, params


_VALID_ID_DRAWS: Final = (
    "int",
    "int",
    "int",
    "negative",
    "zero",
    "big",
    "int64",
    "str",
    "str",
    "str",
    "empty",
    "unicode",
    "quotes",
    "long",
    "json-looking",
)


def _valid_id(rng: random.Random, nonce: str) -> int | str:
    kind = rng.choice(_VALID_ID_DRAWS)
    number = int(nonce.split("-")[1], 16)
    return {
        "int": number % 10**9,
        "negative": -(number % 10**6) - 1,
        "zero": 0,
        "big": 10**30 + number,
        "int64": rng.choice([2**63, -(2**63) - 1, 2**53 + 1]),
        "str": f"req-{nonce}",
        "empty": "",
        "unicode": f"ü-🙂-{nonce}-\u2028",
        "quotes": f"\"\\{nonce}'<>&",
        "long": f"{nonce}-" + "L" * 5000,
        "json-looking": rng.choice(['{"id": 1}', "null", "1", "true", "[]"]),
    }[kind]


ID_LITERALS: Final = (
    # (JSON text of the id, note); validity follows from MCP's rule (string or integer)
    ("null", "null"),
    ("true", "bool"),
    ("false", "bool"),
    ("1.5", "float"),
    ("1.0", "float-integral"),
    ("-0.0", "negative-zero-float"),
    ("1e3", "exponent"),
    ("1E400", "overflow-to-inf"),
    ("NaN", "nan"),
    ("-Infinity", "infinity"),
    ("[]", "array"),
    ("[1]", "array"),
    ('["a", 2]', "array"),
    ("{}", "object"),
    ('{"id": 1}', "object"),
    ("-0", "negative-zero-int"),
    ("12345678901234567890123456789", "huge-int"),
    ("-9223372036854775809", "below-int64"),
    ('"\\ud800"', "lone-surrogate-escape"),
    ('"a\\udfffb"', "lone-surrogate-escape"),
    ('"\\ud83d\\ude42"', "surrogate-pair-escape"),
    ('"a\\u0000b"', "nul-escape"),
    ('"\\u001f\\t\\n"', "control-escapes"),
    ('"   "', "blank-string"),
    ("007", "leading-zeros"),
    ("0x10", "hex"),
    ("'single'", "single-quoted"),
    ("undefined", "bare-word"),
)


def _with_id_literal(rng: random.Random, literal: str, method: str, params: dict[str, Any]) -> str:
    text = _dump(rng, {"jsonrpc": "2.0", "id": "__FUZZ_ID__", "method": method, "params": params})
    return text.replace('"__FUZZ_ID__"', literal, 1)


def _request(rng: random.Random, nonce: str, request_id: Any = _NO_ID) -> dict[str, Any]:
    method, params = _valid_call(rng, nonce)
    request: dict[str, Any] = {"jsonrpc": "2.0"}
    request["id"] = _valid_id(rng, nonce) if request_id is _NO_ID else request_id
    request |= {"method": method, "params": params}
    return request


def _nest(depth: int, leaf: Any, rng: random.Random) -> Any:
    value = leaf
    for _ in range(depth):
        value = [value] if rng.random() < 0.5 else {"d": value}
    return value


UNKNOWN_METHODS: Final = (
    "tools/nope",
    "nope",
    "",
    " ",
    "TOOLS/CALL",
    "tools/call/extra",
    "rpc.discover",
    "$/cancelRequest",
    "notifications/initialized",
    "notifications/cancelled",
    "sampling/createMessage",
    "elicitation/create",
    "roots/list",
    "tasks/get",
    "tasks/cancel",
    "tasks/list",
    "subscriptions/listen",
    "resources/subscribe",
    "resources/unsubscribe",
    "logging/setLevel",
    "completion/complete",
    "../../etc/passwd",
    "tools/list\u0000",
    "wérk/ü",
    "🙂",
    "\\ud800",
    "x" * 3000,
)


def _family_valid(rng: random.Random, nonce: str, via: str) -> tuple[str, str]:
    return _dump(rng, _request(rng, nonce)), "valid-request"


def _family_id_type(rng: random.Random, nonce: str, via: str) -> tuple[str, str]:
    method, params = _valid_call(rng, nonce)
    if via == QUEUE and rng.random() < 0.03:
        size = rng.choice([100_000, 300_000])  # answerable / too large for any reply
        text = _dump(rng, {"jsonrpc": "2.0", "id": f"{nonce}-" + "I" * size, "method": "ping", "params": {}})
        return text, f"id-string-{size}"
    literal, note = rng.choice(ID_LITERALS)
    return _with_id_literal(rng, literal, method, params), f"id-{note}"


_GARBAGE: Final = (
    ("doubled", lambda b: b + b),
    ("trailing-comma", lambda b: b[:-1] + ",}"),
    ("single-quotes", lambda b: b.replace('"', "'")),
    ("bom", lambda b: "\ufeff" + b),
    ("comment", lambda b: "// request\n" + b),
    ("python-literals", lambda b: b.replace("true", "True").replace("{}", "None") + " "),
    ("unclosed", lambda b: b[:-1]),
    ("extra-close", lambda b: b + "}"),
    ("xml", lambda b: f"<request>{b}</request>"),
    ("prefix-null", lambda b: "null " + b),
    ("urlencoded", lambda b: "body=" + b.replace(" ", "+")),
    ("base64ish", lambda b: hashlib.sha256(b.encode()).hexdigest() * 3),
    ("whitespace", lambda b: " \t\n " * (1 + len(b) % 7)),
)


def _family_truncated(rng: random.Random, nonce: str, via: str) -> tuple[str, str]:
    body = _dump(rng, _request(rng, nonce))
    if rng.random() < 0.6:
        cut = rng.randrange(1, len(body))
        return body[:cut], f"truncated-at-{cut}/{len(body)}"
    name, mutate = rng.choice(_GARBAGE)
    return mutate(body), name


def _family_body_type(rng: random.Random, nonce: str, via: str) -> tuple[str, str]:
    request = _request(rng, nonce)
    options = [
        ("[]", "empty-array"),
        (_dump(rng, [request]), "batch-of-one"),
        (_dump(rng, [request, _request(rng, nonce + "b")]), "batch"),
        (_dump(rng, f"string {nonce}"), "string"),
        (str(int(nonce.split("-")[1], 16)), "number"),
        ("null", "null"),
        ("true", "bool"),
        ("{}", "empty-object"),
        (_dump(rng, {"nonce": nonce}), "object-not-jsonrpc"),
        (_dump(rng, {"jsonrpc": "2.0"}), "only-jsonrpc"),
        (_dump(rng, {"jsonrpc": "2.0", "params": request["params"]}), "params-only"),
    ]
    return rng.choice(options)


def _family_field_type(rng: random.Random, nonce: str, via: str) -> tuple[str, str]:
    request = _request(rng, nonce)
    field_name = rng.choice(["jsonrpc", "jsonrpc", "method", "method", "params", "id-missing-method"])
    if field_name == "jsonrpc":
        value = rng.choice(["1.0", 2.0, None, "2.0 ", ["2.0"], "2", _NO_ID, 2])
    elif field_name == "method":
        value = rng.choice([5, None, [], {}, True, _NO_ID, ["tools/call"]])
    elif field_name == "params":
        value = rng.choice([[], "x", 5, True, [request["params"]], 1.5])
    else:
        field_name, value = "method", _NO_ID
    if rng.random() < 0.2:
        del request["id"]  # and no id either: nothing to answer
    if value is _NO_ID:
        request.pop(field_name, None)
        return _dump(rng, request), f"{field_name}-missing"
    request[field_name] = value
    return _dump(rng, request), f"{field_name}-{type(value).__name__}"


def _family_unknown_method(rng: random.Random, nonce: str, via: str) -> tuple[str, str]:
    method = rng.choice(UNKNOWN_METHODS)
    params: Any = {"_meta": _meta(rng, nonce)}
    if rng.random() < 0.3:
        params |= {"taskId": nonce, "uri": "dmcp://example/about", "level": "debug", "requestId": 1}
    request = {"jsonrpc": "2.0", "id": _valid_id(rng, nonce), "method": method, "params": params}
    text = _dump(rng, request)
    if method == "\\ud800":  # the escape itself, not the backslash: a lone surrogate in the method
        text = text.replace('"\\\\ud800"', '"\\ud800"')
    return text, f"method-{method[:20]!r}"


def _family_params_shape(rng: random.Random, nonce: str, via: str) -> tuple[str, str]:
    shapes: list[tuple[str, dict[str, Any]]] = [
        ("tools/call", {"name": 5}),
        ("tools/call", {"name": None}),
        ("tools/call", {"name": ["echo"]}),
        ("tools/call", {"arguments": {"text": "no name"}}),
        ("tools/call", {"name": ""}),
        ("tools/call", {"name": f"nope-{nonce}", "arguments": {}}),
        ("tools/call", {"name": "echo", "arguments": "text"}),
        ("tools/call", {"name": "echo", "arguments": []}),
        ("tools/call", {"name": "echo", "arguments": 5}),
        ("tools/call", {"name": "echo", "arguments": None}),
        ("tools/call", {"name": "echo", "arguments": {"text": 5}}),
        ("tools/call", {"name": "echo", "arguments": {"text": {"nested": [1, 2]}}}),
        ("tools/call", {"name": "echo", "arguments": {"text": "a", "unexpected": True}}),
        ("tools/call", {"name": "echo", "arguments": {}}),
        ("tools/call", {"name": "add", "arguments": {"a": "x", "b": "y"}}),
        ("tools/call", {"name": "add", "arguments": {"a": 1e308, "b": 1e308}}),
        ("tools/call", {"name": "add", "arguments": {"a": True, "b": None}}),
        ("tools/call", {"name": "divide", "arguments": {"a": 1}}),
        ("tools/call", {"name": "count_slowly", "arguments": {"steps": 0}}),
        ("tools/call", {"name": "count_slowly", "arguments": {"steps": "many"}}),
        ("tools/call", {"name": "count_slowly", "arguments": {"steps": 10**6, "delay_s": -1}}),
        ("resources/read", {"uri": 5}),
        ("resources/read", {"uri": "file:///etc/passwd"}),
        ("resources/read", {"uri": "dmcp://example/greeting/" + "x" * 5000}),
        ("resources/read", {}),
        ("prompts/get", {}),
        ("prompts/get", {"name": "review_code", "arguments": {"code": 5}}),
        ("prompts/get", {"name": "review_code", "arguments": "code"}),
        ("initialize", {"protocolVersion": 5}),
        ("initialize", {"protocolVersion": "2025-11-25", "capabilities": "all"}),
        ("initialize", {}),
        ("tools/list", {"cursor": 5}),
        ("tools/list", {"cursor": f"nope-{nonce}"}),
        ("resources/templates/list", {"cursor": {}}),
        ("completion/complete", {"ref": 5}),
    ]
    method, params = rng.choice(shapes)
    params = dict(params)
    meta_shape = rng.random()
    if meta_shape < 0.55:
        params["_meta"] = _meta(rng, nonce)
    elif meta_shape < 0.65:
        params["_meta"] = rng.choice(["x", 5, [], None])
        params["fuzz"] = nonce
    elif meta_shape < 0.8:
        bad = rng.choice(["9999-99-99", 5, None, "2024-11-05", ""])
        params["_meta"] = {
            "io.modelcontextprotocol/protocolVersion": bad,
            "io.modelcontextprotocol/clientCapabilities": rng.choice([{}, "x", None]),
            "fuzz": nonce,
        }
    elif meta_shape < 0.9:
        params["_meta"] = _meta(rng, nonce) | {"progressToken": rng.choice([{"a": 1}, [], True, 1.5, None])}
    else:
        params["_meta"] = {"io.modelcontextprotocol/protocolVersion": "2026-07-28", "fuzz": nonce}
    request = {"jsonrpc": "2.0", "id": _valid_id(rng, nonce), "method": method, "params": params}
    return _dump(rng, request), f"{method}-{sorted(k for k in params if k != '_meta')}"


def _family_notification(rng: random.Random, nonce: str, via: str) -> tuple[str, str]:
    method = rng.choice(
        [
            "notifications/initialized",
            "notifications/cancelled",
            "notifications/progress",
            "notifications/roots/list_changed",
            f"notifications/evil-{nonce}",
            "tools/call",
            "initialize",
            "ping",
        ]
    )
    params: Any = {"_meta": {"fuzz": nonce}}
    if method == "notifications/cancelled":
        params["requestId"] = rng.choice([1, "x", {"x": 1}, None])
    if method == "notifications/progress":
        params |= {"progressToken": rng.choice([1, {"a": 1}]), "progress": rng.choice([1, "x"])}
    if method == "tools/call":
        params |= {"name": "take_ticket", "arguments": {}}
    note = "notification"
    if rng.random() < 0.15:
        params, note = rng.choice([[], "x", 5, [nonce]]), "notification-params-not-object"
    message: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "params": params}
    if rng.random() < 0.1:
        message["result"] = {"extra": nonce}
        note += "+result"
    if rng.random() < 0.1:
        message.pop("jsonrpc")
        note += "-jsonrpc"
    return _dump(rng, message), f"{note}-{method[:30]}"


def _family_deep(rng: random.Random, nonce: str, via: str) -> tuple[str, str]:
    depth = rng.choice([10, 100, 250, 255, 256, 300, 450, 600, 5_000, 20_000])
    where = rng.choice(["meta", "arguments", "unknown-param", "id-object", "params"])
    request = _request(rng, nonce)
    deep = _nest(depth, nonce, rng)
    # Built as text: json.dumps itself cannot serialise 20 000 levels.
    placeholder = '"__FUZZ_DEEP__"'
    if where == "meta":
        request["params"]["_meta"]["deep"] = "__FUZZ_DEEP__"
    elif where == "arguments":
        request.update(method="tools/call", params={"name": "echo", "arguments": {"text": nonce}})
        request["params"]["arguments"]["deep"] = "__FUZZ_DEEP__"
    elif where == "unknown-param":
        request["params"]["deep"] = "__FUZZ_DEEP__"
    elif where == "id-object":
        request["id"] = "__FUZZ_DEEP__"
    else:
        request["params"] = "__FUZZ_DEEP__"
    deep_text = _deep_text(depth, nonce, rng) if depth > 900 else json.dumps(deep)
    return json.dumps(request).replace(placeholder, deep_text, 1), f"depth-{depth}-in-{where}"


def _deep_text(depth: int, nonce: str, rng: random.Random) -> str:
    opens, closes = [], []
    for _ in range(depth):
        if rng.random() < 0.5:
            opens.append("[")
            closes.append("]")
        else:
            opens.append('{"d":')
            closes.append("}")
    return "".join(opens) + json.dumps(nonce) + "".join(reversed(closes))


def _family_huge(rng: random.Random, nonce: str, via: str) -> tuple[str, str]:
    kind = rng.choice(
        ["echo-100k", "echo-150k", "wide-array", "many-keys", "long-method", "long-string-param"]
    )
    request = _request(rng, nonce)
    if kind.startswith("echo"):
        size = 100_000 if kind == "echo-100k" else 150_000
        request.update(
            method="tools/call",
            params={"name": "echo", "arguments": {"text": nonce + "E" * size}, "_meta": _meta(rng, nonce)},
        )
    elif kind == "wide-array":
        request["params"]["wide"] = list(range(40_000))
    elif kind == "many-keys":
        request["params"]["keys"] = {f"k{i}": i for i in range(8_000)}
    elif kind == "long-method":
        request["method"] = f"{nonce}/" + "m" * 100_000
    else:
        request["params"]["blob"] = "B" * 200_000
    return json.dumps(request), kind


def _family_client_response(rng: random.Random, nonce: str, via: str) -> tuple[str, str]:
    request_id = _valid_id(rng, nonce)
    options = [
        ({"jsonrpc": "2.0", "id": request_id, "result": {"fuzz": nonce}}, "result"),
        ({"jsonrpc": "2.0", "id": request_id, "error": {"code": -1, "message": nonce}}, "error"),
        ({"jsonrpc": "2.0", "id": request_id, "result": {"content": []}, "error": None}, "result+error-null"),
        ({"jsonrpc": "2.0", "id": request_id, "result": nonce}, "result-not-object"),
        ({"jsonrpc": "2.0", "id": request_id, "error": nonce}, "error-not-object"),
        ({"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": nonce}}, "error-id-null"),
        ({"jsonrpc": "2.0", "error": {"code": -32700, "message": nonce}}, "error-no-id"),
        ({"jsonrpc": "2.0", "result": {"fuzz": nonce}}, "result-no-id"),
    ]
    message, note = rng.choice(options)
    return _dump(rng, message), f"client-{note}"


def _family_escapes(rng: random.Random, nonce: str, via: str) -> tuple[str, str]:
    options = [
        ("echo", '"\\ud800"', "echo-lone-surrogate"),
        ("echo", '"\\udfff tail"', "echo-lone-low-surrogate"),
        ("echo", '"\\u0000\\u0001\\u001f"', "echo-control-escapes"),
        ("echo", '"\\ud83d\\ude42 \\u2028 \\u202e"', "echo-pair-and-separators"),
        ("echo", json.dumps("🙂 ü " + "\u202e" + "\u2028", ensure_ascii=False), "echo-raw-unicode"),
        ("greeting", '"\\ud800"', "resource-lone-surrogate"),
        ("prompt", '"\\udbff"', "prompt-lone-surrogate"),
    ]
    target, literal, note = rng.choice(options)
    request_id = _valid_id(rng, nonce)
    if target == "echo":
        params: dict[str, Any] = {"name": "echo", "arguments": {"text": "__FUZZ_TEXT__"}}
        method = "tools/call"
    elif target == "greeting":
        params, method = {"uri": "dmcp://example/greeting/__FUZZ_RAW__"}, "resources/read"
    else:
        params = {"name": "review_code", "arguments": {"code": "__FUZZ_TEXT__"}}
        method = "prompts/get"
    params["_meta"] = _meta(rng, nonce)
    text = json.dumps({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params})
    text = text.replace('"__FUZZ_TEXT__"', literal, 1).replace("__FUZZ_RAW__", literal.strip('"'), 1)
    return text, note


def _family_duplicate_keys(rng: random.Random, nonce: str, via: str) -> tuple[str, str]:
    method, params = _valid_call(rng, nonce)
    params_text = json.dumps(params)
    options = [
        (f'{{"jsonrpc":"2.0","id":1,"method":"{method}","params":{params_text},"id":null}}', "id-then-null"),
        (f'{{"jsonrpc":"2.0","id":null,"method":"{method}","params":{params_text},"id":7}}', "null-then-id"),
        (
            f'{{"jsonrpc":"2.0","id":"{nonce}","id":{{"a":1}},"method":"{method}","params":{params_text}}}',
            "id-then-object",
        ),
        (
            f'{{"jsonrpc":"2.0","id":3,"method":"{method}","method":5,"params":{params_text}}}',
            "method-then-number",
        ),
        (
            f'{{"jsonrpc":"1.0","jsonrpc":"2.0","id":"{nonce}","method":"{method}","params":{params_text}}}',
            "jsonrpc-twice",
        ),
    ]
    return rng.choice(options)


FAMILIES: Final = (
    # (name, weight, direct-to-queue only)
    ("valid", 12, False),
    ("id-type", 16, False),
    ("truncated", 11, False),
    ("body-type", 5, False),
    ("field-type", 10, False),
    ("unknown-method", 8, False),
    ("params-shape", 11, False),
    ("notification", 14, False),
    ("deep", 5, False),
    ("huge", 2, True),
    ("client-response", 4, False),
    ("escapes", 4, False),
    ("duplicate-keys", 2, False),
)

_FAMILY_FUNCTIONS: Final = {
    "valid": _family_valid,
    "id-type": _family_id_type,
    "truncated": _family_truncated,
    "body-type": _family_body_type,
    "field-type": _family_field_type,
    "unknown-method": _family_unknown_method,
    "params-shape": _family_params_shape,
    "notification": _family_notification,
    "deep": _family_deep,
    "huge": _family_huge,
    "client-response": _family_client_response,
    "escapes": _family_escapes,
    "duplicate-keys": _family_duplicate_keys,
}


# ---------------------------------------------------------------------------------------------
# attributes


def _reply_variant(
    rng: random.Random, layout: Layout, nonce: str, via: str
) -> tuple[Attribute | None, str, str, str | None]:
    """(reply-to attribute or None, reply state, note, sender queue it validly names).

    States: ok, missing, forbidden, nonexistent (under the prefix, not a per-connection queue),
    gone (a per-connection queue that does not exist). A bystander is only ever named in a form
    the worker must refuse."""
    bystander = rng.choice(layout.bystanders)
    sender = rng.choice(layout.senders)
    host = layout.endpoint.split("://", 1)[1]
    forbidden = [
        (f"{layout.endpoint}/210987654321/{bystander}", "other-account"),
        (f"{layout.endpoint}/000000000000/{bystander}", "other-account"),
        (f"{layout.endpoint}/queue/eu-west-1/{layout.account}/{bystander}", "other-region"),
        (f"https://sqs.us-east-1.amazonaws.com/{layout.account}/{bystander}", "real-aws-host"),
        (f"http://localhost:{host.rsplit(':', 1)[1]}/{layout.account}/{bystander}", "other-host"),
        (f"http://127.0.0.1:1/{layout.account}/{bystander}", "other-port"),
        (f"http://evil@{host}/{layout.account}/{bystander}", "userinfo"),
        (f"http://{host}@evil.example/{layout.account}/{bystander}", "userinfo-host"),
        (f"https://{host}/{layout.account}/{bystander}", "other-scheme"),
        (layout.url(rng.choice(layout.not_reply_queues)), "outside-prefix-existing"),
        (layout.url(f"other-{nonce}"), "outside-prefix"),
        (layout.url(bystander.upper()), "prefix-case"),
        (layout.url(layout.reply_prefix.rstrip("-") + f"x{nonce}"), "prefix-lookalike"),
        (layout.url(f"{layout.reply_prefix}{'n' * 80}"), "name-too-long"),
        (layout.url(f"{layout.reply_prefix}a.b"), "name-dot"),
        (layout.url(f"{layout.reply_prefix}%62ystander"), "percent-encoded"),
        (layout.url(f"{layout.reply_prefix}ü"), "name-unicode"),
        (f"{layout.endpoint}/{layout.account}/../{layout.account}/{bystander}", "dot-segments"),
        (layout.url(bystander) + "/", "trailing-slash"),
        (layout.url(bystander) + "?Action=SendMessage", "query"),
        (layout.url(bystander) + "#frag", "fragment"),
        (layout.url(bystander) + " ", "trailing-space"),
        (layout.url(bystander).replace("/", "/\t", 1), "tab"),
        ("not a url", "not-a-url"),
        (bystander, "bare-name"),
        (f"arn:aws:sqs:{layout.region}:{layout.account}:{bystander}", "arn"),
        ("http://", "scheme-only"),
        (f"//{host}/{layout.account}/{bystander}", "no-scheme"),
        (f"{layout.endpoint}/{layout.account}/" + "y" * 3000, "long-url"),
        (f"{layout.endpoint}/{layout.account}", "no-name"),
    ]
    draw = rng.random()
    if draw < 0.12:
        return None, "missing", "reply-missing", None
    if draw < 0.62:
        url, note = rng.choice(forbidden)
        return s(url), "forbidden", f"reply-{note}", None
    if draw < 0.74:
        url = layout.url(f"{layout.reply_prefix}fuzz-nonexistent-{nonce}")
        return s(url), "nonexistent", "reply-nonexistent", None
    if draw < 0.84:
        url = layout.url(f"{layout.connection_prefix}gone{nonce}")
        return s(url), "gone", "reply-per-connection-gone", None
    if draw < 0.92:
        url = f"{layout.endpoint}/queue/{layout.region}/{layout.account}/{sender}"
        return s(url), "ok", "reply-localstack-path", sender
    if via == QUEUE:
        return Attribute("Binary", layout.url(sender).encode()), "missing", "reply-binary", None
    return Attribute("String.url", layout.url(sender)), "ok", "reply-custom-type", sender


CONN_VARIANTS: Final = ("long", "unicode", "spaces", "json", "number-type", "binary", "missing", "null-word")


def _server_for_topic(rng: random.Random) -> tuple[Attribute | None, str]:
    options: list[tuple[Attribute | None, str]] = [
        (s("example"), "example"),
        (s("example"), "example"),
        (s("example"), "example"),
        (None, "missing"),
        (s("nope"), "unknown"),
        (s("EXAMPLE"), "case"),
        (s("unrouted"), "catch-all-name"),
        (Attribute("Number", "5"), "number"),
        (Attribute("String.Array", '["example", "nope"]'), "array-served+unknown"),
        (Attribute("String.Array", '["example"]'), "array-served"),
        (Attribute("String.Array", '["example", "example"]'), "array-served-twice"),
        (Attribute("String.Array", '["nope"]'), "array-unknown"),
        (Attribute("String.Array", '["nope", "zzz"]'), "array-unknowns"),
        (Attribute("String.Array", "[]"), "array-empty"),
        (Attribute("String.Array", '[1, "example"]'), "array-number+served"),
        (Attribute("String.Array", '["example", null]'), "array-served+null"),
    ]
    return rng.choice(options)


def _server_for_queue(rng: random.Random) -> tuple[Attribute | None, str]:
    options: list[tuple[Attribute | None, str]] = [
        (None, "missing"),
        (s("nope"), "unknown"),
        (s("unrouted"), "catch-all-name"),
        (Attribute("Number", "7"), "number"),
        (Attribute("String.custom", "example"), "custom-type"),
        (Attribute("Binary", b"example"), "binary"),
        (Attribute("String.Array", '["example"]'), "array-served"),
        (Attribute("String.Array", '["example", "nope"]'), "array-served+unknown"),
        (Attribute("String.Array", '["nope"]'), "array-unknown"),
        (Attribute("String.Array", "[]"), "array-empty"),
        (Attribute("String.Array", "example"), "array-not-json"),
        (Attribute("String.Array", '[1, "example"]'), "array-number+served"),
    ]
    return rng.choice(options)


def _attributes(
    rng: random.Random, layout: Layout, nonce: str, via: str, body: str
) -> tuple[dict[str, Attribute], str, str | None, list[str]]:
    """The case's attributes, its reply state, the sender queue an answer must reach, and notes."""
    sender = rng.choice(layout.senders)
    attributes: dict[str, Attribute] = {
        VERSION: s("1"),
        SERVER: s("example"),
        METHOD: s("tools/call"),
        REPLY_TO: s(layout.url(sender)),
        CONN: s(f"conn-{nonce}"),
    }
    if rng.random() < 0.5:
        try:
            decoded = json.loads(body)
            method = decoded.get("method") if isinstance(decoded, dict) else None
        except (ValueError, RecursionError):
            method = None
        if isinstance(method, str) and 0 < len(method) < 200 and method.isprintable():
            attributes[METHOD] = s(method)
        else:
            del attributes[METHOD]
    notes: list[str] = []
    reply_state: str = "ok"
    if via == TOPIC:
        server, note = _server_for_topic(rng)
        notes.append(f"server-{note}")
        if server is None:
            del attributes[SERVER]
        else:
            attributes[SERVER] = server
    mutations = rng.random()
    count = 0 if mutations < 0.45 else 1 if mutations < 0.85 else 2
    for _ in range(count):
        kind = rng.choice(
            ["version", "reply", "reply", "conn", "server", "server", "extra", "extra", "names"]
        )
        if kind == "version":
            value, note = rng.choice(
                [
                    (None, "missing"),
                    (s("2"), "2"),
                    (s("0"), "0"),
                    (s("1.0"), "1.0"),
                    (s("01"), "01"),
                    (s(" 1"), "space"),
                    (s("v1"), "v1"),
                    (Attribute("Number", "1"), "number-1"),
                    (Attribute("Number", "1.0"), "number-1.0"),
                    (Attribute("Binary", b"1"), "binary"),
                    (s("1" * 300), "long"),
                ]
            )
            if isinstance(value, Attribute) and value.data_type == "Binary" and via == TOPIC:
                value, note = s("2"), "2"
            if value is None:
                attributes.pop(VERSION, None)
            else:
                attributes[VERSION] = value
            notes.append(f"version-{note}")
        elif kind == "reply":
            value, reply_state, note, named = _reply_variant(rng, layout, nonce, via)
            sender = named or sender
            if value is None:
                attributes.pop(REPLY_TO, None)
            else:
                attributes[REPLY_TO] = value
            notes.append(note)
        elif kind == "conn":
            variant = rng.choice(CONN_VARIANTS)
            if variant == "binary" and via == TOPIC:
                variant = "missing"
            if variant == "missing":
                attributes.pop(CONN, None)
            else:
                attributes[CONN] = {
                    "long": s(f"conn-{nonce}-" + "c" * 2000),
                    "unicode": s(f"conn-ü-🙂-{nonce}"),
                    "spaces": s(f"  conn {nonce}  "),
                    "json": s(json.dumps({"conn": nonce})),
                    "number-type": Attribute("Number", str(int(nonce.split("-")[1], 16))),
                    "binary": Attribute("Binary", nonce.encode()),
                    "null-word": s(f"null{nonce}"),
                }[variant]
            notes.append(f"conn-{variant}")
        elif kind == "server" and via == QUEUE:
            server, note = _server_for_queue(rng)
            if server is None:
                attributes.pop(SERVER, None)
            else:
                attributes[SERVER] = server
            notes.append(f"server-{note}")
        elif kind == "extra":
            name, value, note = rng.choice(
                [
                    (DIGEST, s("0" * 64), "forged-digest"),
                    (REASON, s(FORGED_REASON), "forged-dlq-reason"),
                    (PAYLOAD, s(f"s3://dmcp-payloads/{nonce}"), "payload"),
                    (METHOD, s("tools/list"), "method-mismatch"),
                    (NAME, s("x" * 500), "long-name"),
                    (PROTOCOL, s(rng.choice(["1999-01-01", "2026-07-28", "x" * 300, "latest"])), "protocol"),
                    ("x-evil", s("<script>"), "unknown-attribute"),
                    ("dmcp.reply-to-2", s(layout.url(rng.choice(layout.bystanders))), "second-reply-to"),
                    ("mcp.server.override", s("unrouted"), "server-lookalike"),
                ]
            )
            attributes[name] = value
            notes.append(f"extra-{note}")
        elif kind == "names":
            which = rng.choice([VERSION, REPLY_TO, CONN])
            variant = rng.choice(["upper", "title", "underscore"])
            if which in attributes:
                value = attributes.pop(which)
                renamed = {
                    "upper": which.upper(),
                    "title": which.title(),
                    "underscore": which.replace(".", "_"),
                }[variant]
                attributes[renamed] = value
                if which == REPLY_TO:
                    reply_state = "missing"
            notes.append(f"name-{which}-{variant}")
    while len(attributes) > 10:  # SQS allows 10 attributes
        attributes.pop(next(k for k in reversed(list(attributes)) if k not in (VERSION, REPLY_TO, CONN)))
    if REPLY_TO not in attributes:
        reply_state = "missing"
    return attributes, reply_state, sender if reply_state == "ok" else None, notes or ["clean"]


# ---------------------------------------------------------------------------------------------
# the oracle


def _is_id(value: Any) -> bool:
    return isinstance(value, str | int) and not isinstance(value, bool)


def _id_answerable(request_id: Any) -> bool:
    """Whether a JSON-RPC error reply can carry this id (UTF-8 text within SNS/SQS's limit)."""
    try:
        text = json.dumps(request_id, ensure_ascii=False)
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return len(text.encode()) < MAX_REPLY_BYTES - 2_000


def predict(
    via: str, body: str, attributes: dict[str, Attribute], reply_state: str
) -> tuple[str, dict[str, Any]]:
    """The outcome a case must have: (ANSWER | DLQ | NOTIFICATION | GONE, details)."""

    def text(name: str) -> str | None:
        attribute = attributes.get(name)
        return attribute.text if attribute is not None else None

    if reply_state in ("missing", "forbidden"):
        return DLQ, {"reason": "forbidden-reply-address"}
    if not text(CONN):
        return DLQ, {"reason": "missing-attribute"}
    if text(VERSION) != "1":
        return DLQ, {"reason": "unsupported-wire-version"}
    if text(PAYLOAD) is not None:
        return DLQ, {"reason": "malformed-body"}
    try:
        decoded = json.loads(body)
    except (ValueError, RecursionError):
        return DLQ, {"reason": "malformed-body"}
    if isinstance(decoded, dict) and "id" in decoded and not _is_id(decoded["id"]):
        return DLQ, {"reason": "malformed-body"}
    request_id = decoded.get("id", _NO_ID) if isinstance(decoded, dict) else _NO_ID
    try:
        message = jsonrpc_message_adapter.validate_python(decoded)
    except (ValidationError, RecursionError):
        if request_id is _NO_ID:
            return DLQ, {"reason": "malformed-body"}
        return _answered(request_id, INVALID_REQUEST, reply_state)
    if isinstance(message, JSONRPCResponse | JSONRPCError):
        return DLQ, {"reason": "wire-error"}
    if isinstance(message, JSONRPCNotification):
        return NOTIFICATION, {}
    return _answered(request_id, _routing_error(via, attributes.get(SERVER)), reply_state)


def _routing_error(via: str, server: Attribute | None) -> int | None:
    """The error code a request must get from routing alone, if any (None: served normally)."""
    if via == QUEUE:
        if server is None or server.data_type in ("String", "Binary"):
            return None
        return INVALID_REQUEST  # `mcp.server` is not one String: answered with an error by its one worker
    if server is None or server.data_type == "String":
        return None if server is not None and server.value == "example" else METHOD_NOT_FOUND
    return INVALID_REQUEST


def _answered(request_id: Any, error_code: int | None, reply_state: str) -> tuple[str, dict[str, Any]]:
    if not _id_answerable(request_id):
        return DLQ, {"reason": "unanswerable", "request_id": request_id}
    if reply_state == "nonexistent":
        return DLQ, {"reason": "reply-undeliverable"}
    if reply_state == "gone":
        return GONE, {}
    return ANSWER, {"request_id": request_id, "error_code": error_code}


# ---------------------------------------------------------------------------------------------
# generation


def generate(layout: Layout, *, count: int = COUNT, seed: int = SEED) -> list[Case]:
    """`count` hostile cases, the same for the same seed (see the module docstring)."""
    rng = random.Random(seed)
    names = [f[0] for f in FAMILIES]
    weights = [f[1] for f in FAMILIES]
    direct_only = {f[0] for f in FAMILIES if f[2]}
    seen: set[str] = set()
    cases: list[Case] = []
    for index in range(count):
        via = TOPIC if rng.random() < TOPIC_SHARE else QUEUE
        nonce = f"{index:04d}-{rng.getrandbits(40):010x}"
        family = rng.choices(names, weights)[0]
        if via == TOPIC and family in direct_only:
            family = "valid"
        body, body_note = _FAMILY_FUNCTIONS[family](rng, nonce, via)
        while body in seen:  # keep every body unique: replies are matched by its digest
            body += " "
        seen.add(body)
        attributes, reply_state, sender, notes = _attributes(rng, layout, nonce, via, body)
        expect, details = predict(via, body, attributes, reply_state)
        case = Case(
            index=index,
            family=family,
            via=via,
            body=body,
            attributes=attributes,
            note="; ".join([body_note, *notes]),
            expect=expect,
            reply_queue=sender,
            request_id=details.get("request_id", _NO_ID),
            error_code=details.get("error_code"),
            reason=details.get("reason"),
        )
        if expect == DLQ and details.get("reason") == "unanswerable":
            # A lone surrogate can travel as a JSON escape: answering with it escaped is fine too.
            case.also = frozenset({ANSWER})
        cases.append(case)
    return cases


def answer_id_matches(expected: Any, actual: Any) -> bool:
    """Same id, same JSON type (1 is not "1", and never True)."""
    if isinstance(actual, bool) or type(actual) is not type(expected):
        return False
    return bool(actual == expected)
