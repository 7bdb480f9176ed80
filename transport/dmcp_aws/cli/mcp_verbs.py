"""The MCP verbs, as MCP Inspector's CLI has them: `tools`, `call`, `resources`, `read`,
`prompts`, `prompt`, `ping`, against `dmcp dev` or a deployed stack (`--stack NAME`).

    dmcp tools
    dmcp call add --arg a=2 --arg b=40
    dmcp call count_slowly --json '{"steps": 5}' --timeout 30
    dmcp call slow_report --arg topic=q3 --task --no-wait   (then `dmcp task wait ID`)
    dmcp read dmcp://example/about
    dmcp prompt review_code --arg code='def f(): pass'

Each verb opens one client connection (a per-connection reply queue), does its request and
closes. Results go to stdout; errors, progress and status to stderr.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.table import Table
from rich.text import Text

from dmcp_aws.cli._common import (
    CliError,
    configure_logging,
    err,
    explain,
    out,
    parse_assignments,
    parse_json_object,
)
from dmcp_aws.cli._target import (
    DEFAULT_ENV_FILE,
    ClientOption,
    EndpointOption,
    EnvFileOption,
    RegionOption,
    ServerOption,
    StackOption,
    TimeoutOption,
    check,
    resolve,
)

if TYPE_CHECKING:
    from mcp import Client

T = TypeVar("T")

ArgOption = Annotated[
    list[str] | None,
    typer.Option(
        "--arg",
        "-a",
        help="An argument as KEY=VALUE (repeatable); VALUE is JSON when it parses as JSON, else a string.",
    ),
]


class Connection:
    """What one verb needs to open a client: the target and the transport's options."""

    def __init__(
        self,
        server: str | None,
        stack: str | None,
        endpoint_url: str | None,
        region: str | None,
        client: str | None,
        env_file: Path,
        timeout: float | None,
    ) -> None:
        configure_logging(logging_level())
        self.settings = check(resolve(stack, endpoint_url=endpoint_url, region=region, env_file=env_file))
        self.server = self.settings.pick_server(server)
        self.options = self.settings.client_options(client, timeout)

    def run(self, work: Callable[[Client], Awaitable[T]]) -> T:
        """Connect, run `work` with the client, disconnect."""
        import anyio

        async def main() -> T:
            from mcp import Client

            from dmcp_aws.client import TopicTarget, sqs_client_transport

            target = TopicTarget(self.settings.topic_arn, self.server)
            async with Client(sqs_client_transport(target, **self.options)) as client:
                return await work(client)

        try:
            return anyio.run(main)
        except BaseException as exc:
            hint = self.reply_prefix_hint()
            if hint is None:
                raise
            error = explain(exc)
            if "-32001" not in str(error):
                raise
            raise CliError(str(error), hint, code=error.code) from exc

    def reply_prefix_hint(self) -> str | None:
        """Why no answer can come, when the reply queues are outside the deployment's prefix."""
        prefix = self.options.get("reply_prefix")
        wanted = self.settings.connection_prefix
        if "reply_queue_url" in self.options or not prefix or prefix.startswith(wanted):
            return None
        return (
            f"replies go to queues named {prefix}…, which are not under the deployment's reply prefix "
            f"({wanted}): its workers refuse them (see `dmcp dlq {self.server}`); fix DMCP_REPLY_PREFIX"
        )


def logging_level() -> int:
    import logging

    return logging.CRITICAL  # the command reports what matters itself; --debug shows the rest


def tools(
    server: ServerOption = None,
    stack: StackOption = None,
    endpoint_url: EndpointOption = None,
    region: RegionOption = None,
    client: ClientOption = None,
    env_file: EnvFileOption = DEFAULT_ENV_FILE,
    timeout: TimeoutOption = None,
) -> None:
    """List a server's tools (tools/list)."""
    connection = Connection(server, stack, endpoint_url, region, client, env_file, timeout)
    found = connection.run(lambda c: _all(c.list_tools, "tools"))
    table = Table(title=f"tools of {connection.server}", title_justify="left")
    for column in ("tool", "arguments (* required)", "description"):
        table.add_column(column)
    for tool in found:
        table.add_row(
            Text(tool.name), Text(schema_arguments(tool.input_schema)), Text(_first_line(tool.description))
        )
    _print_table(table, len(found), "tools")


