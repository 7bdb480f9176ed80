"""Where the `dmcp` command finds a stack: `--stack NAME`, the environment, or `.dmcp/dev.env`.

In that order: `--stack NAME` reads a deployed stack's CloudFormation outputs; otherwise the
settings `dmcp dev` writes (`DMCP_TOPIC_ARN`, `DMCP_REPLY_PREFIX`, `AWS_ENDPOINT_URL`, … — once
sourced, they are in the environment); otherwise the file itself, read as if sourced. The endpoint
is the standard `AWS_ENDPOINT_URL` (boto3, the AWS CLI and the kit all honour it; the older
`DMCP_ENDPOINT_URL` is read too), or `--endpoint-url`.
"""

from __future__ import annotations

import os
import shlex
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Final
from urllib.parse import urlsplit

import typer

from dmcp_aws.cli._common import START_DEV, CliError
from dmcp_aws.naming import UNROUTED

if TYPE_CHECKING:
    from dmcp_aws.deployed import DeployedStack

DEFAULT_ENV_FILE: Final = Path(".dmcp/dev.env")

ServerOption = Annotated[
    str | None,
    typer.Option("--server", "-s", help="The server to talk to (default: the only, or first, one)."),
]
StackOption = Annotated[
    str | None,
    typer.Option("--stack", help="A deployed stack's name (CloudFormation); default: `dmcp dev`'s settings."),
]
EndpointOption = Annotated[
    str | None,
    typer.Option("--endpoint-url", help="AWS endpoint (default: AWS_ENDPOINT_URL), e.g. LocalStack."),
]
RegionOption = Annotated[str | None, typer.Option("--region", help="AWS region (default: AWS_REGION).")]
ClientOption = Annotated[
    str | None, typer.Option("--client", help="With --stack: use this provisioned client's reply queue.")
]
EnvFileOption = Annotated[
    Path,
    typer.Option(
        "--env-file", help="The settings `dmcp dev` wrote; read when the environment names no stack."
    ),
]
TimeoutOption = Annotated[
    float | None,
    typer.Option(
        "--timeout",
        min=0.1,
        envvar="DMCP_TIMEOUT",
        help="Seconds to wait for each answer before failing (default: the transport's, 120).",
    ),
]


def read_env_file(path: Path) -> dict[str, str]:
    """The `export KEY=VALUE` lines of a settings file (`dmcp dev`'s)."""
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.removeprefix("export ").partition("=")
        if sep:
            parsed = shlex.split(value)
            values[key.strip()] = parsed[0] if parsed else ""
    return values


def write_env_file(path: Path, settings: Mapping[str, str]) -> str:
    """Write settings as `export KEY=VALUE` lines (a shell sources them); returns the text."""
    text = "".join(f"export {key}={shlex.quote(value)}\n" for key, value in settings.items())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return text


def environment_endpoint(environ: Mapping[str, str] | None = None) -> str | None:
    """The endpoint the environment names: `AWS_ENDPOINT_URL`, or the older `DMCP_ENDPOINT_URL`."""
    environ = os.environ if environ is None else environ
    return environ.get("AWS_ENDPOINT_URL") or environ.get("DMCP_ENDPOINT_URL") or None


def use_env_file(path: Path) -> dict[str, str]:
    """Apply a settings file to this process's environment, as `source` would in a shell."""
    values = read_env_file(path)
    os.environ.update(values)
    if "AWS_ENDPOINT_URL" not in values and values.get("DMCP_ENDPOINT_URL"):
        os.environ["AWS_ENDPOINT_URL"] = values["DMCP_ENDPOINT_URL"]  # a file from an older `dmcp dev`
    return values


@dataclass(frozen=True)
class StackSettings:
    """A stack the command talks to, and where its settings came from."""

    source: str
    """`stack NAME`, `the environment` or the settings file's path: for messages."""
    topic_arn: str
    reply_prefix: str
    """Where this client creates its per-connection reply queues."""
    connection_prefix: str
    """Every client's per-connection queues are under this (what `dmcp sweep` sweeps)."""
    endpoint_url: str | None
    region: str | None
    servers: tuple[str, ...] = ()
    """The deployment's servers, where known (not the catch-all)."""
    deployed: DeployedStack | None = None
    env_file: Path | None = None
    endpoint_source: str = "AWS_ENDPOINT_URL"

    @property
    def deployment_name(self) -> str:
        """The deployment's name: its request topic is `<name>-requests`."""
        return self.topic_arn.rsplit(":", 1)[-1].removesuffix("-requests")

    def pick_server(self, server: str | None) -> str:
        """`server`, or the only (first) server of the deployment."""
        if server:
            return server
        return self.servers[0] if self.servers else "example"

    def client_options(self, client: str | None, timeout: float | None) -> dict[str, Any]:
        """Keyword arguments for `sqs_client_transport`."""
        if self.deployed is not None:
            options = self.deployed.client_options(client)
        else:
            if client is not None:
                raise CliError("--client needs --stack NAME (a deployed stack's provisioned client)", code=2)
            options = {"reply_prefix": self.reply_prefix}
            if self.endpoint_url:
                options["endpoint_url"] = self.endpoint_url
            if self.region:
                options["region_name"] = self.region
        if timeout is not None:
            options["request_timeout"] = timeout
        return options

    def request_queue_name(self, server: str) -> str:
        return f"{self.deployment_name}-{server}-requests"

    def dead_letter_queue_name(self, server: str) -> str:
        return f"{self.deployment_name}-{server}-dlq"


