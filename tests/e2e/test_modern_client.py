"""A real `mcp.Client` in its default mode (2026-07-28, `server/discover`) over the embedded stack."""

from __future__ import annotations

import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

from dmcp_aws.client import sqs_client_transport
from dmcp_aws.local.stack import RunningStack

from .raw import EXAMPLE_TOOLS

pytestmark = pytest.mark.anyio


def _client(stack: RunningStack, *, via_queue: bool = False) -> Client:
    target = stack.queue_target("example") if via_queue else stack.topic_target("example")
    return Client(sqs_client_transport(target, **stack.client_options()), read_timeout_seconds=30)


async def test_discovery_negotiates_the_stateless_protocol(stack: RunningStack) -> None:
    async with _client(stack) as client:
        assert client.session.protocol_version == "2026-07-28"
        tools = {tool.name for tool in (await client.list_tools()).tools}
        assert tools == EXAMPLE_TOOLS


async def test_tool_with_structured_output(stack: RunningStack) -> None:
    async with _client(stack) as client:
        result = await client.call_tool("add", {"a": 2, "b": 40})
        assert not result.is_error
        assert result.structured_content == {"a": 2.0, "b": 40.0, "sum": 42.0}


async def test_progress_arrives_while_the_call_runs(stack: RunningStack) -> None:
    import time

    seen: list[tuple[float, float | None, str | None]] = []
    arrived: list[float] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total, message))
        arrived.append(time.monotonic())

    async with _client(stack) as client:
        result = await client.call_tool(
            "count_slowly", {"steps": 4, "delay_s": 0.25}, progress_callback=on_progress
        )
        finished = time.monotonic()
    assert result.content[0].text == "counted to 4"  # type: ignore[union-attr]
    assert sorted(p for p, _, _ in seen) == [1.0, 2.0, 3.0, 4.0]
    assert all(total == 4 for _, total, _ in seen)
    assert "step 1 of 4" in {m for _, _, m in seen}
    # Streamed, not batched at the end: step 1 came about three steps (0.75 s) before the result.
    assert finished - min(arrived) > 0.4


async def test_tool_error_is_a_tool_result(stack: RunningStack) -> None:
    async with _client(stack) as client:
        result = await client.call_tool("divide", {"a": 1, "b": 0})
    assert result.is_error
    assert "cannot divide by zero" in result.content[0].text  # type: ignore[union-attr]


async def test_unknown_tool_and_invalid_arguments_are_reported(stack: RunningStack) -> None:
    async with _client(stack) as client:
        unknown = await client.call_tool("no_such_tool", {})
        invalid = await client.call_tool("add", {"a": "not a number", "b": 1})
        missing = await client.call_tool("add", {"a": 1})
    assert unknown.is_error and "Unknown tool: no_such_tool" in unknown.content[0].text  # type: ignore[union-attr]
    assert invalid.is_error and "valid number" in invalid.content[0].text  # type: ignore[union-attr]
    assert missing.is_error and "Field required" in missing.content[0].text  # type: ignore[union-attr]


async def test_resources_and_templates(stack: RunningStack) -> None:
    async with _client(stack) as client:
        resources = (await client.list_resources()).resources
        templates = (await client.list_resource_templates()).resource_templates
        about = await client.read_resource("dmcp://example/about")
        greeting = await client.read_resource("dmcp://example/greeting/ada")
        with pytest.raises(MCPError, match="Unknown resource"):
            await client.read_resource("dmcp://example/nothing-here")
    assert [str(r.uri) for r in resources] == ["dmcp://example/about"]
    assert [t.uri_template for t in templates] == ["dmcp://example/greeting/{name}"]
    assert "SNS and SQS" in about.contents[0].text  # type: ignore[union-attr]
    assert greeting.contents[0].text == "Hello, ada!"  # type: ignore[union-attr]


async def test_prompt_with_arguments(stack: RunningStack) -> None:
    async with _client(stack) as client:
        prompts = (await client.list_prompts()).prompts
        prompt = await client.get_prompt("review_code", {"code": "x = 1", "language": "rust"})
        with pytest.raises(MCPError):
            await client.get_prompt("review_code", {})
    assert [p.name for p in prompts] == ["review_code"]
    assert [a.name for a in prompts[0].arguments or []] == ["code", "language"]
    text = prompt.messages[0].content.text  # type: ignore[union-attr]
    assert "rust code" in text and "x = 1" in text


async def test_straight_to_the_request_queue(stack: RunningStack) -> None:
    async with _client(stack, via_queue=True) as client:
        result = await client.call_tool("echo", {"text": "no topic in between"})
    assert result.content[0].text == "no topic in between"  # type: ignore[union-attr]


async def test_unknown_server_gets_an_error_not_silence(stack: RunningStack) -> None:
    transport = sqs_client_transport(stack.topic_target("nobody-serves-this"), **stack.client_options())
    expected = pytest.RaisesExc(MCPError, match="no server named 'nobody-serves-this' is deployed")
    with pytest.RaisesGroup(expected, flatten_subgroups=True, allow_unwrapped=True):
        async with Client(transport, read_timeout_seconds=30):
            pass


