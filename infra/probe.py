"""Run the Lambda handlers once and print the top-level modules they imported (JSON).

Run by `infra.bundling` in a subprocess, in an environment where replies can go nowhere
(the SQS endpoint is a closed loopback port), so that serving a request imports everything a
real invocation imports. Usage: `python -m infra.probe HANDLER [HANDLER...]`.
"""

from __future__ import annotations

import importlib
import json
import sys
from typing import Any

_QUEUE_ARN = "arn:aws:sqs:us-east-1:123456789012:dmcp-probe-requests"
_REPLY_TO = "http://127.0.0.1:9/123456789012/dmcp-probe-reply-probe"
_REQUESTS: list[dict[str, Any]] = [
    {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "probe", "version": "0"},
        },
    },
    {"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}},
    {
        "jsonrpc": "2.0",
        "id": 3,
        "method": "tools/call",
        "params": {"name": "echo", "arguments": {"text": "x"}},
    },
    {"jsonrpc": "2.0", "id": 4, "method": "resources/list", "params": {}},
    {"jsonrpc": "2.0", "id": 5, "method": "prompts/list", "params": {}},
]


def _record(index: int, body: dict[str, Any]) -> dict[str, Any]:
    attributes = {
        "dmcp.version": "1",
        "dmcp.reply-to": _REPLY_TO,
        "dmcp.conn": "0" * 32,
        "mcp.method": body["method"],
    }
    return {
        "messageId": f"probe-{index}",
        "receiptHandle": "probe",
        "body": json.dumps(body),
        "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "0"},
        "messageAttributes": {k: {"stringValue": v, "dataType": "String"} for k, v in attributes.items()},
        "md5OfBody": "",
        "eventSource": "aws:sqs",
        "eventSourceARN": _QUEUE_ARN,
        "awsRegion": "us-east-1",
    }


def main(handlers: list[str]) -> None:
    event = {"Records": [_record(i, body) for i, body in enumerate(_REQUESTS)]}
    for dotted in handlers:
        module_name, _, attribute = dotted.rpartition(".")
        handler = getattr(importlib.import_module(module_name), attribute)
        try:
            handler(event, None)
        except Exception as exc:  # every record fails to reply; that is expected here
            print(f"probe: {dotted}: {type(exc).__name__}: {exc}", file=sys.stderr)
    _import_what_loads_later()
    print(json.dumps(sorted({name.split(".")[0] for name in sys.modules})))


def _import_what_loads_later() -> None:
    """The worker imports some parts only when a request first needs them (the ledger for a tool
    that must run once, the Tasks extension's runner where a deployment has a task table): import
    them here too, so that pruning keeps what they need."""
    from dmcp_aws.idempotency import RequestLedger

    _ = RequestLedger("dmcp-probe-idempotency", function_name="probe").store
    importlib.import_module("dmcp_aws.tasks.runner")


if __name__ == "__main__":
    main(sys.argv[1:])
