"""The `dmcp` command: run the kit on the embedded local stack.

dmcp demo     one shot: start the stack and a worker, exercise every MCP feature, exit
dmcp dev      start the stack and workers and keep them running for other clients
dmcp sweep    delete per-connection reply queues their clients left behind
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, Final

import anyio
import typer
from rich.console import Console
from rich.panel import Panel
from rich.progress import BarColumn, Progress, TextColumn
from rich.table import Table

from dmcp_aws.deployment import DEFAULT_DEPLOYMENT, Deployment, DeploymentError
from dmcp_aws.local.stack import RunningStack, embedded_stack

app = typer.Typer(help="dMCP on AWS: MCP over SNS/SQS with Lambda workers.", no_args_is_help=True)
console = Console()

DeploymentOption = Annotated[
    Path, typer.Option("--deployment", "-d", help="Deployment description (JSON).", show_default=True)
]
ServerOption = Annotated[str, typer.Option("--server", "-s", help="Server to talk to.")]


def _load(path: Path) -> Deployment:
    if not path.exists() and path == Path("dmcp.json"):
        return DEFAULT_DEPLOYMENT
    try:
        return Deployment.load(path)
    except DeploymentError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None


def _quiet_logs(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("werkzeug").setLevel(logging.WARNING if verbose else logging.ERROR)


@app.command()
def demo(
    deployment: DeploymentOption = Path("dmcp.json"),
    server: ServerOption = "example",
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Start the embedded stack and a worker, run a client through every feature, exit."""
    _quiet_logs(verbose)
    spec = _load(deployment)
    anyio.run(_demo, spec, deployment.resolve().parent, server)


async def _demo(spec: Deployment, code_root: Path, server: str) -> None:
    from mcp import Client

    from dmcp_aws.client import sqs_client_transport

    with console.status("starting the embedded stack (moto on 127.0.0.1)…"):
        stack_cm = embedded_stack(spec, code_root=code_root)
        stack = await stack_cm.__aenter__()
    try:
        console.print(f"[green]✓[/green] embedded stack at {stack.endpoint_url}; topic {stack.topic_arn}")
        transport = sqs_client_transport(stack.topic_target(server), **stack.client_options())
        async with Client(transport) as client:
            console.print(
                f"[green]✓[/green] connected to [bold]{server}[/bold] over SNS → SQS → worker → reply queue "
                f"(protocol {client.session.protocol_version})"
            )
            await _show_catalogue(client)
            await _show_progress_call(client)
            for uri in ("dmcp://example/about", "dmcp://example/greeting/world"):
                resource = await client.read_resource(uri)
                console.print(Panel(_text(resource.contents), title=f"resources/read {uri}"))
            prompt = await client.get_prompt("review_code", {"code": "def f(x): return x+1"})
            console.print(Panel(_text(m.content for m in prompt.messages), title="prompts/get review_code"))
            added = await client.call_tool("add", {"a": 2, "b": 40})
            console.print(Panel(str(added.structured_content), title="tools/call add (structured output)"))
        invocations = sum(m.invocations for m in stack.mappings)
        console.print(f"[green]✓[/green] done: {invocations} worker invocations answered through the queues")
    finally:
        with console.status("stopping…"):
            await stack_cm.__aexit__(None, None, None)


def _text(items: Iterable[object]) -> str:
    """The text of MCP content items (resource contents, prompt message content)."""
    return "\n".join(getattr(item, "text", "") for item in items)


async def _show_catalogue(client: Any) -> None:
    table = Table(title="What the server offers", show_lines=False)
    table.add_column("kind")
    table.add_column("name")
    table.add_column("description")
    for tool in (await client.list_tools()).tools:
        table.add_row("tool", tool.name, tool.description or "")
    for resource in (await client.list_resources()).resources:
        table.add_row("resource", str(resource.uri), resource.description or "")
    for template in (await client.list_resource_templates()).resource_templates:
        table.add_row("template", template.uri_template, template.description or "")
    for prompt in (await client.list_prompts()).prompts:
        table.add_row("prompt", prompt.name, prompt.description or "")
    console.print(table)


async def _show_progress_call(client: Any) -> None:
    steps = 5
    with Progress(
        TextColumn("tools/call count_slowly"), BarColumn(), TextColumn("{task.description}"), console=console
    ) as bar:
        task = bar.add_task("waiting…", total=steps)

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            bar.update(task, completed=progress, total=total, description=message or "")

        result = await client.call_tool(
            "count_slowly", {"steps": steps, "delay_s": 0.2}, progress_callback=on_progress
        )
    console.print(f"[green]✓[/green] count_slowly → {result.content[0].text}")


