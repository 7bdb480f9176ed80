"""The stack verbs: run the kit on the embedded local stack, serve a queue, sweep.

dmcp demo     one shot: start the stack and its workers, exercise a server, exit
dmcp dev      start the stack and its workers and keep them running for other clients
dmcp worker   serve one server's request queue from this process (a container worker)
dmcp sweep    delete per-connection reply queues their clients left behind
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Final

import typer
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from dmcp_aws.cli._common import CliError, configure_logging, err, out
from dmcp_aws.cli._target import (
    DEFAULT_ENV_FILE,
    EndpointOption,
    EnvFileOption,
    ServerOption,
    StackOption,
    check,
    ensure_reachable,
    environment_endpoint,
    resolve,
    use_env_file,
    write_env_file,
)

if TYPE_CHECKING:
    from dmcp_aws.deployment import Deployment
    from dmcp_aws.local.stack import RunningStack

DeploymentOption = Annotated[
    Path,
    typer.Option(
        "--deployment",
        "-d",
        help="Deployment description (JSON); without dmcp.json, one `example` server.",
        show_default=True,
    ),
]
VerboseOption = Annotated[bool, typer.Option("--verbose", "-v", help="Log what the workers do (INFO).")]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No line per request served.")]

DEV_SWEEP_INTERVAL_S: Final = 300
"""How often `dmcp dev` sweeps orphaned per-connection reply queues."""
WORKER_LOGGER: Final = "dmcp_aws.worker"


def load_deployment(path: Path) -> Deployment:
    """The description at `path` (the built-in one-server deployment when `dmcp.json` is absent)."""
    from dmcp_aws.deployment import DEFAULT_DEPLOYMENT, Deployment

    if not path.exists() and path == Path("dmcp.json"):
        return DEFAULT_DEPLOYMENT
    return Deployment.load(path)


def server_of(spec: Deployment, server: str | None, prefer: str | None = None) -> str:
    """`server` if the deployment has it; by default `prefer` if it has that, else its first."""
    names = [s.name for s in spec.servers]
    if server is None:
        return prefer if prefer in names else names[0]
    if server not in names:
        raise CliError(
            f"deployment {spec.name!r} has no server {server!r}; it has {', '.join(names)}",
            "pass --server NAME, or --deployment FILE for another description",
            code=2,
        )
    return server


class RequestLines(logging.Handler):
    """Prints the worker's record of each served request as one line: time, method (and tool,
    prompt or resource), server, outcome, milliseconds."""

    def emit(self, record: logging.LogRecord) -> None:
        duration = getattr(record, "duration_ms", None)
        if duration is None:
            return
        method = str(getattr(record, "mcp_method", None) or "?")
        name = getattr(record, "mcp_name", None)
        outcome = str(getattr(record, "outcome", "?"))
        style = "green" if outcome in ("Answered", "ReplayedFromLedger") else "yellow"
        line = Text.assemble(
            (time.strftime("%H:%M:%S ", time.localtime(record.created)), "dim"),
            f"{method} {name} " if name else f"{method} ",
            (f"→ {getattr(record, 'mcp_server', '?')} ", "cyan"),
            (outcome, style),
            f" {duration} ms",
        )
        out.print(line)


def show_requests(enabled: bool) -> None:
    """Print a line per request the workers in this process serve (unless `enabled` is false)."""
    worker_log = logging.getLogger(WORKER_LOGGER)
    for handler in [h for h in worker_log.handlers if isinstance(h, RequestLines)]:
        worker_log.removeHandler(handler)
    if enabled:
        if worker_log.getEffectiveLevel() > logging.INFO:
            worker_log.setLevel(logging.INFO)  # the root handler still shows only warnings
        worker_log.addHandler(RequestLines(logging.INFO))


def demo(
    deployment: DeploymentOption = Path("dmcp.json"),
    server: ServerOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Start the embedded stack and its workers, discover what a server offers, exercise it, exit."""
    import anyio

    configure_logging(logging.INFO if verbose else logging.WARNING)
    spec = load_deployment(deployment)
    name = server_of(spec, server, prefer="example")
    anyio.run(_demo, spec, deployment.resolve().parent, name)