def call(
    tool: Annotated[str, typer.Argument(help="The tool to call.")],
    args: ArgOption = None,
    arguments: Annotated[
        str | None, typer.Option("--json", help="The tool's arguments as a JSON object (--arg adds to it).")
    ] = None,
    server: ServerOption = None,
    stack: StackOption = None,
    endpoint_url: EndpointOption = None,
    region: RegionOption = None,
    client: ClientOption = None,
    env_file: EnvFileOption = DEFAULT_ENV_FILE,
    timeout: TimeoutOption = None,
    task: Annotated[
        bool,
        typer.Option("--task", help="Call it as a task (Tasks extension): print the task id, then wait."),
    ] = False,
    no_wait: Annotated[
        bool, typer.Option("--no-wait", help="With --task: print the task id and return at once.")
    ] = False,
) -> None:
    """Call a tool (tools/call) and print its result; a tool error exits with 1."""
    values = parse_json_object(arguments) | parse_assignments(args or [])
    connection = Connection(server, stack, endpoint_url, region, client, env_file, timeout)
    if task or no_wait:
        from dmcp_aws.cli.tasks import call_as_task

        call_as_task(connection, tool, values, wait=not no_wait)
        return
    result = connection.run(lambda c: _call_with_progress(c, tool, values))
    show_tool_result(result)
    if result.is_error:
        raise typer.Exit(1)


def resources(
    server: ServerOption = None,
    stack: StackOption = None,
    endpoint_url: EndpointOption = None,
    region: RegionOption = None,
    client: ClientOption = None,
    env_file: EnvFileOption = DEFAULT_ENV_FILE,
    timeout: TimeoutOption = None,
) -> None:
    """List a server's resources and resource templates (resources/list, resources/templates/list)."""
    connection = Connection(server, stack, endpoint_url, region, client, env_file, timeout)

    async def both(c: Client) -> tuple[list[Any], list[Any]]:
        return await _all(c.list_resources, "resources"), await _all(
            c.list_resource_templates, "resource_templates"
        )

    listed, templates = connection.run(both)
    table = Table(title=f"resources of {connection.server}", title_justify="left")
    for column in ("uri", "name", "mime type", "description"):
        table.add_column(column)
    for resource in listed:
        table.add_row(
            Text(str(resource.uri)),
            Text(resource.name),
            Text(resource.mime_type or ""),
            Text(_first_line(resource.description)),
        )
    for template in templates:
        table.add_row(
            Text(template.uri_template),
            Text(f"{template.name} (template)"),
            Text(template.mime_type or ""),
            Text(_first_line(template.description)),
        )
    _print_table(table, len(listed) + len(templates), "resources")


def read(
    uri: Annotated[str, typer.Argument(help="The resource's URI.")],
    server: ServerOption = None,
    stack: StackOption = None,
    endpoint_url: EndpointOption = None,
    region: RegionOption = None,
    client: ClientOption = None,
    env_file: EnvFileOption = DEFAULT_ENV_FILE,
    timeout: TimeoutOption = None,
) -> None:
    """Read a resource (resources/read) and print its contents."""
    connection = Connection(server, stack, endpoint_url, region, client, env_file, timeout)
    result = connection.run(lambda c: c.read_resource(uri))
    for contents in result.contents:
        _print_contents(contents)


