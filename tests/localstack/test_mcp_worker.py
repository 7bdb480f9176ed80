"""The kit's own worker behind LocalStack's event source mapping, answering a real `mcp.Client`.

The function's code is the repository itself (LocalStack's hot-reload code source) and its
interpreter the test's own (`DMCP_LAMBDA_PYTHON`), so no bundle is needed; what runs is
`functions.example.handler.handler` exactly as Lambda would call it.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from mcp import Client

from dmcp_aws.client import QueueTarget, sqs_client_transport
from dmcp_localstack import HostLocalStack, host_localstack
from tests.localstack.support import ROLE, wait_for

pytestmark = [pytest.mark.localstack, pytest.mark.anyio]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def worker_stack(localstack: HostLocalStack) -> Iterator[tuple[HostLocalStack, str]]:
    """A second LocalStack whose functions run on this interpreter, with the example worker."""
    with host_localstack(port=0, extra_env={"DMCP_LAMBDA_PYTHON": sys.executable}) as stack:
        sqs = boto3.client("sqs", **stack.boto_kwargs())
        lam = boto3.client("lambda", **stack.boto_kwargs())
        queue = sqs.create_queue(QueueName="dmcp-example-requests")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        lam.create_function(
            FunctionName="dmcp-example",
            Runtime=f"python{sys.version_info.major}.{sys.version_info.minor}",
            Handler="functions.example.handler.handler",
            Role=ROLE,
            Code={"S3Bucket": "hot-reload", "S3Key": str(ROOT)},
            Timeout=30,
            Environment={"Variables": {"DMCP_REPLY_PREFIX": "dmcp-reply-"}},
        )
        wait_for(lambda: lam.get_function_configuration(FunctionName="dmcp-example")["State"] == "Active")
        uuid = lam.create_event_source_mapping(
            FunctionName="dmcp-example", EventSourceArn=arn, FunctionResponseTypes=["ReportBatchItemFailures"]
        )["UUID"]
        wait_for(lambda: lam.get_event_source_mapping(UUID=uuid)["State"] == "Enabled")
        yield stack, queue


def client(worker_stack: tuple[HostLocalStack, str]) -> Client:
    stack, queue = worker_stack
    target = QueueTarget(queue, "example")
    transport = sqs_client_transport(
        target,
        endpoint_url=stack.endpoint,
        region_name="us-east-1",
        wait_time_seconds=1,
    )
    return Client(transport, read_timeout_seconds=30)


async def test_tool_call_round_trips(worker_stack: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in worker_stack[0].client_env().items():
        monkeypatch.setenv(key, value)
    async with client(worker_stack) as mcp_client:
        started = time.perf_counter()
        result = await mcp_client.call_tool("add", {"a": 2, "b": 40})
        first = time.perf_counter() - started
        started = time.perf_counter()
        tools = {tool.name for tool in (await mcp_client.list_tools()).tools}
        warm = time.perf_counter() - started
    print(f"\nMCP over LocalStack ESM: first call {first:.2f}s, warm {warm:.2f}s")
    assert result.structured_content == {"a": 2.0, "b": 40.0, "sum": 42.0}
    assert {"echo", "add", "divide"} <= tools
