"""A server for the protocol tests: what a held connection does, observable from a test.

The embedded stack runs its workers as threads of the test process, so what this server
records (`SEEN`) the test reads directly. The same `mcp` object serves the SDK's in-memory
transport, the behaviour the queue must equal.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.resolve import Elicit, ListRoots, Resolve, Sample
from mcp_types import (
    CancelledNotificationParams,
    CreateMessageResult,
    ListRootsResult,
    NotificationParams,
    ProgressNotificationParams,
    SamplingMessage,
    TextContent,
)
from pydantic import BaseModel

from dmcp_aws.lambda_handler import make_lambda_handler

mcp = MCPServer("protocol", instructions="Test server for held-connection behaviour over the queue.")

SEEN: list[tuple[str, Any]] = []
"""What the server observed, in order: (event, detail)."""


class Name(BaseModel):
    """What `greet` elicits."""

    name: str


def ask_name() -> Elicit[Name]:
    return Elicit("What is your name?", Name)


def ask_model(topic: str) -> Sample:
    content = TextContent(type="text", text=f"One word about {topic}")
    return Sample([SamplingMessage(role="user", content=content)], max_tokens=5)


def ask_roots() -> ListRoots:
    return ListRoots()


@mcp.tool()
def greet(who: Annotated[Name, Resolve(ask_name)]) -> str:
    """Elicit a name, then greet it."""
    SEEN.append(("greeted", who.name))
    return f"Hello, {who.name}!"


@mcp.tool()
def muse(topic: str, reply: Annotated[CreateMessageResult, Resolve(ask_model)]) -> str:
    """Sample the client's model about `topic`."""
    return f"the model said: {reply.content.text}"  # type: ignore[union-attr]


@mcp.tool()
def roots(listed: Annotated[ListRootsResult, Resolve(ask_roots)]) -> list[str]:
    """The client's roots."""
    return [str(root.uri) for root in listed.roots]


@mcp.tool()
async def visit(ctx: Context) -> str:
    """Ask the user to open a URL (URL-mode elicitation)."""
    answer = await ctx.elicit_url("Please sign in", "https://example.com/sign-in", "sign-in-1")
    return f"the user chose to {answer.action}"


@mcp.tool()
async def ping_client(ctx: Context) -> str:
    """Ping the client (a server-to-client `ping`)."""
    await ctx.session.send_ping()
    return "pong"


@mcp.tool()
def whoami(ctx: Context) -> dict[str, Any]:
    """What the connection knows of its client: `initialize`'s clientInfo and capabilities."""
    params = ctx.session.client_params
    capabilities = ctx.session.client_capabilities
    return {
        "client": params.client_info.name if params is not None else None,
        "sampling": bool(capabilities and capabilities.sampling is not None),
        "elicitation": bool(capabilities and capabilities.elicitation is not None),
    }


@mcp.tool()
def boom() -> str:
    """A tool that raises."""
    raise ValueError("boom went the tool")


@mcp.tool()
async def linger(tag: str, seconds: float = 20.0) -> str:
    """Run for `seconds` unless cancelled; records how it ended under `tag`."""
    SEEN.append(("started", tag))
    try:
        await anyio.sleep(seconds)
    except anyio.get_cancelled_exc_class():
        SEEN.append(("cancelled", tag))
        raise
    SEEN.append(("finished", tag))
    return f"{tag} ran to the end"


@mcp.tool()
async def late_progress(ctx: Context) -> str:
    """Answer at once, then report progress 0.3 s later (after the response)."""

    async def report_late() -> None:
        await asyncio.sleep(0.3)
        await ctx.report_progress(99, 100, "too late")
        SEEN.append(("late_progress_sent", ctx.request_id))

    asyncio.get_running_loop().create_task(report_late())
    return "answered"


@mcp.prompt()
def review(code: str, times: int = 1) -> str:
    """A prompt with a required and a typed argument."""
    return code * times


async def _on_roots_changed(ctx: Any, params: NotificationParams) -> None:
    SEEN.append(("roots_list_changed", None))


async def _on_progress(ctx: Any, params: ProgressNotificationParams) -> None:
    SEEN.append(("client_progress", params.progress_token))


async def _on_cancelled(ctx: Any, params: CancelledNotificationParams) -> None:
    SEEN.append(("cancelled_notification", params.request_id))


_server = mcp._lowlevel_server
_server.add_notification_handler("notifications/roots/list_changed", NotificationParams, _on_roots_changed)
_server.add_notification_handler("notifications/progress", ProgressNotificationParams, _on_progress)
_server.add_notification_handler("notifications/cancelled", CancelledNotificationParams, _on_cancelled)

handler = make_lambda_handler(mcp)
