"""The handshake generation (2025-11-25): `ClientSession.initialize()` over the embedded stack."""

from __future__ import annotations

import pytest
from mcp import Client
from mcp.client.session import ClientSession

from dmcp_aws.client import sqs_client_transport
from dmcp_aws.local.stack import RunningStack

from .raw import EXAMPLE_TOOLS

pytestmark = pytest.mark.anyio


async def test_initialize_then_every_feature(stack: RunningStack) -> None:
    progress: list[float] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append(value)

    async with (
        sqs_client_transport(stack.topic_target("example"), **stack.client_options()) as (read, write),
        ClientSession(read, write) as session,
    ):
        init = await session.initialize()
        assert init.protocol_version == "2025-11-25"
        assert init.server_info.name == "example"
        assert init.capabilities.tools is not None and init.capabilities.prompts is not None

        tools = await session.list_tools()
        names = {t.name for t in tools.tools}
        assert names == EXAMPLE_TOOLS
        added = await session.call_tool("add", {"a": 1.5, "b": 2})
        assert added.structured_content == {"a": 1.5, "b": 2.0, "sum": 3.5}
        counted = await session.call_tool("count_slowly", {"steps": 3}, progress_callback=on_progress)
        assert counted.content[0].text == "counted to 3"  # type: ignore[union-attr]
        failed = await session.call_tool("divide", {"a": 1, "b": 0})
        assert failed.is_error
        unknown = await session.call_tool("nope", {})
        assert unknown.is_error

        assert (await session.read_resource("dmcp://example/greeting/bo")).contents[0].text == "Hello, bo!"  # type: ignore[union-attr]
        templates = await session.list_resource_templates()
        assert templates.resource_templates[0].uri_template == "dmcp://example/greeting/{name}"
        prompt = await session.get_prompt("review_code", {"code": "pass"})
        assert "pass" in prompt.messages[0].content.text  # type: ignore[union-attr]
    assert sorted(progress) == [1.0, 2.0, 3.0]


async def test_client_in_legacy_mode(stack: RunningStack) -> None:
    transport = sqs_client_transport(stack.topic_target("example"), **stack.client_options())
    async with Client(transport, mode="legacy", read_timeout_seconds=30) as client:
        assert client.session.protocol_version == "2025-11-25"
        result = await client.call_tool("echo", {"text": "handshake era"})
    assert result.content[0].text == "handshake era"  # type: ignore[union-attr]
