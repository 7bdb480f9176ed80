"""Many clients at once: every answer reaches the caller that asked."""

from __future__ import annotations

import anyio
import pytest
from mcp import Client

from dmcp_aws.client import sqs_client_transport
from dmcp_aws.local.stack import RunningStack

pytestmark = pytest.mark.anyio

CLIENTS = 3
CALLS_PER_CLIENT = 20


async def test_three_clients_twenty_concurrent_calls_each(stack: RunningStack) -> None:
    answers: dict[tuple[int, int], str] = {}

    async def one_client(client_no: int) -> None:
        transport = sqs_client_transport(stack.topic_target("example"), **stack.client_options())
        async with Client(transport, read_timeout_seconds=60) as client, anyio.create_task_group() as tg:

            async def call(call_no: int) -> None:
                result = await client.call_tool("echo", {"text": f"client {client_no} call {call_no}"})
                answers[(client_no, call_no)] = result.content[0].text  # type: ignore[union-attr]

            for call_no in range(CALLS_PER_CLIENT):
                tg.start_soon(call, call_no)

    with anyio.fail_after(120):
        async with anyio.create_task_group() as tg:
            for client_no in range(CLIENTS):
                tg.start_soon(one_client, client_no)

    assert len(answers) == CLIENTS * CALLS_PER_CLIENT
    for (client_no, call_no), text in answers.items():
        assert text == f"client {client_no} call {call_no}"
