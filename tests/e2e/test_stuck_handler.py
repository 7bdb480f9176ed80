"""A handler that never returns (issue 8, item 5): `dmcp worker` runs each execution environment as
a process, so the stuck invocation is really ended after the function timeout (its process is
gone), the request still ends with a reasoned outcome, the worker exits promptly, and no
environment outlives a worker that is SIGKILLed."""

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
from .second_deployment import provision_deployment, start_worker

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parents[2]

STUCK = '''
import os
import time
from pathlib import Path

from mcp.server.mcpserver import MCPServer

from dmcp_aws.lambda_handler import make_lambda_handler

mcp = MCPServer("stuck")


@mcp.tool()
def hang() -> str:
    """Record this process, then block it for an hour."""
    with (Path(__file__).parent / "pids").open("a") as pids:
        pids.write(f"{os.getpid()}\\n")
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


def alive(pid: int) -> bool:
    """Whether `pid` is a live process (a zombie nobody has reaped yet counts as dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def children_of(parent: int) -> list[int]:
    """The processes whose parent is `parent` (Linux's /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == parent:
            found.append(int(stat.parent.name))
    return found


def recorded_pids(directory: Path) -> list[int]:
    path = directory / "pids"
    return [int(line) for line in path.read_text().split()] if path.exists() else []


async def stop(worker: subprocess.Popen[str], within_s: float = 30) -> float:
    """SIGINT (Ctrl-C) `worker` and wait for it (killed after `within_s`); seconds it took."""
    worker.send_signal(signal.SIGINT)
    started = time.monotonic()
    while worker.poll() is None and time.monotonic() - started < within_s:
        await anyio.sleep(0.1)
    exited_in = time.monotonic() - started
    if worker.poll() is None:
        worker.kill()
    return exited_in


async def test_a_handler_that_never_returns_is_ended_and_the_worker_still_exits(
    stack: RunningStack, tmp_path: Path
) -> None:
    (tmp_path / "stuck_server.py").write_text(STUCK)
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
        await send(
            sqs,
            requests,
            tool_call(91, tool="hang"),
            request_attributes(stack, reply, conn, mcp_server="stuck"),
        )
        worker = start_worker(stack, DESCRIPTION, tmp_path, "stuck")
        try:
            # delivery 1 overruns and its process is killed; delivery 2 is the last word
            [(answer, _)] = await receive_matching(sqs, reply, conn, timeout_s=45)
            [(_, dead)] = await receive_matching(sqs, dlq, conn, timeout_s=10)
            ran_in = recorded_pids(tmp_path)
            still_running = [pid for pid in ran_in if alive(pid)]
        finally:
            exited_in = await stop(worker)
            output = worker.communicate(timeout=10)[0]
    assert ran_in and worker.pid not in ran_in, output  # the tool ran in a child process
    assert not still_running, f"the stuck invocations {still_running} were not ended\n{output}"
    assert worker.returncode == 0 and exited_in < 15, (exited_in, output)
    assert json.loads(answer)["error"]["message"].startswith("the request failed on delivery 2")
    assert dead[Attr.DLQ_REASON].startswith("retries-exhausted: ")


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
async def test_no_execution_environment_outlives_a_sigkilled_worker(
    stack: RunningStack, tmp_path: Path
) -> None:
    (tmp_path / "stuck_server.py").write_text(STUCK)
    description = DESCRIPTION | {"name": "stuckkill"}
    deployment = Deployment.parse(description)
    created = await provision_deployment(stack, description)
    session = stack.session()
    async with session.client("sqs", endpoint_url=stack.endpoint_url) as sqs:
        requests = created.queue_urls["stuckkill-stuck-requests"]
        reply = (await sqs.create_queue(QueueName=f"{deployment.reply_prefix}t"))["QueueUrl"]
        conn = new_conn()
        for request_id in (1, 2):  # one per environment: both are busy when the worker dies
            await send(
                sqs, requests, tool_call(request_id, tool="hang"),
                request_attributes(stack, reply, conn, mcp_server="stuck"),
            )  # fmt: skip
    worker = start_worker(stack, description, tmp_path, "stuck")
    try:
        deadline = time.monotonic() + 30
        while len(recorded_pids(tmp_path)) < 2 and time.monotonic() < deadline and worker.poll() is None:
            await anyio.sleep(0.1)
        children = children_of(worker.pid)
        busy = recorded_pids(tmp_path)
    finally:
        worker.kill()  # SIGKILL: the worker gets no chance to clean up
        output = worker.communicate(timeout=10)[0]
    assert len(busy) == 2 and set(busy) <= set(children), (busy, children, output)
    deadline = time.monotonic() + 5
    while any(alive(pid) for pid in children) and time.monotonic() < deadline:
        await anyio.sleep(0.1)
    assert not [pid for pid in children if alive(pid)], f"children {children} outlived their worker\n{output}"