@app.command()
def dev(
    deployment: DeploymentOption = Path("dmcp.json"),
    port: Annotated[int, typer.Option(help="Port for moto on 127.0.0.1 (0: any free port).")] = 0,
    env_file: Annotated[Path, typer.Option(help="Where to write the client settings.")] = Path(
        ".dmcp/dev.env"
    ),
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Start the embedded stack and its workers and keep them running until Ctrl-C."""
    _quiet_logs(verbose)
    spec = _load(deployment)
    with contextlib.suppress(KeyboardInterrupt):
        anyio.run(_dev, spec, deployment.resolve().parent, port, env_file)
    console.print("stopped.")


DEV_SWEEP_INTERVAL_S: Final = 300
"""How often `dmcp dev` sweeps orphaned per-connection reply queues."""


async def _dev(spec: Deployment, code_root: Path, port: int, env_file: Path) -> None:
    async with embedded_stack(spec, code_root=code_root, port=port) as stack:
        settings = client_settings(stack)
        env_file.parent.mkdir(parents=True, exist_ok=True)
        env_file.write_text("".join(f"export {k}={v}\n" for k, v in settings.items()))
        servers = ", ".join(s.name for s in spec.servers)
        console.print(
            Panel(
                "\n".join(f"{k}={v}" for k, v in settings.items())
                + f"\n\nservers: {servers}"
                + f"\nper-connection queues idle for {spec.orphan_queue_idle_s} s are swept every "
                + f"{DEV_SWEEP_INTERVAL_S} s"
                + f"\nIn another terminal: [bold]source {env_file}[/bold], then run a client.",
                title="dMCP dev stack is running (Ctrl-C stops it)",
            )
        )
        await sweep_periodically(stack, DEV_SWEEP_INTERVAL_S)


async def sweep_periodically(
    stack: RunningStack, interval_s: float, idle_s: float | None = None, prefix: str | None = None
) -> None:
    """Sweep `stack`'s orphaned per-connection queues (under `prefix`, by default every client's)
    every `interval_s` until cancelled, as the deployed stack's scheduled sweeper does; a failed
    sweep is logged and tried again next time."""
    from dmcp_aws.sweep import queue_name, sweep_orphaned_queues

    idle = stack.deployment.orphan_queue_idle_s if idle_s is None else idle_s
    async with stack.session().client("sqs", endpoint_url=stack.endpoint_url) as sqs:
        while True:
            await anyio.sleep(interval_s)
            try:
                deleted = await sweep_orphaned_queues(sqs, prefix or stack.connection_queue_prefix, idle)
            except Exception as exc:
                logging.getLogger(__name__).warning("sweeping orphaned connection queues failed: %s", exc)
                continue
            if deleted:
                names = ", ".join(queue_name(url) for url in deleted)
                console.print(f"swept {len(deleted)} orphaned connection queue(s): {names}")


def client_settings(stack: RunningStack) -> dict[str, str]:
    """The environment a client in another process needs to reach `stack`: its per-connection
    reply queues go under the first provisioned client's prefix, as that client's policy would
    require in a deployed stack (`DMCP_REPLY_PREFIX`); `DMCP_CONNECTION_PREFIX` is what
    `dmcp sweep` sweeps."""
    return {
        "DMCP_ENDPOINT_URL": stack.endpoint_url,
        "DMCP_TOPIC_ARN": stack.topic_arn,
        "DMCP_REPLY_PREFIX": stack.client_connection_prefix(),
        "DMCP_CONNECTION_PREFIX": stack.connection_queue_prefix,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": stack.region,
    }


@app.command()
def worker(
    server: ServerOption = "example",
    deployment: DeploymentOption = Path("dmcp.json"),
    endpoint_url: EndpointOption = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Serve one server's request queue from this process (a container worker) until Ctrl-C.

    Uses the AWS credentials and region of the environment; `--endpoint-url` for LocalStack.
    """
    from dmcp_aws.local.container_worker import serve_from_queue

    _quiet_logs(verbose)
    spec = _load(deployment)
    console.print(f"serving [bold]{server}[/bold] of deployment {spec.name!r}; Ctrl-C stops")
    with contextlib.suppress(KeyboardInterrupt):
        try:
            anyio.run(
                lambda: serve_from_queue(
                    spec, server, code_root=deployment.resolve().parent, endpoint_url=endpoint_url
                )
            )
        except KeyError as exc:
            console.print(f"[red]{exc.args[0]}[/red]")
            raise typer.Exit(2) from None
    console.print("stopped.")


StackOption = Annotated[
    str | None,
    typer.Option(
        "--stack", help="A deployed stack's name; default: the `dmcp dev` settings in the environment."
    ),
]
EndpointOption = Annotated[str | None, typer.Option("--endpoint-url", help="AWS endpoint (LocalStack).")]
ClientOption = Annotated[
    str | None, typer.Option("--client", help="Use this provisioned client's reply queue.")
]


