"""`dmcp worker`: the same handler serving a request queue from a long-running process.

The worker runs as its own process (as in a container), against the session's moto server,
for a second deployment ("boxed") provisioned next to the session's one.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from mcp import Client

from dmcp_aws.client import TopicTarget, sqs_client_transport
from dmcp_aws.deployment import Deployment
from dmcp_aws.local.container_worker import serve_from_queue
from dmcp_aws.local.stack import RunningStack

from .second_deployment import provision_deployment, start_worker

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parents[2]
BOXED = {"name": "boxed", "servers": [{"name": "example", "max_concurrency": 2}], "idempotency": False}


async def test_dmcp_worker_answers_through_the_topic(stack: RunningStack, tmp_path: Path) -> None:
    deployment = Deployment.parse(BOXED)
    created = await provision_deployment(stack, BOXED)
    worker = start_worker(stack, BOXED, tmp_path, "example")
    try:
        target = TopicTarget(created.topic_arn, "example")
        options = stack.client_options() | {"reply_prefix": deployment.connection_queue_prefix}
        async with Client(sqs_client_transport(target, **options), read_timeout_seconds=60) as client:
            result = await client.call_tool("add", {"a": 20, "b": 22})
    finally:
        worker.send_signal(signal.SIGINT)
        output, _ = worker.communicate(timeout=60)
    assert result.structured_content == {"a": 20.0, "b": 22.0, "sum": 42.0}
    assert worker.returncode == 0, output
    assert "serving example of deployment 'boxed'" in output and "stopped." in output


async def test_an_unknown_server_is_a_clear_error() -> None:
    with pytest.raises(KeyError, match="has no server 'nope'; it has example, unrouted"):
        await serve_from_queue(Deployment.parse({"servers": [{"name": "example"}]}), "nope")