async def _demo(spec: Deployment, code_root: Path, server: str) -> None:
    from mcp import Client

    from dmcp_aws.client import sqs_client_transport
    from dmcp_aws.local.stack import embedded_stack

    with err.status("starting the embedded stack (moto on 127.0.0.1)…"):
        stack_cm = embedded_stack(spec, code_root=code_root)
        stack = await stack_cm.__aenter__()
    try:
        out.print(
            Text.assemble(("✓ ", "green"), f"embedded stack at {stack.endpoint_url}; topic {stack.topic_arn}")
        )
        transport = sqs_client_transport(
            stack.topic_target(server), **stack.client_options(), request_timeout=60
        )
        async with Client(transport, elicitation_callback=_answer_as_the_demo) as client:
            out.print(
                Text.assemble(
                    ("✓ ", "green"),
                    "connected to ",
                    (server, "bold"),
                    f" over SNS → SQS → worker → reply queue (protocol {client.session.protocol_version})",
                )
            )
            offered = await _show_catalogue(client, server)
            if server == "example" and {"count_slowly", "add"} <= offered["tool"]:
                await _example_tour(client)
            else:
                await _exercise(client, server, offered)
        invocations = sum(m.invocations for m in stack.mappings)
        out.print(
            Text.assemble(
                ("✓ ", "green"), f"done: {invocations} worker invocations answered through the queues"
            )
        )
    finally:
        with err.status("stopping…"):
            await stack_cm.__aexit__(None, None, None)


def _text(items: Iterable[object]) -> str:
    """The text of MCP content items (resource contents, prompt message content)."""
    return "\n".join(str(getattr(item, "text", "")) for item in items)


async def _listing(client: Any, method: str, field: str) -> list[Any]:
    """Every item a list method returns; nothing when the server does not offer that kind."""
    from mcp.shared.exceptions import MCPError

    try:
        return list(getattr(await getattr(client, method)(), field))
    except MCPError as exc:
        if exc.code == -32601:  # METHOD_NOT_FOUND: the server has no such capability
            return []
        raise


async def _show_catalogue(client: Any, server: str) -> dict[str, set[str]]:
    """Print what the server offers; return the names by kind."""
    table = Table(title=f"What {server} offers", title_justify="left")
    for column in ("kind", "name", "description"):
        table.add_column(column)
    offered: dict[str, set[str]] = {"tool": set(), "resource": set(), "template": set(), "prompt": set()}
    rows = [
        ("tool", "list_tools", "tools", "name"),
        ("resource", "list_resources", "resources", "uri"),
        ("template", "list_resource_templates", "resource_templates", "uri_template"),
        ("prompt", "list_prompts", "prompts", "name"),
    ]
    for kind, method, field, key in rows:
        for item in await _listing(client, method, field):
            name = str(getattr(item, key))
            offered[kind].add(name)
            table.add_row(kind, Text(name), Text((item.description or "").strip().split("\n")[0]))
    out.print(table)
    return offered


async def _answer_as_the_demo(context: Any, params: Any) -> Any:
    """The demo's answer to a server's question (an elicitation): its own name."""
    from mcp_types import ElicitResult

    out.print(Text.assemble(("? ", "cyan"), f"the server asks: {params.message} → answering 'the dMCP demo'"))
    return ElicitResult(action="accept", content={"name": "the dMCP demo"})


async def _example_tour(client: Any) -> None:
    """The guided parts, written for the `example` server: progress, resources, a prompt,
    structured output."""
    from rich.progress import BarColumn, Progress, TextColumn

    steps = 5
    with Progress(
        TextColumn("tools/call count_slowly"), BarColumn(), TextColumn("{task.description}"), console=err
    ) as bar:
        task = bar.add_task("waiting…", total=steps)

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            bar.update(task, completed=progress, total=total, description=message or "")

        result = await client.call_tool(
            "count_slowly", {"steps": steps, "delay_s": 0.2}, progress_callback=on_progress
        )
    out.print(Text.assemble(("✓ ", "green"), f"count_slowly → {_text(result.content)}"))
    signed = await client.call_tool("sign_guestbook", {})
    out.print(Text.assemble(("✓ ", "green"), f"sign_guestbook → {_text(signed.content)}"))
    for uri in ("dmcp://example/about", "dmcp://example/greeting/world"):
        resource = await client.read_resource(uri)
        out.print(Panel(Text(_text(resource.contents)), title=Text(f"resources/read {uri}")), soft_wrap=False)
    prompt = await client.get_prompt("review_code", {"code": "def f(x): return x+1"})
    out.print(
        Panel(Text(_text(m.content for m in prompt.messages)), title="prompts/get review_code"),
        soft_wrap=False,
    )
    added = await client.call_tool("add", {"a": 2, "b": 40})
    out.print(
        Panel(Text(str(added.structured_content)), title="tools/call add (structured output)"),
        soft_wrap=False,
    )


