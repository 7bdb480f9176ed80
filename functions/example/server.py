"""The example MCP server the kit deploys: one of each kind of MCP feature."""

from __future__ import annotations

from typing import Annotated

import anyio
from mcp.server.elicitation import AcceptedElicitation, ElicitationResult
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.resolve import Elicit, Resolve
from mcp_types import ToolAnnotations
from pydantic import BaseModel, Field

from dmcp_aws.request_context import current_request
from dmcp_aws.tasks import current_task, task_cancelled, task_tool
from functions.example.tickets import NoTicketTable, ticket_for

mcp = MCPServer(
    "example", instructions="An example dMCP server: arithmetic, progress, a resource and a prompt."
)

READ_ONLY = ToolAnnotations(readOnlyHint=True)
"""No side effects: a redelivered call may simply run again, so it skips the request ledger
(`dmcp_aws.run_once`). `take_ticket`, which has one, is not annotated and runs once."""


class Sum(BaseModel):
    """The structured result of `add`."""

    a: float
    b: float
    sum: float = Field(description="a + b")


@mcp.tool(annotations=READ_ONLY)
def echo(text: str) -> str:
    """Return the text unchanged (the benchmark's tool)."""
    return text


@mcp.tool(annotations=READ_ONLY)
def add(a: float, b: float) -> Sum:
    """Add two numbers; the result is structured."""
    return Sum(a=a, b=b, sum=a + b)


@mcp.tool(annotations=READ_ONLY)
def divide(a: float, b: float) -> float:
    """Divide a by b; dividing by zero is a tool error."""
    if b == 0:
        raise ToolError("cannot divide by zero")
    return a / b


@mcp.tool()
async def take_ticket() -> int:
    """Hand out the next ticket number: a side effect that must happen once per request.

    The ticket is kept in DynamoDB under the request's idempotency key, so a request that runs
    again (its worker died before the answer was recorded) gets the same ticket back."""
    key = current_request().idempotency_key
    try:
        return await anyio.to_thread.run_sync(ticket_for, key)
    except NoTicketTable as exc:
        raise ToolError(str(exc)) from None


@mcp.tool(annotations=READ_ONLY)
async def count_slowly(steps: int, ctx: Context, delay_s: float = 0.05) -> str:
    """Count to `steps`, reporting progress after each step."""
    if not 1 <= steps <= 100:
        raise ToolError("steps must be between 1 and 100")
    for step in range(1, steps + 1):
        await anyio.sleep(delay_s)
        await ctx.report_progress(step, steps, f"step {step} of {steps}")
    return f"counted to {steps}"


class Guest(BaseModel):
    """What `sign_guestbook` asks the user."""

    name: str = Field(description="Your name, as it should appear in the guestbook")


def ask_for_name() -> Elicit[Guest]:
    return Elicit("Who is signing the guestbook?", Guest)


@mcp.tool(annotations=READ_ONLY)
def sign_guestbook(answer: Annotated[ElicitationResult[Guest], Resolve(ask_for_name)]) -> str:
    """Ask the user for their name (an elicitation), then thank them."""
    if not isinstance(answer, AcceptedElicitation):
        return f"The guestbook stays unsigned ({answer.action})."
    return f"Thank you for signing, {answer.data.name}!"


stopped_tasks: list[str] = []
"""Ids of the tasks `slow_report` stopped because they were cancelled (in this process)."""


@mcp.tool(meta=task_tool())
async def slow_report(topic: str, ctx: Context, seconds: float = 5.0) -> str:
    """Write a numbered report on `topic` in ten sections over `seconds` (a task for clients that
    declare the Tasks extension). Its number is a ticket: taken once per request, however often
    the work runs. Stops early when its task is cancelled."""
    if not 0 <= seconds <= 600:
        raise ToolError("seconds must be between 0 and 600")
    try:
        number = await anyio.to_thread.run_sync(ticket_for, current_request().idempotency_key)
    except NoTicketTable:
        number = 0
    sections = 10
    for section in range(1, sections + 1):
        task = current_task()
        if task is not None and task_cancelled():
            stopped_tasks.append(task.task_id)
            return f"report {number} on {topic}: stopped after {section - 1} of {sections} sections"
        await anyio.sleep(seconds / sections)
        await ctx.report_progress(section, sections, f"section {section} of {sections}")
    return f"report {number} on {topic}: {sections} sections"


@mcp.resource("dmcp://example/about", mime_type="text/plain")
def about() -> str:
    """What this server is."""
    return "dMCP example server: MCP over Amazon SNS and SQS, served by a stateless worker."


@mcp.resource("dmcp://example/greeting/{name}", mime_type="text/plain")
def greeting(name: str) -> str:
    """A greeting for `name` (a resource template)."""
    return f"Hello, {name}!"


@mcp.prompt()
def review_code(code: str, language: str = "python") -> str:
    """Ask for a review of a piece of code."""
    return f"Please review this {language} code and point out bugs and unclear names:\n\n{code}"
