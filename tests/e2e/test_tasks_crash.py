"""A task whose container worker is SIGKILLed mid-run completes after redelivery, its side effect
(a ticket, kept under the task's idempotency key) taken once; it runs longer than the server's
function timeout, as a container worker allows (`container_timeout_s`).

The worker is `dmcp worker` (a process, as in a container) for a deployment of its own
("taskcrash") in the session's moto server.
"""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import anyio
import pytest
from functions.example.tickets import COUNTER_KEY, TICKET_KEY

from dmcp_aws.client import QueueTarget
from dmcp_aws.deployment import Deployment, topology
from dmcp_aws.local.stack import RunningStack
from dmcp_aws.tasks.client import TaskClient, result_of
from dmcp_aws.tasks.model import CreateTaskResult, run_key

from .second_deployment import provision_deployment, start_worker

pytestmark = pytest.mark.anyio
CRASH = {
    "name": "taskcrash",
    # A function timeout of 5 s, but 2 min in a container: the 8 s task outlives a Lambda's limit.
    "servers": [{"name": "example", "timeout_s": 5, "container_timeout_s": 120, "max_concurrency": 2}],
    "clients": [{"name": "laptop", "principal": "account"}],
}


def _kill(worker: subprocess.Popen[str]) -> None:
    """SIGKILL the worker process this test started (its execution environments die with it)."""
    if worker.poll() is None:
        worker.send_signal(signal.SIGKILL)
    worker.communicate(timeout=30)


async def test_a_task_completes_after_its_worker_is_killed_and_runs_its_side_effect_once(
    stack: RunningStack, tmp_path: Path
) -> None:
    deployment = Deployment.parse(CRASH)
    shape = topology(deployment)
    created = await provision_deployment(stack, CRASH)
    target = QueueTarget(queue_url=created.queue_urls["taskcrash-example-requests"], server="example")
    options = stack.client_options() | {"reply_prefix": deployment.client_connection_prefix("laptop")}
    worker = start_worker(stack, CRASH, tmp_path, "example")
    try:
        async with TaskClient.connect(target, wait_time_seconds=2, request_timeout=60, **options) as client:
            task = await client.call_tool("slow_report", {"topic": "crash", "seconds": 8})
            assert isinstance(task, CreateTaskResult)
            with anyio.fail_after(30):  # running: its ticket taken, its sections under way
                while "section" not in ((await client.get(task.task_id)).status_message or ""):
                    await anyio.sleep(0.3)
            _kill(worker)
            worker = start_worker(stack, CRASH, tmp_path, "example")
            done = await client.wait(task.task_id, timeout=90)
    finally:
        _kill(worker)
    assert done.status == "completed", done
    text = result_of(done).content[0].text  # type: ignore[union-attr]
    assert text == "report 1 on crash: 10 sections"
    async with stack.session().client("dynamodb", endpoint_url=stack.endpoint_url) as dynamodb:
        item = await dynamodb.get_item(TableName=shape.tasks_table, Key={"id": {"S": task.task_id}})
        assert item["Item"]["runs"]["N"] == "2", "the second worker ran the task again"
        ledger = shape.idempotency_table
        counter = await dynamodb.get_item(TableName=ledger, Key={"id": {"S": COUNTER_KEY}})
        assert counter["Item"]["issued"]["N"] == "1", "one ticket was ever issued"
        ticket = await dynamodb.get_item(
            TableName=ledger, Key={"id": {"S": TICKET_KEY + run_key(task.task_id)}}
        )
        assert ticket["Item"]["ticket"]["N"] == "1"