def prompts(
    server: ServerOption = None,
    stack: StackOption = None,
    endpoint_url: EndpointOption = None,
    region: RegionOption = None,
    client: ClientOption = None,
    env_file: EnvFileOption = DEFAULT_ENV_FILE,
    timeout: TimeoutOption = None,
) -> None:
    """List a server's prompts (prompts/list)."""
    connection = Connection(server, stack, endpoint_url, region, client, env_file, timeout)
    found = connection.run(lambda c: _all(c.list_prompts, "prompts"))
    table = Table(title=f"prompts of {connection.server}", title_justify="left")
    for column in ("prompt", "arguments (* required)", "description"):
        table.add_column(column)
    for prompt in found:
        names = ", ".join(f"{a.name}{'*' if a.required else ''}" for a in prompt.arguments or [])
        table.add_row(Text(prompt.name), Text(names), Text(_first_line(prompt.description)))
    _print_table(table, len(found), "prompts")


def prompt(
    name: Annotated[str, typer.Argument(help="The prompt's name.")],
    args: Annotated[
        list[str] | None, typer.Option("--arg", "-a", help="A prompt argument as KEY=VALUE (repeatable).")
    ] = None,
    server: ServerOption = None,
    stack: StackOption = None,
    endpoint_url: EndpointOption = None,
    region: RegionOption = None,
    client: ClientOption = None,
    env_file: EnvFileOption = DEFAULT_ENV_FILE,
    timeout: TimeoutOption = None,
) -> None:
    """Get a prompt (prompts/get) and print its messages."""
    values = {k: str(v) for k, v in parse_assignments(args or [], as_json=False).items()}
    connection = Connection(server, stack, endpoint_url, region, client, env_file, timeout)
    result = connection.run(lambda c: c.get_prompt(name, values))
    if result.description:
        err.print(Text(result.description, style="dim"))
    for message in result.messages:
        out.rule(Text(str(message.role)), align="left")
        _print_content(message.content)


def ping(
    server: ServerOption = None,
    stack: StackOption = None,
    endpoint_url: EndpointOption = None,
    region: RegionOption = None,
    client: ClientOption = None,
    env_file: EnvFileOption = DEFAULT_ENV_FILE,
    timeout: TimeoutOption = None,
) -> None:
    """Check that a server answers, and how fast (ping; server/discover from 2026-07-28 on)."""
    connection = Connection(server, stack, endpoint_url, region, client, env_file, timeout)

    async def timed(c: Client) -> tuple[str, float, str]:
        return *(await liveness(c)), str(c.session.protocol_version)

    method, elapsed, version = connection.run(timed)
    out.print(
        Text(
            f"{connection.server} answered {method} in {elapsed:.0f} ms "
            f"(protocol {version}; {connection.settings.source})"
        )
    )


async def liveness(client: Client) -> tuple[str, float]:
    """Ask the server something that needs no capability; (the method, milliseconds). From
    2026-07-28 on there is no `ping`: `server/discover` is what any server answers."""
    from mcp_types.version import MODERN_PROTOCOL_VERSIONS

    version = str(client.session.protocol_version)
    started = time.perf_counter()
    if version in MODERN_PROTOCOL_VERSIONS:
        await client.session.send_discover(version)
        method = "server/discover"
    else:
        await client.session.send_ping()
        method = "ping"
    return method, (time.perf_counter() - started) * 1000


async def _all(list_page: Callable[..., Awaitable[Any]], field: str) -> list[Any]:
    """Every item of a paginated list."""
    items: list[Any] = []
    cursor: str | None = None
    for _ in range(1000):
        page = await list_page(cursor=cursor)
        items.extend(getattr(page, field))
        cursor = page.next_cursor
        if not cursor:
            break
    return items


async def _call_with_progress(client: Client, tool: str, arguments: dict[str, Any]) -> Any:
    """Call a tool, showing a live progress bar (stderr) while it reports progress."""
    from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

    bar: Progress | None = None
    task: TaskID | None = None

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        nonlocal bar, task
        if not err.is_terminal:
            return
        if bar is None:
            bar = Progress(
                TextColumn(Text(tool).plain),
                BarColumn(),
                TextColumn("{task.completed:g}/{task.total:g}" if total else "{task.completed:g}"),
                TextColumn("{task.fields[note]}", markup=False),
                TimeElapsedColumn(),
                console=err,
                transient=True,
            )
            bar.start()
            task = bar.add_task("", total=total, note="")
        assert task is not None
        bar.update(task, completed=progress, total=total, note=message or "")

    try:
        return await client.call_tool(tool, arguments, progress_callback=on_progress)
    finally:
        if bar is not None:
            bar.stop()


