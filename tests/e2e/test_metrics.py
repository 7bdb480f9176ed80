"""The Lambda entry point's metrics: one count per record outcome, in CloudWatch's embedded format."""

from __future__ import annotations

import json
from collections import Counter

import anyio
import pytest
from mcp import Client

from dmcp_aws.client import sqs_client_transport
from dmcp_aws.local.stack import RunningStack

from .raw import make_reply_queue, new_conn, request_attributes, send

pytestmark = pytest.mark.anyio


def emitted(output: str, service: str) -> Counter[str]:
    """Sum the EMF metrics printed for `service`."""
    totals: Counter[str] = Counter()
    for line in output.splitlines():
        if not line.startswith('{"_aws"'):
            continue
        document = json.loads(line)
        [directive] = document["_aws"]["CloudWatchMetrics"]
        assert directive["Namespace"] == "dMCP"
        if document.get("service") != service:
            continue
        for metric in directive["Metrics"]:
            value = document[metric["Name"]]
            totals[metric["Name"]] += int(sum(value) if isinstance(value, list) else value)
    return totals


async def test_outcomes_are_counted(
    stack: RunningStack,
    sqs,  # type: ignore[no-untyped-def]
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    capfd.readouterr()
    async with Client(
        sqs_client_transport(stack.topic_target("example"), **stack.client_options())
    ) as client:
        await client.call_tool("echo", {"text": "counted"})
        await client.call_tool("no_such_tool", {})
    requests = stack.queue_url(stack.worker("example").request_queue)
    await send(
        sqs, requests, "{poison", request_attributes(stack, await make_reply_queue(sqs, stack), new_conn())
    )

    totals: Counter[str] = Counter()
    with anyio.fail_after(20):
        while totals["DeadLettered"] < 1:
            await anyio.sleep(0.2)
            totals += emitted(capfd.readouterr().out, "dmcp-example")
    # server/discover, tools/list (the client reads the tools' output schemas), two tools/call —
    # one with a tool error, which is still an answered request.
    assert totals["Answered"] == 4, totals
    assert totals["DeadLettered"] == 1, totals
    assert totals["FailedRecords"] == 0
