"""Opening the client transport never blocks the event loop (issue 8, item 7).

botocore reads its data files synchronously when a client is created; the transport prepares
them in a worker thread. A blocking-call detector (blockbuster) guards the whole client side,
in its own process (the embedded stack's workers run in this one).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from dmcp_aws.local.stack import RunningStack

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]

CLIENT = """
import asyncio, os, sys

import jsonschema  # noqa: F401  (the SDK imports it lazily, on the loop, to check a tool result)
from blockbuster import blockbuster_ctx
from mcp import Client

from dmcp_aws.client import TopicTarget, sqs_client_transport


async def main() -> None:
    target = TopicTarget(os.environ["TOPIC"], "example")
    options = {"endpoint_url": os.environ["ENDPOINT"], "reply_prefix": os.environ["PREFIX"]}
    with blockbuster_ctx():
        for _ in range(2):
            async with Client(sqs_client_transport(target, **options)) as client:
                result = await client.call_tool("echo", {"text": "not blocked"})
                print(result.content[0].text)


asyncio.run(main())
"""


async def test_connecting_and_calling_never_blocks_the_event_loop(stack: RunningStack) -> None:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "DMCP_"))} | {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": stack.region,
        "TOPIC": stack.topic_arn,
        "ENDPOINT": stack.endpoint_url,
        "PREFIX": stack.client_connection_prefix(),
        "PYTHONPATH": str(ROOT),
    }
    run = await anyio.to_thread.run_sync(
        lambda: subprocess.run(
            [sys.executable, "-c", CLIENT], env=environment, capture_output=True, text=True, timeout=120
        )
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.split() == ["not", "blocked", "not", "blocked"]