def _transport_options(
    stack: str | None, endpoint_url: str | None, client: str | None, server: str
) -> tuple[Any, dict[str, Any]]:
    """Target and transport options for a deployed stack, or for `dmcp dev` (from the environment)."""
    from dmcp_aws.client import TopicTarget
    from dmcp_aws.deployed import StackNotFound, resolve_stack_sync

    if stack is not None:
        try:
            deployed = resolve_stack_sync(stack, endpoint_url=endpoint_url)
            return deployed.topic_target(server), deployed.client_options(client)
        except (StackNotFound, KeyError) as exc:
            console.print(f"[red]{exc}[/red]")
            raise typer.Exit(2) from None
    missing = [name for name in ("DMCP_TOPIC_ARN", "DMCP_REPLY_PREFIX") if not os.environ.get(name)]
    if missing:
        console.print(
            f"[red]{', '.join(missing)} not set: pass --stack NAME, or source the file `dmcp dev` wrote[/red]"
        )
        raise typer.Exit(2)
    options = {
        "reply_prefix": os.environ["DMCP_REPLY_PREFIX"],
        "endpoint_url": endpoint_url or os.environ.get("DMCP_ENDPOINT_URL"),
    }
    return TopicTarget(os.environ["DMCP_TOPIC_ARN"], server), options


@app.command()
def call(
    tool: Annotated[str, typer.Argument(help="The tool to call.")],
    arguments: Annotated[str, typer.Option("--json", help="The tool's arguments as a JSON object.")] = "{}",
    server: ServerOption = "example",
    stack: StackOption = None,
    endpoint_url: EndpointOption = None,
    client: ClientOption = None,
) -> None:
    """Call one tool over SNS/SQS and print its result."""
    import json

    try:
        parsed = json.loads(arguments)
    except json.JSONDecodeError as exc:
        console.print(f"[red]--json is not valid JSON: {exc}[/red]")
        raise typer.Exit(2) from None
    target, options = _transport_options(stack, endpoint_url, client, server)
    result = anyio.run(_call, target, options, tool, parsed)
    console.print_json(
        json.dumps(
            result.structured_content if result.structured_content is not None else _text(result.content)
        )
    )
    if result.is_error:
        raise typer.Exit(1)


async def _call(target: Any, options: dict[str, Any], tool: str, arguments: dict[str, Any]) -> Any:
    from mcp import Client

    from dmcp_aws.client import sqs_client_transport

    async with Client(sqs_client_transport(target, **options)) as session:
        return await session.call_tool(tool, arguments)


@app.command()
def sweep(
    idle_seconds: Annotated[
        int | None,
        typer.Option(
            "--idle-seconds",
            min=0,
            help="Delete queues untouched for this long; default: the deployment's orphan_queue_idle_s. "
            "0 deletes every per-connection queue (only when no client is running).",
        ),
    ] = None,
    stack: StackOption = None,
    endpoint_url: EndpointOption = None,
    prefix: Annotated[
        str | None,
        typer.Option(
            "--prefix", help="Sweep queues under this prefix instead (default: <reply prefix>conn-)."
        ),
    ] = None,
    deployment: DeploymentOption = Path("dmcp.json"),
) -> None:
    """Delete per-connection reply queues their clients left behind (idle ones), once.

    Against `dmcp dev`: source the settings it wrote first.
    Against a deployed stack: `--stack NAME`, with AWS credentials from the environment.
    """
    from dmcp_aws.sweep import SweepIncomplete, queue_name

    idle = _load(deployment).orphan_queue_idle_s if idle_seconds is None else idle_seconds
    connection_prefix, endpoint, region = _sweep_target(stack, endpoint_url, prefix)
    failed = False
    try:
        deleted = anyio.run(_sweep, connection_prefix, idle, endpoint, region)
    except SweepIncomplete as exc:
        deleted, failed = exc.deleted, True
        console.print(f"[red]{exc}[/red]")
    for url in deleted:
        console.print(f"deleted {queue_name(url)}")
    console.print(
        f"swept {len(deleted)} orphaned queue(s) under {connection_prefix} (idle for at least {idle} s)"
    )
    if failed:
        raise typer.Exit(1)


def _sweep_target(
    stack: str | None, endpoint_url: str | None, prefix: str | None
) -> tuple[str, str | None, str | None]:
    """(connection prefix, endpoint, region) of a deployed stack, or of `dmcp dev` (the environment);
    `prefix`, when given, replaces the connection prefix."""
    if stack is not None:
        from dmcp_aws.deployed import StackNotFound, resolve_stack_sync

        try:
            deployed = resolve_stack_sync(stack, endpoint_url=endpoint_url)
        except StackNotFound as exc:
            console.print(f"[red]{exc}[/red]")
            raise typer.Exit(2) from None
        return prefix or deployed.connection_queue_prefix, deployed.endpoint_url, deployed.region
    prefix = prefix or os.environ.get("DMCP_CONNECTION_PREFIX")
    if not prefix:
        console.print(
            "[red]DMCP_CONNECTION_PREFIX not set: pass --stack NAME or --prefix, "
            "or source the file `dmcp dev` wrote[/red]"
        )
        raise typer.Exit(2)
    return prefix, endpoint_url or os.environ.get("DMCP_ENDPOINT_URL"), None


async def _sweep(prefix: str, idle_s: int, endpoint_url: str | None, region: str | None) -> list[str]:
    import aioboto3

    from dmcp_aws.sweep import sweep_orphaned_queues

    async with aioboto3.Session().client("sqs", endpoint_url=endpoint_url, region_name=region) as sqs:
        return await sweep_orphaned_queues(sqs, prefix, idle_s)
