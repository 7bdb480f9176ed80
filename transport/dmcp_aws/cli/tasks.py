"""Tasks from the command line: `dmcp call TOOL --task [--no-wait]` and `dmcp task get|wait|cancel ID`.

    dmcp call slow_report --arg topic=q3 --task --no-wait     # prints the task id and returns
    dmcp task wait TASK_ID                                    # a live status line, then the result
    dmcp task get TASK_ID                                     # the task as JSON
    dmcp task cancel TASK_ID

A task belongs to the client that created it (`--client`, or the settings' default client), so
`get`, `wait` and `cancel` work from any shell and any process of that client. The task id goes to
stdout, status to stderr.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.text import Text

from dmcp_aws.cli._common import CliError, err, explain
from dmcp_aws.cli._target import (
    DEFAULT_ENV_FILE,
    ClientOption,
    EndpointOption,
    EnvFileOption,
    RegionOption,
    ServerOption,
    StackOption,
    TimeoutOption,
)
from dmcp_aws.cli.mcp_verbs import Connection, print_data, show_tool_result

if TYPE_CHECKING:
    from dmcp_aws.tasks.client import TaskClient
    from dmcp_aws.tasks.model import DetailedTask

T = TypeVar("T")

app = typer.Typer(
    name="task",
    help="Tasks: get, wait for or cancel a task by id (from `dmcp call TOOL --task`).",
    no_args_is_help=True,
    rich_markup_mode=None,
)
TaskIdArgument = Annotated[str, typer.Argument(help="The task id `dmcp call --task` printed.")]


def run_tasks(connection: Connection, work: Callable[[TaskClient], Awaitable[T]]) -> T:
    """Open a task client on a new connection, run `work`, close."""
    import anyio

    async def main() -> T:
        from dmcp_aws.client import TopicTarget
        from dmcp_aws.tasks.client import TaskClient

        target = TopicTarget(connection.settings.topic_arn, connection.server)
        async with TaskClient.connect(target, **connection.options) as client:
            return await work(client)

    try:
        return anyio.run(main)
    except Exception as exc:
        raise explain(exc) from exc


def call_as_task(connection: Connection, tool: str, arguments: dict[str, Any], *, wait: bool) -> None:
    """`dmcp call --task`: print the task id; unless `wait` is False, wait and print the result."""

    async def work(client: TaskClient) -> Any:
        from dmcp_aws.tasks.model import CreateTaskResult

        created = await client.call_tool(tool, arguments)
        if not isinstance(created, CreateTaskResult):
            return created  # the server answered at once: the tool is not task-capable
        _write(created.task_id)
        err.print(Text(f"task {created.task_id} is {created.status}"))
        return await _wait(client, created.task_id) if wait else None

    outcome = run_tasks(connection, work)
    if outcome is not None:
        _show_outcome(outcome)


def get(
    task_id: TaskIdArgument,
    server: ServerOption = None,
    stack: StackOption = None,
    endpoint_url: EndpointOption = None,
    region: RegionOption = None,
    client: ClientOption = None,
    env_file: EnvFileOption = DEFAULT_ENV_FILE,
    timeout: TimeoutOption = None,
) -> None:
    """Show a task as JSON (tasks/get): its status, and its result or error once it ended."""
    from dmcp_aws.tasks.model import wire

    connection = Connection(server, stack, endpoint_url, region, client, env_file, timeout)
    task = run_tasks(connection, lambda c: c.get(task_id))
    print_data(wire(task))


def wait(
    task_id: TaskIdArgument,
    server: ServerOption = None,
    stack: StackOption = None,
    endpoint_url: EndpointOption = None,
    region: RegionOption = None,
    client: ClientOption = None,
    env_file: EnvFileOption = DEFAULT_ENV_FILE,
    timeout: TimeoutOption = None,
) -> None:
    """Wait for a task with a live status line, then print its result (a tool error exits with 1)."""
    connection = Connection(server, stack, endpoint_url, region, client, env_file, timeout)
    _show_outcome(run_tasks(connection, lambda c: _wait(c, task_id)))


def cancel(
    task_id: TaskIdArgument,
    server: ServerOption = None,
    stack: StackOption = None,
    endpoint_url: EndpointOption = None,
    region: RegionOption = None,
    client: ClientOption = None,
    env_file: EnvFileOption = DEFAULT_ENV_FILE,
    timeout: TimeoutOption = None,
) -> None:
    """Ask for a task to be cancelled (tasks/cancel); the tool stops when it next checks."""
    connection = Connection(server, stack, endpoint_url, region, client, env_file, timeout)
    run_tasks(connection, lambda c: c.cancel(task_id))
    err.print(Text(f"asked for task {task_id} to be cancelled"))


for verb in (get, wait, cancel):
    app.command()(verb)


async def _wait(client: TaskClient, task_id: str) -> DetailedTask:
    """Wait for the task, showing its status as it changes (a live line on a terminal)."""
    last: list[str] = []

    def line(task: DetailedTask) -> str:
        return f"task {task.task_id[:12]}… {task.status}" + (
            f": {task.status_message}" if task.status_message else ""
        )

    if not err.is_terminal:

        def show(task: DetailedTask) -> None:
            text = line(task)
            if not last or last[-1] != text:
                last.append(text)
                err.print(Text(text))

        return await client.wait(task_id, on_update=show)
    with err.status("") as status:
        return await client.wait(task_id, on_update=lambda task: status.update(Text(line(task))))


def _show_outcome(outcome: Any) -> None:
    """A task's result as `dmcp call` shows a tool's; a failed or cancelled task is an error."""
    from dmcp_aws.tasks.client import result_of
    from dmcp_aws.tasks.model import DetailedTask

    if isinstance(outcome, DetailedTask):
        if outcome.status == "cancelled":
            raise CliError(f"task {outcome.task_id} was cancelled", code=1)
        try:
            outcome = result_of(outcome)
        except Exception as exc:
            raise explain(exc) from exc
    show_tool_result(outcome)
    if outcome.is_error:
        raise typer.Exit(1)


def _write(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()
