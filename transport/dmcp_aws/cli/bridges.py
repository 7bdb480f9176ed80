"""The bridge verbs: `stdio`, a stdio MCP server relaying to one dMCP server, for any MCP host.

    dmcp stdio                                   # `dmcp dev`'s stack (.dmcp/dev.env or the environment)
    dmcp stdio --stack my-dmcp --server example  # a deployed stack
    dmcp stdio --topic-arn ARN --server example  # explicit: the request topic (or --queue-url)

stdout carries JSON-RPC only; errors and logs go to stderr. The target is checked before
anything is served, so a wrong name is a one-line error and a non-zero exit, not a silent hang.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Annotated, Any

import typer

from dmcp_aws.cli._common import CliError, configure_logging
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
    ensure_reachable,
    environment_endpoint,
    resolve,
)

if TYPE_CHECKING:
    from dmcp_aws.client import Target

_CHECK_TIMEOUT_S = 30.0


def stdio(
    server: ServerOption = None,
    stack: StackOption = None,
    topic_arn: Annotated[
        str | None,
        typer.Option("--topic-arn", help="The request topic's ARN (with --server): no stack lookup."),
    ] = None,
    queue_url: Annotated[
        str | None,
        typer.Option("--queue-url", help="The server's request queue URL (with --server): no stack lookup."),
    ] = None,
    reply_queue_url: Annotated[
        str | None,
        typer.Option(
            "--reply-queue-url",
            help="A provisioned reply queue (default: a per-connection one, deleted on exit).",
        ),
    ] = None,
    endpoint_url: EndpointOption = None,
    region: RegionOption = None,
    profile: Annotated[
        str | None, typer.Option("--profile", help="AWS profile for credentials (default: AWS_PROFILE).")
    ] = None,
    client: ClientOption = None,
    env_file: EnvFileOption = DEFAULT_ENV_FILE,
    timeout: TimeoutOption = None,
) -> None:
    """Serve MCP on stdin/stdout, relaying every message to one dMCP server (for MCP hosts).

    Point any MCP host at `dmcp stdio …` (Claude Desktop, VS Code, MCP Inspector). Exits 0 when
    stdin ends (after the answers still owed), on SIGTERM or SIGINT, deleting its reply queue.
    """
    import anyio

    from dmcp_aws.bridges.stdio_host import RelayBroken, check_target, relay_stdio
    from dmcp_aws.client import QueueTarget, TopicTarget

    configure_logging(logging.WARNING)
    if topic_arn and queue_url:
        raise CliError("give --topic-arn or --queue-url, not both", code=2)
    target: Target
    if topic_arn or queue_url:
        if stack is not None:
            raise CliError("--stack finds the target itself: leave out --topic-arn/--queue-url", code=2)
        if not server:
            raise CliError(f"{'--topic-arn' if topic_arn else '--queue-url'} needs --server NAME", code=2)
        target = TopicTarget(topic_arn, server) if topic_arn else QueueTarget(str(queue_url), server)
        endpoint = endpoint_url or environment_endpoint()
        if endpoint:
            ensure_reachable(endpoint, "--endpoint-url" if endpoint_url else "AWS_ENDPOINT_URL")
        options: dict[str, Any] = {"reply_prefix": _reply_prefix(target)}
        if endpoint:
            options["endpoint_url"] = endpoint
        region = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        if region:
            options["region_name"] = region
        if timeout is not None:
            options["request_timeout"] = timeout
    else:
        settings = check(resolve(stack, endpoint_url=endpoint_url, region=region, env_file=env_file))
        name = settings.pick_server(server)
        if settings.servers and name not in settings.servers:
            raise CliError(
                f"{settings.source} has no server {name!r}",
                f"its servers: {', '.join(settings.servers)} (--server NAME)",
                code=2,
            )
        target = TopicTarget(settings.topic_arn, name)
        options = settings.client_options(client, timeout)
    if reply_queue_url is not None:
        options["reply_queue_url"] = reply_queue_url

    async def main() -> None:
        import aioboto3

        session = await anyio.to_thread.run_sync(lambda: aioboto3.Session(profile_name=profile))
        aws = {k: v for k, v in options.items() if k in ("endpoint_url", "region_name")}
        with anyio.fail_after(_CHECK_TIMEOUT_S):
            await check_target(target, reply_queue_url=options.get("reply_queue_url"), session=session, **aws)
        await relay_stdio(target, session=session, **options)

    try:
        anyio.run(main)
    except TimeoutError:
        raise CliError(
            f"no answer from AWS within {_CHECK_TIMEOUT_S:g} s while checking the target",
            "check the endpoint, the region and the network",
        ) from None
    except RelayBroken as exc:
        raise CliError(str(exc)) from None


def _reply_prefix(target: Target) -> str:
    """Where a per-connection queue goes for an explicit target: DMCP_REPLY_PREFIX, else the
    deployment's connection prefix (`<name>-reply-conn-`, from the topic's name)."""
    from dmcp_aws.client import DEFAULT_REPLY_PREFIX, TopicTarget

    if os.environ.get("DMCP_REPLY_PREFIX"):
        return os.environ["DMCP_REPLY_PREFIX"]
    if isinstance(target, TopicTarget):
        return f"{target.topic_arn.rsplit(':', 1)[-1].removesuffix('-requests')}-reply-conn-"
    return DEFAULT_REPLY_PREFIX