async def _exercise(client: Any, server: str, offered: dict[str, set[str]]) -> None:
    """For any server: check it answers, read its resources, get its prompts that need no arguments."""
    from dmcp_aws.cli.mcp_verbs import liveness

    method, elapsed = await liveness(client)
    out.print(Text.assemble(("✓ ", "green"), f"{method} answered in {elapsed:.0f} ms"))
    for uri in sorted(offered["resource"])[:3]:
        resource = await client.read_resource(uri)
        out.print(
            Panel(Text(_text(resource.contents)[:2000]), title=Text(f"resources/read {uri}")), soft_wrap=False
        )
    for prompt in (await _listing(client, "list_prompts", "prompts"))[:3]:
        if any(a.required for a in prompt.arguments or []):
            continue
        got = await client.get_prompt(prompt.name, {})
        out.print(
            Panel(
                Text(_text(m.content for m in got.messages)[:2000]), title=Text(f"prompts/get {prompt.name}")
            ),
            soft_wrap=False,
        )
    out.print(
        Text(
            f"The guided tour (progress, structured output) is written for the `example` server. {server}'s "
            f"tools are not called here (they may have side effects): run `dmcp dev`, then "
            f"`dmcp call TOOL --server {server} --arg KEY=VALUE`."
        )
    )


def dev(
    deployment: DeploymentOption = Path("dmcp.json"),
    port: Annotated[int, typer.Option(help="Port for moto on 127.0.0.1 (0: any free port).")] = 0,
    env_file: Annotated[Path, typer.Option(help="Where to write the client settings.")] = DEFAULT_ENV_FILE,
    verbose: VerboseOption = False,
    quiet: QuietOption = False,
) -> None:
    """Start the embedded stack and its workers; keep them running until Ctrl-C.

    Prints a line per request served (method, server, outcome, ms) unless --quiet.
    """
    import anyio

    configure_logging(logging.INFO if verbose else logging.WARNING)
    spec = load_deployment(deployment)
    show_requests(not quiet)
    with contextlib.suppress(KeyboardInterrupt):
        anyio.run(_dev, spec, deployment.resolve().parent, port, env_file)
    out.print("stopped.")


async def _dev(spec: Deployment, code_root: Path, port: int, env_file: Path) -> None:
    import anyio

    from dmcp_aws.local.stack import embedded_stack

    async with embedded_stack(spec, code_root=code_root, port=port) as stack:
        settings = client_settings(stack)
        written = write_env_file(env_file, settings)
        try:
            servers = ", ".join(s.name for s in spec.servers)
            body = Text("\n".join(f"{k}={v}" for k, v in settings.items()))
            body.append(f"\n\nservers: {servers}")
            body.append(
                f"\nper-connection queues idle for {spec.orphan_queue_idle_s} s are swept every "
                f"{DEV_SWEEP_INTERVAL_S} s"
            )
            body.append("\nIn another terminal: ")
            body.append("dmcp tools", style="bold")
            body.append(", ")
            body.append("dmcp call TOOL --arg KEY=VALUE", style="bold")
            body.append(f" (they read {env_file}); for other clients, ")
            body.append(f"source {env_file}", style="bold")
            body.append(".")
            out.print(Panel(body, title="dMCP dev stack is running (Ctrl-C stops it)"), soft_wrap=False)
            async with anyio.create_task_group() as tg:
                tg.start_soon(stop_on_sigterm, tg.cancel_scope)
                await sweep_periodically(stack, DEV_SWEEP_INTERVAL_S)
        finally:
            with contextlib.suppress(OSError):
                if env_file.read_text() == written:  # not rewritten by another `dmcp dev`
                    env_file.unlink()


async def sweep_periodically(
    stack: RunningStack, interval_s: float, idle_s: float | None = None, prefix: str | None = None
) -> None:
    """Sweep `stack`'s orphaned per-connection queues (under `prefix`, by default every client's)
    every `interval_s` until cancelled, as the deployed stack's scheduled sweeper does; a failed
    sweep is logged and tried again next time."""
    import anyio

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
                out.print(Text(f"swept {len(deleted)} orphaned connection queue(s): {names}"))


def client_settings(stack: RunningStack) -> dict[str, str]:
    """The environment a client in another process needs to reach `stack`.

    `AWS_ENDPOINT_URL` names the endpoint the standard way (boto3, the AWS CLI, the kit, `dmcp
    worker`); `DMCP_ENDPOINT_URL` is the same, for older clients. Per-connection reply queues go
    under the first provisioned client's prefix, as that client's policy would require in a
    deployed stack (`DMCP_REPLY_PREFIX`); `DMCP_CONNECTION_PREFIX` is what `dmcp sweep` sweeps;
    `DMCP_SERVERS` lists the servers (the first is the verbs' default)."""
    return {
        "AWS_ENDPOINT_URL": stack.endpoint_url,
        "DMCP_ENDPOINT_URL": stack.endpoint_url,
        "DMCP_TOPIC_ARN": stack.topic_arn,
        "DMCP_REPLY_PREFIX": stack.client_connection_prefix(),
        "DMCP_CONNECTION_PREFIX": stack.connection_queue_prefix,
        "DMCP_SERVERS": ",".join(s.name for s in stack.deployment.servers),
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": stack.region,
    }


