"""A handler that never returns (issue 8, item 5): its invocation is abandoned after the function
timeout, the request still ends with a reasoned outcome, and the worker process still exits."""

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

from dmcp_aws.deployment import Deployment, topology
from dmcp_aws.local.provision import provision
from dmcp_aws.local.stack import RunningStack
from dmcp_aws.wire import Attr

from .raw import new_conn, receive_matching, request_attributes, send, tool_call

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parents[2]

STUCK = '''
import time

from mcp.server.mcpserver import MCPServer

from dmcp_aws.lambda_handler import make_lambda_handler

mcp = MCPServer("stuck")


@mcp.tool()
def hang() -> str:
    """Block the worker's thread for an hour."""
    time.sleep(3600)
    return "never"


handler = make_lambda_handler(mcp)
'''

DESCRIPTION = {
    "name": "stuckdep",
    "servers": [
        {
            "name": "stuck",
            "handler": "stuck_server.handler",
            "timeout_s": 2,
            "max_receive_count": 1,
            "max_concurrency": 2,
        }
    ],
}


async def test_a_handler_that_never_returns_is_abandoned_and_the_worker_still_exits(
    stack: RunningStack, tmp_path: Path
) -> None:
    (tmp_path / "stuck_server.py").write_text(STUCK)
    (tmp_path / "stuckdep.json").write_text(json.dumps(DESCRIPTION))
    deployment = Deployment.parse(DESCRIPTION)
    session = stack.session()
    async with (
        session.client("sqs", endpoint_url=stack.endpoint_url) as sqs,
        session.client("sns", endpoint_url=stack.endpoint_url) as sns,
        session.client("dynamodb", endpoint_url=stack.endpoint_url) as dynamodb,
    ):
        created = await provision(topology(deployment), sqs, sns, dynamodb)
        requests = created.queue_urls["stuckdep-stuck-requests"]
        dlq = created.queue_urls["stuckdep-stuck-dlq"]
        reply = (await sqs.create_queue(QueueName=f"{deployment.reply_prefix}t"))["QueueUrl"]
        conn = new_conn()
        hang = tool_call(91, tool="hang").replace('"arguments": {}', '"arguments": {}', 1)
        await send(sqs, requests, hang, request_attributes(stack, reply, conn, mcp_server="stuck"))
        environment = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "DMCP_", "LAMBDA_"))}
        environment |= {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": stack.region,
            "PYTHONPATH": str(ROOT),
        }
        worker = subprocess.Popen(
            [sys.executable, "-m", "dmcp_aws", "worker", "--server", "stuck",
             "--deployment", str(tmp_path / "stuckdep.json"), "--endpoint-url", stack.endpoint_url],
            cwd=tmp_path, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        try:
            # delivery 1 overruns and its container is replaced; delivery 2 is the last word
            [(answer, _)] = await receive_matching(sqs, reply, conn, timeout_s=45)
            [(_, dead)] = await receive_matching(sqs, dlq, conn, timeout_s=10)
        finally:
            worker.send_signal(signal.SIGINT)
            started = time.monotonic()
            while worker.poll() is None and time.monotonic() - started < 30:
                await anyio.sleep(0.2)
            exited_in = time.monotonic() - started
            if worker.poll() is None:
                worker.kill()
            output = worker.communicate(timeout=10)[0]
    assert worker.returncode == 0 and exited_in < 30, output
    assert json.loads(answer)["error"]["message"].startswith("the request failed on delivery 2")
    assert dead[Attr.DLQ_REASON].startswith("retries-exhausted: ")