def show_tool_result(result: Any) -> None:
    """A tool's result: a tool error in red, structured content as a table or JSON, else its content."""
    if result.is_error:
        text = "\n".join(content_text(item) for item in result.content) or "the tool reported an error"
        out.print(Text(text, style="red"))
        return
    structured = result.structured_content
    texts = [item for item in result.content if getattr(item, "type", None) == "text"]
    if (
        isinstance(structured, dict)
        and list(structured) == ["result"]
        and _scalar(structured["result"])
        and texts
    ):
        structured = None  # a plain value wrapped for the output schema: its text says it
    if structured is not None:
        print_data(structured)
        return
    for item in result.content:
        _print_content(item)


def print_data(data: Any) -> None:
    """Structured data: a table on a terminal when it is flat (an object, or a list of objects, of
    scalars); otherwise pretty JSON (on a pipe always JSON, so it can be parsed)."""
    rows = data if isinstance(data, list) else [data]
    flat = bool(rows) and all(isinstance(r, dict) and all(_scalar(v) for v in r.values()) for r in rows)
    if out.is_terminal and flat and isinstance(data, dict):
        table = Table(show_header=False)
        table.add_column(style="bold")
        table.add_column()
        for key, value in data.items():
            table.add_row(Text(str(key)), Text(_scalar_text(value)))
        out.print(table)
    elif out.is_terminal and flat:
        columns = list(dict.fromkeys(k for r in rows for k in r))
        table = Table(*columns)
        for row in rows:
            table.add_row(*(Text(_scalar_text(row.get(c))) for c in columns))
        out.print(table)
    elif out.is_terminal:
        out.print_json(data=data)
    else:
        sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def _scalar_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def content_text(item: Any) -> str:
    """One MCP content item as text (what cannot be shown as text is described)."""
    kind = getattr(item, "type", None)
    if kind == "text":
        return str(item.text)
    if kind in ("image", "audio"):
        return f"[{kind} {item.mime_type}, {len(item.data) * 3 // 4} bytes]"
    if kind == "resource_link":
        return f"[resource link {item.uri}{f' ({item.name})' if item.name else ''}]"
    if kind == "resource":
        return _contents_text(item.resource)
    return json.dumps(item.model_dump(mode="json", by_alias=True, exclude_none=True))


def _contents_text(contents: Any) -> str:
    text = getattr(contents, "text", None)
    if text is not None:
        return str(text)
    blob = getattr(contents, "blob", "")
    return f"[{contents.mime_type or 'binary'} {contents.uri}, {len(blob) * 3 // 4} bytes]"


def _print_content(item: Any) -> None:
    _write(content_text(item))


def _print_contents(contents: Any) -> None:
    _write(_contents_text(contents))


def _write(text: str) -> None:
    """Text as it is: no markup, no wrapping, no highlighting."""
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    sys.stdout.flush()


def _print_table(table: Table, count: int, kind: str) -> None:
    if count:
        out.print(table)
    else:
        err.print(Text(f"the server lists no {kind}"))


def _first_line(text: str | None) -> str:
    return (text or "").strip().splitlines()[0] if (text or "").strip() else ""


def schema_arguments(schema: dict[str, Any] | None) -> str:
    """A JSON Schema's properties as `name*: type` (required starred)."""
    properties = (schema or {}).get("properties") or {}
    required = set((schema or {}).get("required") or [])
    parts = []
    for name, spec in properties.items():
        kind = spec.get("type") if isinstance(spec, dict) else None
        if isinstance(kind, list):
            kind = "|".join(str(k) for k in kind)
        parts.append(f"{name}{'*' if name in required else ''}{f': {kind}' if kind else ''}")
    return ", ".join(parts)
