"""The kit's real CDK app deployed with `cdklocal` into host-mode LocalStack, answering end to end.

topic → filter policy → request queue → LocalStack's event source mapping → the deployed
Lambda handler (the bundled asset, run by the host executor) → reply queue → `mcp.Client`.

The deployment is `localstack/dmcp.localstack.json`: the same servers as `dmcp.json`, with the
parts LocalStack cannot run here switched off by configuration — `idempotency: false` (DynamoDB
does not start offline) and `architecture: host` (the asset's compiled wheels must match this
machine). Timings are printed at the end of the run.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aioboto3
import boto3
import pytest
from mcp import Client
from mcp.client.session import ClientSession
from mcp.shared.exceptions import MCPError

from dmcp_aws.client import sqs_client_transport
from dmcp_aws.deployed import DeployedStack, resolve_stack_sync
from dmcp_aws.wire import to_sqs_attributes
from dmcp_localstack import HostLocalStack
from tests.localstack.support import TIMINGS, wait_for

pytestmark = [pytest.mark.localstack, pytest.mark.anyio, pytest.mark.timeout(1200)]

ROOT = Path(__file__).resolve().parents[2]
DESCRIPTION = "localstack/dmcp.localstack.json"
STACK = "dmcp"


def _cdklocal(localstack: HostLocalStack, *arguments: str, output: Path) -> float:
    """Run the pinned `cdklocal` against this LocalStack; return how long it took."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CDK_DEFAULT"))}
    environment |= localstack.client_env()
    environment["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{environment.get('PATH', '')}"
    environment["JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION"] = "1"
    environment["CDK_DISABLE_VERSION_CHECK"] = "1"
    started = time.monotonic()
    done = subprocess.run(
        ["npx", "--no-install", "cdklocal", *arguments, "--output", str(output)],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, f"cdklocal {arguments[0]} failed:\n{done.stdout}\n{done.stderr}"
    return time.monotonic() - started


@pytest.fixture(scope="module")
def deployed(localstack: HostLocalStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DeployedStack]:
    output = tmp_path_factory.mktemp("cdk.out")
    bootstrap = _cdklocal(localstack, "bootstrap", "aws://000000000000/us-east-1", output=output)
    deploy = _cdklocal(
        localstack,
        "deploy", STACK, "--require-approval", "never", "-c", f"dmcp:deployment={DESCRIPTION}",
        output=output,
    )  # fmt: skip
    TIMINGS.append(f"cdklocal bootstrap {bootstrap:.1f} s, deploy {deploy:.1f} s (bundling included)")
    session = boto3.Session(aws_access_key_id="test", aws_secret_access_key="test")
    stack = resolve_stack_sync(
        STACK, session=session, region_name="us-east-1", endpoint_url=localstack.endpoint
    )
    lam = boto3.client("lambda", **localstack.boto_kwargs())
    for mapping in lam.list_event_source_mappings()["EventSourceMappings"]:
        wait_for(
            lambda uuid=mapping["UUID"]: lam.get_event_source_mapping(UUID=uuid)["State"] == "Enabled", 60
        )
    yield stack
    destroy = _cdklocal(
        localstack, "destroy", STACK, "--force", "-c", f"dmcp:deployment={DESCRIPTION}", output=output
    )
    TIMINGS.append(f"cdklocal destroy {destroy:.1f} s")
    cfn = boto3.client("cloudformation", **localstack.boto_kwargs())
    remaining = [
        s["StackName"] for s in cfn.list_stacks()["StackSummaries"] if s["StackStatus"] != "DELETE_COMPLETE"
    ]
    assert STACK not in remaining


def _options(stack: DeployedStack) -> dict[str, Any]:
    session = aioboto3.Session(aws_access_key_id="test", aws_secret_access_key="test")
    return stack.client_options(session=session, wait_time_seconds=2)


def test_outputs_describe_the_deployment(deployed: DeployedStack) -> None:
    assert deployed.topic_arn.endswith(":dmcp-requests")
    assert set(deployed.request_queue_urls) == {"example", "unrouted"}
    assert set(deployed.reply_queue_urls) == {"laptop"}
    assert deployed.reply_prefix == "dmcp-reply-"


async def test_a_real_client_through_the_deployed_stack(deployed: DeployedStack) -> None:
    progress: list[float] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append(value)

    transport = sqs_client_transport(deployed.topic_target("example"), **_options(deployed))
    async with Client(transport, read_timeout_seconds=60) as client:
        assert client.session.protocol_version == "2026-07-28"
        tools = {tool.name for tool in (await client.list_tools()).tools}
        assert {"echo", "add", "count_slowly"} <= tools
        counted = await client.call_tool(
            "count_slowly", {"steps": 3, "delay_s": 0.05}, progress_callback=on_progress
        )
        assert counted.content[0].text == "counted to 3"  # type: ignore[union-attr]
        about = await client.read_resource("dmcp://example/greeting/localstack")
        assert about.contents[0].text == "Hello, localstack!"  # type: ignore[union-attr]
        prompt = await client.get_prompt("review_code", {"code": "print(1)"})
        assert "print(1)" in prompt.messages[0].content.text  # type: ignore[union-attr]
        failed = await client.call_tool("divide", {"a": 1, "b": 0})
        assert failed.is_error and "cannot divide by zero" in failed.content[0].text  # type: ignore[union-attr]

        round_trips = []
        for _ in range(20):
            started = time.perf_counter()
            await client.call_tool("echo", {"text": "ping"})
            round_trips.append((time.perf_counter() - started) * 1000)
    assert sorted(progress) == [1.0, 2.0, 3.0]
    TIMINGS.append(
        f"tools/call round trip through the deployed stack: median {statistics.median(round_trips):.0f} ms, "
        f"max {max(round_trips):.0f} ms (20 calls)"
    )


async def test_handshake_client_and_provisioned_reply_queue(deployed: DeployedStack) -> None:
    session = aioboto3.Session(aws_access_key_id="test", aws_secret_access_key="test")
    options = deployed.client_options("laptop", session=session, wait_time_seconds=2)
    async with (
        sqs_client_transport(deployed.queue_target("example"), **options) as (read, write),
        ClientSession(read, write) as client,
    ):
        assert (await client.initialize()).protocol_version == "2025-11-25"
        added = await client.call_tool("add", {"a": 1, "b": 2})
    assert added.structured_content == {"a": 1.0, "b": 2.0, "sum": 3.0}


async def test_unknown_server_is_answered_by_the_deployed_catch_all(deployed: DeployedStack) -> None:
    transport = sqs_client_transport(deployed.topic_target("nobody"), **_options(deployed))
    expected = pytest.RaisesExc(MCPError, match="no server named 'nobody' is deployed")
    with pytest.RaisesGroup(expected, flatten_subgroups=True, allow_unwrapped=True):
        async with Client(transport, read_timeout_seconds=60):
            pass


def test_a_poison_message_lands_in_the_deployed_dlq(
    deployed: DeployedStack, localstack: HostLocalStack
) -> None:
    sqs = boto3.client("sqs", **localstack.boto_kwargs())
    attributes = {
        "dmcp.version": "1",
        "mcp.server": "example",
        "dmcp.reply-to": deployed.reply_queue_urls["laptop"],
        "dmcp.conn": "poison-test",
    }
    sqs.send_message(
        QueueUrl=deployed.request_queue_urls["example"],
        MessageBody="{this is not json",
        MessageAttributes=to_sqs_attributes(attributes),
    )

    def dead_letter() -> dict[str, Any] | None:
        got = sqs.receive_message(
            QueueUrl=deployed.dead_letter_queue_urls["example"],
            WaitTimeSeconds=1,
            MessageAttributeNames=["All"],
        )
        return next(iter(got.get("Messages", [])), None)

    message = wait_for(dead_letter, timeout=60)
    assert message["Body"] == "{this is not json"
    reason = message["MessageAttributes"]["dmcp.dlq-reason"]["StringValue"]
    assert reason.startswith("malformed-body"), reason
    TIMINGS.append(f"poison message moved to the DLQ with reason {json.dumps(reason[:40])}…")
