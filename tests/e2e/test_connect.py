"""`dmcp_aws.connect.connect` (issue 12): a process probes a server once; later connections reuse
what `server/discover` said, so connecting again costs no AWS call with a provisioned queue."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from aiobotocore.client import AioBaseClient

from dmcp_aws.connect import connect, forget_discovered
from dmcp_aws.local.stack import RunningStack

pytestmark = pytest.mark.anyio


@pytest.fixture
def aws_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The AWS operations this process's async clients call (client transport, workers, pollers)."""
    calls: list[str] = []
    original = AioBaseClient._make_api_call

    async def counted(client: Any, operation: str, params: Any) -> Any:
        calls.append(operation)
        return await original(client, operation, params)

    monkeypatch.setattr(AioBaseClient, "_make_api_call", counted)
    forget_discovered()
    yield calls
    forget_discovered()


async def test_a_second_connection_reuses_the_discover_result(
    stack: RunningStack, sqs: Any, aws_calls: list[str]
) -> None:
    name = f"{stack.reply_prefix}laptop"  # the provisioned client's reply queue
    options = {"endpoint_url": stack.endpoint_url, "reply_queue_url": stack.queue_url(name)}
    async with connect(stack.topic_target("example"), **options) as first:
        assert first.session.protocol_version == "2026-07-28"
        capabilities = first.session.server_capabilities
        assert (await first.call_tool("echo", {"text": "one"})).content[0].text == "one"  # type: ignore[union-attr]
    assert "Publish" in aws_calls  # the probe (and the call)
    aws_calls.clear()
    async with connect(stack.topic_target("example"), **options) as second:
        connecting = list(aws_calls)
        assert second.session.server_capabilities == capabilities
        assert (await second.call_tool("echo", {"text": "two"})).content[0].text == "two"  # type: ignore[union-attr]
    # No probe: nothing published or sent (the stack's pollers may receive and delete meanwhile:
    # the hook counts every call of the process).
    assert not {"Publish", "SendMessage", "CreateQueue"} & set(connecting), connecting
    aws_calls.clear()
    async with connect(stack.topic_target("example"), rediscover=True, **options):
        assert "Publish" in aws_calls
