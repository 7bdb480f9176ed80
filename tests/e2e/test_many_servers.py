"""`dmcp dev` with three servers and the catch-all, each with its own concurrency: no call hangs.

Every poll loop holds an HTTP connection for its whole long poll; with a shared client and the
default pool of 10, a second server of 5 loops starved their own deletes and replies.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest
from mcp import Client

from dmcp_aws.client import TopicTarget, sqs_client_transport

from .test_dev_command import load_env_file

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parents[2]

MINE = '''
from mcp.server.mcpserver import MCPServer

from dmcp_aws.lambda_handler import make_lambda_handler

mcp = MCPServer("mine")


@mcp.tool()
def shout(text: str) -> str:
    """The text in capitals."""
    return text.upper()


handler = make_lambda_handler(mcp)
'''


async def test_three_servers_serve_100_calls_each_from_4_clients(tmp_path: Path) -> None:
    (tmp_path / "mine_server.py").write_text(MINE)
    description = {
        "name": "two",
        "servers": [
            {"name": "example", "max_concurrency": 5},
            {"name": "mine", "handler": "mine_server.handler", "max_concurrency": 5},
            {"name": "third", "handler": "mine_server.handler", "max_concurrency": 5},
        ],
        "clients": [{"name": "laptop", "principal": "account"}],
    }
    (tmp_path / "two.json").write_text(json.dumps(description))
    env_file = tmp_path / "dev.env"
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "DMCP_"))}
    dev = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dmcp_aws",
            "dev",
            "-d",
            str(tmp_path / "two.json"),
            "--env-file",
            str(env_file),
        ],
        cwd=tmp_path,
        env=environment | {"PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not env_file.exists():
            assert dev.poll() is None, dev.stdout.read() if dev.stdout else ""
            assert time.monotonic() < deadline, "dmcp dev did not start within 60 s"
            await anyio.sleep(0.2)
        settings = load_env_file(env_file)
        session_options = {
            "endpoint_url": settings["DMCP_ENDPOINT_URL"],
            "reply_prefix": settings["DMCP_REPLY_PREFIX"],
            "region_name": settings["AWS_DEFAULT_REGION"],
            "request_timeout": 30,
        }
        os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
        os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
        answered = {"example": 0, "mine": 0, "third": 0}
        slowest = 0.0

        async def client(number: int) -> None:
            targets = {name: TopicTarget(settings["DMCP_TOPIC_ARN"], name) for name in answered}
            async with (
                Client(sqs_client_transport(targets["example"], **session_options)) as example,
                Client(sqs_client_transport(targets["mine"], **session_options)) as mine,
                Client(sqs_client_transport(targets["third"], **session_options)) as third,
            ):
                nonlocal slowest
                for i in range(25):
                    text = f"c{number}-{i}"
                    started = time.monotonic()
                    echoed = await example.call_tool("echo", {"text": text})
                    assert echoed.content[0].text == text  # type: ignore[union-attr]
                    answered["example"] += 1
                    shouted = await mine.call_tool("shout", {"text": text})
                    assert shouted.content[0].text == text.upper()  # type: ignore[union-attr]
                    answered["mine"] += 1
                    thirded = await third.call_tool("shout", {"text": text})
                    assert thirded.content[0].text == text.upper()  # type: ignore[union-attr]
                    answered["third"] += 1
                    slowest = max(slowest, time.monotonic() - started)

        with anyio.fail_after(180):
            async with anyio.create_task_group() as tg:
                for number in range(4):
                    tg.start_soon(client, number)
        assert answered == {"example": 100, "mine": 100, "third": 100}
        assert slowest < 10, f"a pair of calls took {slowest:.1f} s: a poller starved"
    finally:
        dev.send_signal(signal.SIGINT)
        output, _ = dev.communicate(timeout=60)
    assert dev.returncode == 0, output
    assert "reply-undeliverable" not in output
