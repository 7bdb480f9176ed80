"""`dmcp worker`: the same handler serving a request queue from a long-running process.

The worker runs as its own process (as in a container), against the session's moto server,
for a second deployment ("boxed") provisioned next to the session's one.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from mcp import Client

from dmcp_aws.client import TopicTarget, sqs_client_transport
from dmcp_aws.deployment import Deployment, topology
from dmcp_aws.local.container_worker import serve_from_queue
from dmcp_aws.local.provision import provision
from dmcp_aws.local.stack import RunningStack

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parents[2]
BOXED = {"name": "boxed", "servers": [{"name": "example", "max_concurrency": 2}], "idempotency": False}


async def test_dmcp_worker_answers_through_the_topic(stack: RunningStack, tmp_path: Path) -> None:
    deployment = Deployment.parse(BOXED)
    session = stack.session()
    async with (
        session.client("sqs", endpoint_url=stack.endpoint_url) as sqs,
        session.client("sns", endpoint_url=stack.endpoint_url) as sns,
        session.client("dynamodb", endpoint_url=stack.endpoint_url) as dynamodb,
    ):
        created = await provision(topology(deployment), sqs, sns, dynamodb)
    description = tmp_path / "boxed.json"
    description.write_text(json.dumps(BOXED))
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "DMCP_", "LAMBDA_"))} | {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": stack.region,
        "PYTHONPATH": str(ROOT),
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "dmcp_aws", "worker", "--server", "example", "--deployment", str(description),
         "--endpoint-url", stack.endpoint_url],
        env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
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
