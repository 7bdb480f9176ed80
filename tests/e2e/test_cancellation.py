"""Cancellation across processes (issue 10, item 3): `dmcp worker` runs each execution
environment as its own process, so a `notifications/cancelled` is received by another process
than the one running the request; it must still stop the handler (through the ledger), and a
request cancelled before any worker took it must never run."""

from __future__ import annotations

import itertools
import json
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp_types import JSONRPCNotification, JSONRPCRequest

from dmcp_aws.client import QueueTarget, sqs_client_transport
from dmcp_aws.deployment import Deployment
from dmcp_aws.local.stack import RunningStack
from dmcp_aws.wire import WireMessage, encode_request, request_digest, to_sqs_attributes

from .raw import new_conn
from .second_deployment import provision_deployment, start_worker

pytestmark = pytest.mark.anyio

LINGERING = '''
from pathlib import Path

import anyio
from mcp.server.mcpserver import MCPServer

from dmcp_aws.lambda_handler import make_lambda_handler

mcp = MCPServer("lingering")
EVENTS = Path(__file__).parent / "events"


def record(event: str) -> None:
    with EVENTS.open("a") as events:
        events.write(event + "\\n")


@mcp.tool()
async def linger(tag: str, seconds: float = 25.0) -> str:
    """Run for `seconds` unless cancelled, recording how it ended."""
    record(f"started {tag}")
    try:
        await anyio.sleep(seconds)
    except anyio.get_cancelled_exc_class():
        record(f"cancelled {tag}")
        raise
    record(f"finished {tag}")
    return "done"


handler = make_lambda_handler(mcp)
'''

DESCRIPTION = {
    "name": "canceldep",
    "servers": [
        {"name": "lingering", "handler": "lingering_server.handler", "timeout_s": 30, "max_concurrency": 2}
    ],
}


MODERN_META = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientCapabilities": {},
}


def events(directory: Path) -> list[str]:
    path = directory / "events"
    return path.read_text().splitlines() if path.exists() else []


async def wait_for_event(directory: Path, event: str, within_s: float) -> None:
    with anyio.fail_after(within_s):
        while event not in events(directory):
            await anyio.sleep(0.1)


_deployments = itertools.count(1)


@pytest.fixture
async def lingering(stack: RunningStack, tmp_path: Path) -> AsyncIterator[tuple[Deployment, str, Path]]:
    """A deployment of the `lingering` server, its request queue and its code directory, served
    by a `dmcp worker` (process containers)."""
    (tmp_path / "lingering_server.py").write_text(LINGERING)
    description = DESCRIPTION | {"name": f"canceldep{next(_deployments)}"}
    deployment = Deployment.parse(description)
    created = await provision_deployment(stack, description)
    worker: subprocess.Popen[str] = start_worker(stack, description, tmp_path, "lingering")
    try:
        yield deployment, created.queue_urls[f"{deployment.name}-lingering-requests"], tmp_path
    finally:
        worker.terminate()
        worker.communicate(timeout=20)


async def test_a_cancellation_another_process_received_stops_the_handler(
    stack: RunningStack, lingering: tuple[Deployment, str, Path]
) -> None:
    deployment, queue_url, directory = lingering
    transport = sqs_client_transport(
        QueueTarget(queue_url, "lingering"),
        session=stack.session(),
        endpoint_url=stack.endpoint_url,
        reply_prefix=deployment.connection_queue_prefix,
    )
    async with Client(transport, mode="legacy") as client:  # type: ignore[arg-type]
        async with anyio.create_task_group() as tg:
            tg.start_soon(client.call_tool, "linger", {"tag": "far"})
            await wait_for_event(directory, "started far", within_s=30)
            tg.cancel_scope.cancel()
        await wait_for_event(directory, "cancelled far", within_s=8)
    assert events(directory) == ["started far", "cancelled far"]


async def test_a_request_cancelled_before_it_starts_never_runs(
    stack: RunningStack, lingering: tuple[Deployment, str, Path]
) -> None:
    deployment, queue_url, directory = lingering
    session = stack.session()
    async with session.client("sqs", endpoint_url=stack.endpoint_url) as sqs:
        reply = (await sqs.create_queue(QueueName=f"{deployment.reply_prefix}early"))["QueueUrl"]
        conn = new_conn()
        # First a call that shows the worker is polling (a cold worker could otherwise take the
        # request and its cancellation in one batch, once the request's delay is over).
        warm = {"name": "linger", "arguments": {"tag": "warm", "seconds": 0}, "_meta": MODERN_META}
        warm_up = encode_request(
            JSONRPCRequest(jsonrpc="2.0", id=6, method="tools/call", params=warm),
            server="lingering",
            reply_to=reply,
            conn=conn,
        )
        await _send(sqs, queue_url, warm_up)
        with anyio.fail_after(60):
            while not (
                warmed := (await sqs.receive_message(QueueUrl=reply, WaitTimeSeconds=1)).get("Messages")
            ):
                pass
        await sqs.delete_message(QueueUrl=reply, ReceiptHandle=warmed[0]["ReceiptHandle"])
        call = {"name": "linger", "arguments": {"tag": "early", "seconds": 1}, "_meta": MODERN_META}
        request = encode_request(
            JSONRPCRequest(jsonrpc="2.0", id=7, method="tools/call", params=call),
            server="lingering",
            reply_to=reply,
            conn=conn,
        )
        cancel = encode_request(
            JSONRPCNotification(
                jsonrpc="2.0", method="notifications/cancelled", params={"requestId": 7, "reason": "not now"}
            ),
            server="lingering",
            reply_to=reply,
            conn=conn,
            concerns=request_digest(request.body),
        )
        # The request is held back by SQS for 4 s; its cancellation arrives first.
        await _send(sqs, queue_url, request, DelaySeconds=4)
        await _send(sqs, queue_url, cancel)
        replies = []
        with anyio.move_on_after(9):
            while True:
                got = await sqs.receive_message(QueueUrl=reply, WaitTimeSeconds=1, MaxNumberOfMessages=10)
                replies += [json.loads(m["Body"]) for m in got.get("Messages", [])]
        left = await sqs.get_queue_attributes(
            QueueUrl=queue_url,
            AttributeNames=[
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
                "ApproximateNumberOfMessagesDelayed",
            ],
        )
    assert events(directory) == ["started warm", "finished warm"]
    assert replies == []  # a cancelled request is not answered (MCP: SHOULD NOT respond)
    assert set(left["Attributes"].values()) == {"0"}  # and its message is gone, not retried


async def _send(sqs: Any, queue_url: str, wire: WireMessage, **options: Any) -> None:
    """Put an encoded message on a request queue as the client transport would."""
    attributes = to_sqs_attributes(wire.attributes)
    await sqs.send_message(QueueUrl=queue_url, MessageBody=wire.body, MessageAttributes=attributes, **options)