def resolve(
    stack: str | None,
    *,
    endpoint_url: str | None = None,
    region: str | None = None,
    env_file: Path = DEFAULT_ENV_FILE,
) -> StackSettings:
    """The stack to talk to (see the module docstring); raises `CliError` when there is none."""
    if stack is not None:
        return _deployed(stack, endpoint_url, region)
    source = "the environment"
    file: Path | None = None
    if not os.environ.get("DMCP_TOPIC_ARN"):
        if not env_file.is_file():
            raise CliError(
                f"no stack to talk to: {env_file} does not exist and DMCP_TOPIC_ARN is not set", START_DEV
            )
        use_env_file(env_file)
        source, file = str(env_file), env_file
    missing = [name for name in ("DMCP_TOPIC_ARN", "DMCP_REPLY_PREFIX") if not os.environ.get(name)]
    if missing:
        raise CliError(
            f"{', '.join(missing)} not set in {source}",
            "source the whole file `dmcp dev` wrote (.dmcp/dev.env), or pass --stack NAME",
            code=2,
        )
    topic = os.environ["DMCP_TOPIC_ARN"]
    reply_prefix = os.environ["DMCP_REPLY_PREFIX"]
    servers = tuple(s for s in os.environ.get("DMCP_SERVERS", "").split(",") if s)
    endpoint = endpoint_url or environment_endpoint()
    endpoint_source = "--endpoint-url" if endpoint_url else _endpoint_variable()
    connection_prefix = (
        os.environ.get("DMCP_CONNECTION_PREFIX")
        or f"{topic.rsplit(':', 1)[-1].removesuffix('-requests')}-reply-conn-"
    )
    return StackSettings(
        source=source,
        topic_arn=topic,
        reply_prefix=reply_prefix,
        connection_prefix=connection_prefix,
        endpoint_url=endpoint,
        region=region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or None,
        servers=servers,
        env_file=file,
        endpoint_source=endpoint_source if file is None else str(file),
    )


def _endpoint_variable() -> str:
    return "AWS_ENDPOINT_URL" if os.environ.get("AWS_ENDPOINT_URL") else "DMCP_ENDPOINT_URL"


def _deployed(stack: str, endpoint_url: str | None, region: str | None) -> StackSettings:
    from dmcp_aws.deployed import resolve_stack_sync

    endpoint = endpoint_url or environment_endpoint()
    if endpoint:
        ensure_reachable(endpoint, "--endpoint-url" if endpoint_url else _endpoint_variable())
    deployed = resolve_stack_sync(stack, endpoint_url=endpoint, region_name=region)
    return StackSettings(
        source=f"stack {stack}",
        topic_arn=deployed.topic_arn,
        reply_prefix=deployed.connection_queue_prefix,
        connection_prefix=deployed.connection_queue_prefix,
        endpoint_url=endpoint,
        region=deployed.region,
        servers=tuple(s for s in deployed.servers if s != UNROUTED),
        deployed=deployed,
    )


def ensure_reachable(endpoint: str, source: str, env_file: Path | None = None) -> None:
    """Fail fast, and say why, when nothing listens at a custom endpoint (a stopped `dmcp dev`)."""
    parts = urlsplit(endpoint)
    if not parts.hostname:
        raise CliError(f"the endpoint {endpoint!r} ({source}) is not a URL", code=2)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname, port), timeout=3).close()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        if env_file is not None:
            raise CliError(
                f"{env_file} is stale: nothing answers at {endpoint} ({reason}); "
                "the `dmcp dev` that wrote it has stopped",
                "start `dmcp dev` again (it rewrites the file)",
            ) from None
        raise CliError(
            f"no stack answers at {endpoint} (from {source}): {reason}",
            "start `dmcp dev` (then use the .dmcp/dev.env it writes), or fix the endpoint",
        ) from None


def check(settings: StackSettings) -> StackSettings:
    """`settings`, once its endpoint (if any) is known to answer."""
    if settings.endpoint_url and settings.deployed is None:
        ensure_reachable(settings.endpoint_url, settings.endpoint_source, settings.env_file)
    return settings
