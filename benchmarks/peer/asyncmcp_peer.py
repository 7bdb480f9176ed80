"""asyncmcp 0.2.1's SNS+SQS transport serving the benchmark's `echo`, driven one call at a time over
stdin/stdout, so that benchmarks/performance.py can interleave it with its other variants.

Runs in its own venv (asyncmcp needs `mcp<2`; see benchmarks/peer/requirements.txt), not the
project's: it is neither imported by the project nor type-checked with it.

    python asyncmcp_peer.py --endpoint-url http://127.0.0.1:PORT --region us-east-1 --clients 10

Sets up, on the given endpoint (the benchmark's moto), what asyncmcp's SNS+SQS transport needs: a
request topic with the server's queue subscribed, and for each client its own topic with its own
queue subscribed (raw delivery); starts one `SnsSqsSessionManager` serving a FastMCP `echo` tool
(read-only, as in benchmarks/bench_server.py) and connects `--clients` `ClientSession`s (the
`initialize` handshake, and a first call). Then prints one JSON line `{"ready": {...versions}}`
and answers lines:

    {"id": 7, "lane": 3}  →  {"id": 7, "aws_calls": {"Publish": 812, ...}}   (or "error": "...")

that is, client number `lane` calls `echo`, and the reply carries the AWS calls the whole process
(the server and every client) has made so far, by operation (a hook on botocore's
`_make_api_call`). It leaves at once (`os._exit`) when stdin closes: asyncmcp's long polls run in
threads that cannot be cancelled.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections import Counter
from contextlib import AsyncExitStack
from datetime import timedelta
from importlib.metadata import version
from typing import Any

import anyio
import boto3
from asyncmcp import SnsSqsClientConfig, SnsSqsServerConfig, SnsSqsSessionManager, sns_sqs_client
from botocore.client import BaseClient
from botocore.config import Config
from mcp import ClientSession
from mcp.server.fastmcp import FastMCP
from mcp.types import ToolAnnotations

AWS_CALLS: Counter[str] = Counter()
POOL = Config(max_pool_connections=32)  # a long poll holds a connection; 10 publishes may run at once
POLL = {"poll_interval_seconds": 0.0}
"""asyncmcp sleeps this long after every empty long poll (default 5 s); the benchmark's clients sit
idle while the other variants run, so the default would add up to 5 s to their next call."""
CALL_TIMEOUT = timedelta(seconds=60)  # asyncmcp itself waits for ever

server = FastMCP("bench")


@server.tool(annotations=ToolAnnotations(readOnlyHint=True))
def echo(text: str) -> str:
    """Return the text."""
    return text


def count_aws_calls() -> None:
    """Count every AWS API call of this process by operation."""
    make_api_call = BaseClient._make_api_call

    def counted(client: Any, operation: str, params: Any) -> Any:
        AWS_CALLS[operation] += 1
        return make_api_call(client, operation, params)

    BaseClient._make_api_call = counted


def topic_with_queue(sns: Any, sqs: Any, name: str) -> tuple[str, str]:
    """A topic and a queue subscribed to it with raw delivery: (topic ARN, queue URL)."""
    topic = sns.create_topic(Name=name)["TopicArn"]
    queue = sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn, Attributes={"RawMessageDelivery": "true"})
    return topic, queue


async def serve(endpoint_url: str, region: str, clients: int) -> None:
    def aws(service: str) -> Any:  # one client per part, as if each ran in its own process
        return boto3.client(service, endpoint_url=endpoint_url, region_name=region, config=POOL)

    def sqs_and_sns() -> tuple[Any, Any]:
        return aws("sqs"), aws("sns")

    sns, sqs = aws("sns"), aws("sqs")
    request_topic, server_queue = topic_with_queue(sns, sqs, "asyncmcp-bench-server")
    manager = SnsSqsSessionManager(
        server._mcp_server, SnsSqsServerConfig(sqs_queue_url=server_queue, **POLL), *sqs_and_sns()
    )
    async with AsyncExitStack() as exits:
        await exits.enter_async_context(manager.run())
        sessions = []
        for lane in range(clients):
            reply_topic, reply_queue = topic_with_queue(sns, sqs, f"asyncmcp-bench-client-{lane}")
            config = SnsSqsClientConfig(sqs_queue_url=reply_queue, sns_topic_arn=request_topic, **POLL)
            streams = await exits.enter_async_context(sns_sqs_client(config, *sqs_and_sns(), reply_topic))
            session = await exits.enter_async_context(ClientSession(*streams))
            await session.initialize()
            await session.call_tool("echo", {"text": "ping"})  # its first call also lists the tools
            sessions.append(session)
        reply({"ready": {"asyncmcp": version("asyncmcp"), "mcp": version("mcp"), "clients": clients}})
        await answer(sessions)
        os._exit(0)  # without waiting for the long polls' threads


async def answer(sessions: list[ClientSession]) -> None:
    """One call per request line, concurrently; returns at the end of stdin."""
    loop = asyncio.get_running_loop()
    lines = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(lines), sys.stdin)

    async def call(request: dict[str, Any]) -> None:
        try:
            result = await sessions[request["lane"]].call_tool("echo", {"text": "ping"}, CALL_TIMEOUT)
            outcome = {"error": str(result.content)} if result.isError else {"aws_calls": dict(AWS_CALLS)}
        except Exception as error:
            outcome = {"error": f"{type(error).__name__}: {error}"}
        reply({"id": request["id"], **outcome})

    async with anyio.create_task_group() as tg:
        while line := await lines.readline():
            tg.start_soon(call, json.loads(line))
        tg.cancel_scope.cancel()


def reply(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint-url", required=True)
    parser.add_argument("--region", required=True)
    parser.add_argument("--clients", type=int, default=10)
    arguments = parser.parse_args()
    count_aws_calls()
    anyio.run(serve, arguments.endpoint_url, arguments.region, arguments.clients)