async def test_created_reply_queue_is_deleted_on_close(stack: RunningStack, sqs) -> None:  # type: ignore[no-untyped-def]
    async def reply_queues() -> set[str]:
        return set((await sqs.list_queues(QueueNamePrefix=stack.reply_prefix)).get("QueueUrls", []))

    before = await reply_queues()
    async with _client(stack) as client:
        await client.list_tools()
        created = await reply_queues() - before
        assert len(created) == 1, "the connection creates one reply queue under the prefix"
    assert not created & await reply_queues()


async def test_a_deleted_reply_queue_fails_waiting_calls_instead_of_hanging(stack: RunningStack, sqs) -> None:  # type: ignore[no-untyped-def]
    import anyio

    reply = (await sqs.create_queue(QueueName=f"{stack.reply_prefix}doomed"))["QueueUrl"]
    errors: list[Exception] = []

    async def on_message(message: object) -> None:
        if isinstance(message, Exception):
            errors.append(message)

    transport = sqs_client_transport(
        stack.topic_target("example"), reply_queue_url=reply, wait_time_seconds=1, **stack.client_options()
    )
    with anyio.fail_after(30):
        async with Client(transport, message_handler=on_message) as client:
            await sqs.delete_queue(QueueUrl=reply)
            with pytest.raises(MCPError, match="Connection closed"):
                await client.call_tool("count_slowly", {"steps": 20, "delay_s": 0.2})
    assert any("cannot read reply queue" in str(error) for error in errors), errors


async def test_fifo_reply_queue_keeps_progress_and_result_in_order(stack: RunningStack, sqs) -> None:  # type: ignore[no-untyped-def]
    name = f"{stack.reply_prefix}ordered.fifo"
    reply = (await sqs.create_queue(QueueName=name, Attributes={"FifoQueue": "true"}))["QueueUrl"]
    seen: list[float] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(progress)

    transport = sqs_client_transport(
        stack.topic_target("example"), reply_queue_url=reply, **stack.client_options()
    )
    async with Client(transport, read_timeout_seconds=30) as client:
        result = await client.call_tool(
            "count_slowly", {"steps": 6, "delay_s": 0}, progress_callback=on_progress
        )
    assert result.content[0].text == "counted to 6"  # type: ignore[union-attr]
    assert seen == [1, 2, 3, 4, 5, 6], "every progress notification, in order, before the result"


async def test_another_live_connections_reply_is_left_for_it(stack: RunningStack, sqs) -> None:  # type: ignore[no-untyped-def]
    from dmcp_aws.wire import to_sqs_attributes

    reply = (await sqs.create_queue(QueueName=f"{stack.reply_prefix}shared"))["QueueUrl"]
    foreign = {
        "dmcp.version": "1",
        "mcp.server": "example",
        "dmcp.conn": "someone-else",
        "dmcp.request-digest": "0" * 64,
    }
    body = '{"jsonrpc": "2.0", "id": 1, "result": {}}'
    await sqs.send_message(QueueUrl=reply, MessageBody=body, MessageAttributes=to_sqs_attributes(foreign))
    transport = sqs_client_transport(
        stack.topic_target("example"), reply_queue_url=reply, **stack.client_options()
    )
    async with Client(transport, read_timeout_seconds=30) as client:
        assert (await client.call_tool("echo", {"text": "mine"})).content[0].text == "mine"  # type: ignore[union-attr]

    # the transport held it back for 6 s (the first time it passed over it), then it is there again
    left = await sqs.receive_message(QueueUrl=reply, MessageAttributeNames=["All"], WaitTimeSeconds=12)
    assert [m["MessageAttributes"]["dmcp.conn"]["StringValue"] for m in left.get("Messages", [])] == [
        "someone-else"
    ]


async def test_fifo_reply_with_a_string_id_that_is_no_valid_group_id(stack: RunningStack, sqs) -> None:  # type: ignore[no-untyped-def]
    import json

    from .raw import new_conn, receive_matching, request_attributes, send

    reply = (
        await sqs.create_queue(QueueName=f"{stack.reply_prefix}ids.fifo", Attributes={"FifoQueue": "true"})
    )["QueueUrl"]
    conn = new_conn()
    request = {
        "jsonrpc": "2.0",
        "id": "ünïcode id with spaces",
        "method": "tools/call",
        "params": {
            "name": "echo",
            "arguments": {"text": "fifo"},
            "_meta": {
                "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientCapabilities": {},
            },
        },
    }
    requests = stack.queue_url(stack.worker("example").request_queue)
    await send(sqs, requests, json.dumps(request), request_attributes(stack, reply, conn))
    [(body, _)] = await receive_matching(sqs, reply, conn)
    assert json.loads(body)["id"] == "ünïcode id with spaces"
