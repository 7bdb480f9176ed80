"""`dmcp dlq SERVER`: a server's dead letters with their reasons; `--redrive` sends them back.

dmcp dlq example              # body summary, dmcp.dlq-reason, receive count, age (nothing consumed)
dmcp dlq example --redrive    # SQS's message move task into example's request queue
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from dmcp_aws.cli._common import CliError, configure_logging, err, out
from dmcp_aws.cli._target import (
    DEFAULT_ENV_FILE,
    EndpointOption,
    EnvFileOption,
    RegionOption,
    StackOption,
    StackSettings,
    check,
    resolve,
)


def dlq(
    server: Annotated[
        str | None,
        typer.Argument(
            help="Whose dead-letter queue (default: the only, or first, server; `unrouted`: the catch-all's)."
        ),
    ] = None,
    redrive: Annotated[
        bool, typer.Option("--redrive", help="Move the dead letters back to the server's request queue.")
    ] = False,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000, help="Show at most this many.")] = 50,
    stack: StackOption = None,
    endpoint_url: EndpointOption = None,
    region: RegionOption = None,
    env_file: EnvFileOption = DEFAULT_ENV_FILE,
) -> None:
    """Show a server's dead letters (without consuming them), or send them back with --redrive."""
    import logging

    import anyio

    configure_logging(logging.CRITICAL)
    settings = check(resolve(stack, endpoint_url=endpoint_url, region=region, env_file=env_file))
    name = settings.pick_server(server)
    if redrive:
        result = anyio.run(_redrive, settings, name)
        if result.method == "move-task":
            out.print(
                Text(
                    f"moving {result.moved} dead letter(s) of {name} back to its request queue "
                    f"(SQS message move task {result.task_handle}; "
                    "`aws sqs list-message-move-tasks` shows it)"
                )
            )
        else:
            out.print(
                Text(
                    f"moved {result.moved} dead letter(s) of {name} back to its request queue "
                    "(receive, send, delete: this endpoint has no message move tasks)"
                )
            )
        return
    letters, depth = anyio.run(_peek, settings, name, limit)
    if not letters:
        out.print(Text(f"the dead-letter queue of {name} is empty"))
        return
    table = Table(
        title=f"dead letters of {name} ({len(letters)} of about {max(depth, len(letters))})",
        title_justify="left",
    )
    for column in ("message", "reason (dmcp.dlq-reason)", "receives", "age"):
        table.add_column(column)
    for letter in letters:
        table.add_row(
            Text(letter.summary),
            Text(letter.reason or "(none: moved by SQS after its receives, or by SNS)"),
            Text(str(letter.receive_count)),
            Text(_age(letter.age_s)),
        )
    out.print(table)
    err.print(Text(f"`dmcp dlq {name} --redrive` sends them back to the request queue", style="dim"))


async def _urls(sqs: Any, settings: StackSettings, server: str) -> tuple[str, str]:
    """(dead-letter queue URL, request queue URL) of `server`."""
    if settings.deployed is not None:
        dead = settings.deployed.dead_letter_queue_urls.get(server)
        requests = settings.deployed.request_queue_urls.get(server)
        if dead and requests:
            return dead, requests
        known = ", ".join(sorted(settings.deployed.dead_letter_queue_urls)) or "none"
        raise CliError(
            f"stack {settings.deployed.name!r} has no dead-letter queue for {server!r}; it has {known}"
        )
    from botocore.exceptions import ClientError

    urls = []
    for name in (settings.dead_letter_queue_name(server), settings.request_queue_name(server)):
        try:
            urls.append(str((await sqs.get_queue_url(QueueName=name))["QueueUrl"]))
        except ClientError as exc:
            if "NonExistentQueue" in str(exc) or "QueueDoesNotExist" in str(exc):
                known = f"; it has {', '.join(settings.servers)}" if settings.servers else ""
                raise CliError(
                    f"no queue {name}: deployment {settings.deployment_name!r} "
                    f"has no server {server!r}{known}"
                ) from None
            raise
    return urls[0], urls[1]


def _client(settings: StackSettings) -> Any:
    import aioboto3
    from botocore.config import Config

    return aioboto3.Session().client(
        "sqs",
        endpoint_url=settings.endpoint_url,
        region_name=settings.region,
        config=Config(retries={"mode": "standard", "max_attempts": 2}),
    )


async def _peek(settings: StackSettings, server: str, limit: int) -> tuple[list[Any], int]:
    from dmcp_aws.dead_letters import peek_dead_letters

    async with _client(settings) as sqs:
        dead, _ = await _urls(sqs, settings, server)
        depth = await sqs.get_queue_attributes(QueueUrl=dead, AttributeNames=["ApproximateNumberOfMessages"])
        return await peek_dead_letters(sqs, dead, limit=limit), int(
            depth["Attributes"].get("ApproximateNumberOfMessages", 0)
        )


async def _redrive(settings: StackSettings, server: str) -> Any:
    from dmcp_aws.dead_letters import redrive_dead_letters

    async with _client(settings) as sqs:
        dead, requests = await _urls(sqs, settings, server)
        return await redrive_dead_letters(sqs, dead, requests)


def _age(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 36 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"