def worker(
    server: ServerOption = None,
    deployment: DeploymentOption = Path("dmcp.json"),
    endpoint_url: EndpointOption = None,
    env_file: Annotated[
        Path,
        typer.Option(
            "--env-file",
            help="`dmcp dev`'s settings; used when neither --endpoint-url nor AWS_ENDPOINT_URL "
            "names an endpoint.",
        ),
    ] = DEFAULT_ENV_FILE,
    verbose: VerboseOption = False,
    quiet: QuietOption = False,
) -> None:
    """Serve one server's request queue from this process (a container worker) until Ctrl-C.

    The endpoint is --endpoint-url, else AWS_ENDPOINT_URL, else the one in `dmcp dev`'s settings
    file when it exists, else AWS itself (credentials and region from the environment).
    """
    import anyio

    from dmcp_aws.local.container_worker import serve_from_queue

    configure_logging(logging.INFO if verbose else logging.WARNING)
    spec = load_deployment(deployment)
    name = server_of(spec, server)
    endpoint, source = endpoint_url, "--endpoint-url"
    if endpoint is None and environment_endpoint() is not None:
        endpoint, source = environment_endpoint(), "the environment"
    elif endpoint is None and env_file.is_file():
        use_env_file(env_file)
        endpoint, source = environment_endpoint(), str(env_file)
    if endpoint is not None:
        ensure_reachable(endpoint, source, env_file if source == str(env_file) else None)
        # No CloudWatch to read the metrics: no embedded-metric-format line per invocation.
        os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
    show_requests(not quiet)
    where = f" at {endpoint} (from {source})" if endpoint else " on AWS"
    code_root = deployment.resolve().parent

    async def serve() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(stop_on_sigterm, tg.cancel_scope)
            await tg.start(partial(serve_from_queue, spec, name, code_root=code_root, endpoint_url=endpoint))
            banner = f" of deployment {spec.name!r}{where}; Ctrl-C stops"
            out.print(Text.assemble("serving ", (name, "bold"), banner))

    with contextlib.suppress(KeyboardInterrupt):
        anyio.run(serve)
    out.print("stopped.")


async def stop_on_sigterm(scope: Any) -> None:
    """Cancel `scope` on SIGTERM (how a container is stopped), as Ctrl-C would end the command."""
    import signal

    import anyio

    with anyio.open_signal_receiver(signal.SIGTERM) as signals:
        async for _ in signals:
            scope.cancel()
            return


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
    env_file: EnvFileOption = DEFAULT_ENV_FILE,
) -> None:
    """Delete per-connection reply queues their clients left behind (idle ones), once.

    Against `dmcp dev`: its settings (the environment or its settings file).
    Against a deployed stack: `--stack NAME`, with AWS credentials from the environment.
    """
    import anyio

    from dmcp_aws.sweep import SweepIncomplete, queue_name

    configure_logging(logging.WARNING)
    idle = load_deployment(deployment).orphan_queue_idle_s if idle_seconds is None else idle_seconds
    if (
        prefix is not None
        and stack is None
        and not os.environ.get("DMCP_TOPIC_ARN")
        and not env_file.is_file()
    ):
        connection_prefix, endpoint, region = prefix, endpoint_url or environment_endpoint(), None
    else:
        settings = check(resolve(stack, endpoint_url=endpoint_url, env_file=env_file))
        connection_prefix, endpoint, region = (
            prefix or settings.connection_prefix,
            settings.endpoint_url,
            settings.region,
        )
    failed = False
    try:
        deleted = anyio.run(_sweep, connection_prefix, idle, endpoint, region)
    except SweepIncomplete as exc:
        deleted, failed = exc.deleted, True
        err.print(Text(str(exc), style="red"))
    for url in deleted:
        out.print(Text(f"deleted {queue_name(url)}"))
    out.print(
        Text(f"swept {len(deleted)} orphaned queue(s) under {connection_prefix} (idle for at least {idle} s)")
    )
    if failed:
        raise typer.Exit(1)


async def _sweep(prefix: str, idle_s: int, endpoint_url: str | None, region: str | None) -> list[str]:
    import aioboto3

    from dmcp_aws.sweep import sweep_orphaned_queues

    async with aioboto3.Session().client("sqs", endpoint_url=endpoint_url, region_name=region) as sqs:
        return await sweep_orphaned_queues(sqs, prefix, idle_s)
