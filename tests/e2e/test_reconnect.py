"""Reconnecting to a provisioned reply queue gets every reply promptly (issue 8, item 3).

A client process killed while its long poll is pending leaves that poll alive in the service: it
takes the next reply, which then stays invisible for the visibility the receive asked for (the
queue's 30 s before; the transport now asks for 3 s). The next process on the same queue must
still get its answer within seconds.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from dmcp_aws.local.stack import RunningStack

from .raw import make_reply_queue

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parents[2]

CLIENT = """
import asyncio, os, sys, time
from mcp import Client
from dmcp_aws.client import TopicTarget, sqs_client_transport

async def main() -> None:
    target = TopicTarget(os.environ["TOPIC"], "example")
    reply, endpoint = os.environ["REPLY"], os.environ["ENDPOINT"]
    transport = sqs_client_transport(target, endpoint_url=endpoint, reply_queue_url=reply)
    started = time.monotonic()
    async with Client(transport, read_timeout_seconds=60) as client:
        result = await client.call_tool("echo", {"text": sys.argv[1]})
        print(result.content[0].text, round(time.monotonic() - started, 1), flush=True)
        if len(sys.argv) > 2:
            await asyncio.sleep(60)  # a long poll is pending when this process is killed

asyncio.run(main())
"""


async def test_a_new_process_on_the_same_provisioned_queue_gets_its_replies_promptly(
    stack: RunningStack, sqs
) -> None:  # type: ignore[no-untyped-def]
    reply = await make_reply_queue(sqs, stack)
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "DMCP_"))} | {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": stack.region,
        "TOPIC": stack.topic_arn,
        "ENDPOINT": stack.endpoint_url,
        "REPLY": reply,
        "PYTHONPATH": str(ROOT),
    }
    took = []
    victim = subprocess.Popen(
        [sys.executable, "-c", CLIENT, "victim", "linger"], env=environment, stdout=subprocess.PIPE, text=True
    )
    assert victim.stdout is not None
    first = await anyio.to_thread.run_sync(victim.stdout.readline)
    assert first.startswith("victim"), first
    await anyio.sleep(1)
    victim.kill()
    victim.wait()

    def connect_and_call(text: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-c", CLIENT, text]
        return subprocess.run(command, env=environment, capture_output=True, text=True, timeout=120)

    for round_ in range(3):
        run = await anyio.to_thread.run_sync(connect_and_call, f"round-{round_}")
        assert run.returncode == 0, run.stderr[-2000:]
        text, seconds = run.stdout.split()
        assert text == f"round-{round_}"
        took.append(float(seconds))
    assert max(took) < 10, f"seconds per connect-and-call: {took}"
