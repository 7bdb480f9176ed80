"""The one description of a deployment: its servers and clients (validated with pydantic).

Both the CDK app (`infra/`) and the embedded local stack are built from it, through the pure
`topology()` function, so they create the same queues, subscriptions and dead-letter queues:

    >>> deployment = Deployment.load("dmcp.json")
    >>> [q.name for q in topology(deployment).queues]
    ['dmcp-example-requests', 'dmcp-example-dlq', ...]
"""

from __future__ import annotations

import json
import platform
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from dmcp_aws.naming import (  # re-exported: every part of a deployment agrees on them
    CONNECTION_QUEUE_PREFIX,
    CONNECTION_QUEUE_RANDOM_CHARS,
    CONNECTION_QUEUE_SEPARATOR,
    LAST_WORD_DELIVERIES,
    MAX_QUEUE_NAME,
    UNROUTED,
)

_NAME = r"^[a-z][a-z0-9-]{0,30}$"

_SPECIFIER = r"(?:~=|===|==|!=|<=|>=|<|>)\s*[A-Za-z0-9._*+!-]+"
_REQUIREMENT: Final = re.compile(
    r"""^\s*
    (?P<name>[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)
    (?:\s*\[\s*[A-Za-z0-9._-]+(?:\s*,\s*[A-Za-z0-9._-]+)*\s*\])?
    (?:\s*\(?\s*SPEC(?:\s*,\s*SPEC)*\s*\)?
      |\s*@\s*https://[^\s;]+)?
    (?:\s*;\s*\S.*)?
    \s*$""".replace("SPEC", _SPECIFIER),
    re.VERBOSE,
)
"""A pip requirement string (PEP 508): `name[extras]`, version specifiers or `@ https://…` (a
wheel), then an optional environment marker. No pip options (`-r`, `-e`, `--index-url`), no paths."""

KIT_DISTRIBUTION: Final = "dmcp-aws"

DEFAULT_HANDLER: Final = "functions.example.handler.handler"
STDIO_HANDLER_MODULE: Final = "dmcp_aws.bridges.stdio_server"
STDIO_HANDLER_PREFIX: Final = "serve_"
STDIO_ENVIRONMENT_PREFIX: Final = "DMCP_STDIO_"


def stdio_handler(server: str) -> str:
    """The kit's relay handler for `command` server `server`: one attribute per server name, so
    servers run in one process (the embedded stack) never share settings."""
    return f"{STDIO_HANDLER_MODULE}.{STDIO_HANDLER_PREFIX}{server.replace('-', '_')}"


def stdio_environment_variable(server: str) -> str:
    """The variable holding `command` server `server`'s command, args and env (JSON). Server names
    have no `_`, so `-` → `_` keeps names apart."""
    return STDIO_ENVIRONMENT_PREFIX + server.upper().replace("-", "_")


def _normalise(name: str) -> str:
    """A distribution name in its canonical form (PEP 503): `PyYAML` and `pyyaml` are one."""
    return re.sub(r"[-_.]+", "-", name).lower()


class DeploymentError(ValueError):
    """The deployment description is invalid; the message lists every problem."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerSpec(_Strict):
    """One MCP server: its worker function and how its queue feeds it."""

    name: Annotated[str, Field(pattern=_NAME)]
    handler: Annotated[str | None, Field(pattern=r"^[A-Za-z_][\w.]*\.[A-Za-z_]\w*$")] = None
    """`module.attribute` of the Lambda handler, relative to the code root (the repository);
    `functions.example.handler.handler` when neither it nor `command` is given."""
    command: Annotated[str | None, Field(min_length=1)] = None
    """An existing stdio MCP server to serve instead of a handler (`mcp-server-time`, `node`): the
    kit's relay worker (`dmcp_aws.bridges.stdio_server`) runs it as a child process. It must exist
    where the worker runs (see docs/deploy.md)."""
    args: list[str] = []
    """Arguments of `command`."""
    env: dict[str, str] = {}
    """Environment variables of `command`'s process, over the worker's own."""
    memory_mb: Annotated[int, Field(ge=128, le=10240)] = 512
    timeout_s: Annotated[int, Field(ge=1, le=900)] = 30
    container_timeout_s: Annotated[int | None, Field(ge=1, le=24 * 3600)] = None
    """The invocation timeout when a container worker (`dmcp worker`) serves this server, where it
    should exceed Lambda's 900 s: tasks (`dmcp_aws.tasks`) longer than a function may run."""
    snap_start: bool = False
    """Lambda SnapStart (Python 3.12+ runtimes): Lambda snapshots the initialised execution
    environment (the handler's imports and objects) when a version is published and restores it
    instead of running the init phase on a cold start. The event source then feeds the alias
    `live` of the published version. Off by default: it needs published versions, and it is not
    available in every region."""
    batch_size: Annotated[int, Field(ge=1, le=100)] = 10
    batching_window_s: Annotated[int, Field(ge=0, le=300)] = 0
    max_concurrency: Annotated[int, Field(ge=2, le=1000)] = 5
    """Most concurrent worker invocations the queue may drive (Lambda's floor is 2)."""
    max_receive_count: Annotated[int, Field(ge=1, le=997)] = 3
    """Deliveries that may run a request that keeps failing. The queue's redrive policy allows a
    few more (`LAST_WORD_DELIVERIES`): in them the worker only answers the client (the stored
    answer, or an error) and moves the message to the dead-letter queue with its reason, so a
    worker that died on the last try still leaves a visible outcome even if one more delivery is
    lost too (a killed container's pending receive takes a message with it)."""
    requirements: list[str] = []
    """The server's own third-party dependencies, as pip requirement strings (`"httpx>=0.27"`,
    `"PyYAML"`, `"pandas[excel]==2.2.3; python_version >= '3.12'"`). They are bundled into the
    server's function with the kit's own dependencies (manylinux wheels for the function's
    architecture), and every distribution they need is kept whole: list everything the server
    imports, including what it imports inside a function body. Install them where you run
    `dmcp dev` too."""

    @field_validator("requirements")
    @classmethod
    def _pip_requirements(cls, requirements: list[str]) -> list[str]:
        for requirement in requirements:
            match = _REQUIREMENT.match(requirement)
            if match is None:
                raise ValueError(
                    f"{requirement!r} is not a pip requirement string: name[extras] with optional "
                    "version specifiers or '@ https://…', and an optional '; marker' "
                    "(e.g. 'httpx>=0.27,<1'); pip options and paths are not allowed"
                )
            if _normalise(match["name"]) == KIT_DISTRIBUTION:
                raise ValueError(
                    f"{requirement!r}: the kit ({KIT_DISTRIBUTION}) is always bundled from source"
                )
        return [r.strip() for r in requirements]

    @model_validator(mode="after")
    def _batching(self) -> ServerSpec:
        if self.batch_size > 10 and self.batching_window_s == 0:
            raise ValueError("batch_size above 10 needs a batching_window_s above 0 (a Lambda rule)")
        return self

    @model_validator(mode="after")
    def _one_entry_point(self) -> ServerSpec:
        if self.handler is not None and self.command is not None:
            raise ValueError("give either handler or command, not both")
        if self.command is None and (self.args or self.env):
            raise ValueError("args and env belong to a command server; this one has no command")
        return self

    @property
    def entry_point(self) -> str:
        """The Lambda handler the server's worker runs: its own `handler`, or the kit's stdio relay
        for a `command` server."""
        if self.command is not None:
            return stdio_handler(self.name)
        return self.handler or DEFAULT_HANDLER

    @property
    def worker_environment(self) -> dict[str, str]:
        """Environment variables the server's worker function needs beyond the deployment's."""
        if self.command is None:
            return {}
        config = {"command": self.command, "args": self.args, "env": self.env}
        return {stdio_environment_variable(self.name): json.dumps(config, separators=(",", ":"))}


class ClientSpec(_Strict):
    """A provisioned client: its reply queue and the IAM principal allowed to use it."""

    name: Annotated[str, Field(pattern=_NAME)]
    principal: Annotated[
        str, Field(pattern=r"^(account|\d{12}|arn:aws[a-z-]*:iam::\d{12}:(root|(role|user)/[\w+=,.@/-]+))$")
    ]
    """`account` (the deploying account), an account id, or an IAM role, user or account-root ARN."""
    fifo: bool = False


class Deployment(_Strict):
    """The whole deployment: a name, its servers and its clients."""

    name: Annotated[str, Field(pattern=_NAME)] = "dmcp"
    reply_queue_prefix: Annotated[str | None, Field(pattern=r"^[A-Za-z0-9_-]{1,40}$")] = None
    servers: list[ServerSpec] = Field(min_length=1)
    clients: list[ClientSpec] = []
    idempotency: bool = True
    """Keep a DynamoDB ledger of served requests so a redelivered request runs once. Switch it off
    where DynamoDB is not available (LocalStack offline); delivery is then at least once."""
    tasks: bool | None = None
    """Keep a DynamoDB task store so task-capable tools run as tasks (`dmcp_aws.tasks`); by default
    on exactly when `idempotency` is (both need DynamoDB)."""
    orphan_queue_idle_s: Annotated[int, Field(ge=900, le=14 * 24 * 3600)] = 3600
    """A per-connection reply queue no client has touched for this long is deleted by the sweeper
    (a live connection touches its queue every few minutes)."""
    architecture: Literal["arm64", "x86_64", "host"] = "arm64"
    """The worker functions' CPU architecture; `host` is this machine's (for LocalStack in host
    mode, which runs the functions' compiled dependencies natively)."""

    @property
    def lambda_architecture(self) -> Literal["arm64", "x86_64"]:
        """`architecture` with `host` resolved to this machine's."""
        if self.architecture != "host":
            return self.architecture
        return "arm64" if platform.machine().lower() in ("arm64", "aarch64") else "x86_64"

    @model_validator(mode="after")
    def _unique_names(self) -> Deployment:
        for kind, names in (
            ("server", [s.name for s in self.servers]),
            ("client", [c.name for c in self.clients]),
        ):
            duplicates = sorted({n for n in names if names.count(n) > 1})
            if duplicates:
                raise ValueError(f"{kind} names must be unique; repeated: {', '.join(duplicates)}")
        if any(s.name == UNROUTED for s in self.servers):
            raise ValueError(f"server name {UNROUTED!r} is reserved for the catch-all")
        if reserved := [c.name for c in self.clients if c.name.startswith(CONNECTION_QUEUE_PREFIX)]:
            raise ValueError(
                f"client names starting with {CONNECTION_QUEUE_PREFIX!r} are reserved: {reserved}"
            )
        for client in self.clients:
            longest = len(self.client_connection_prefix(client.name)) + CONNECTION_QUEUE_RANDOM_CHARS
            if longest > MAX_QUEUE_NAME:
                raise ValueError(
                    f"client {client.name!r}: connection queue names would be {longest} characters "
                    f"(SQS allows {MAX_QUEUE_NAME}); shorten the reply prefix or the client name"
                )
        return self

    @property
    def reply_prefix(self) -> str:
        """Every reply queue's name starts with this; workers may send nowhere else."""
        return self.reply_queue_prefix or f"{self.name}-reply-"

    @property
    def connection_queue_prefix(self) -> str:
        """The prefix clients create their per-connection reply queues under."""
        return f"{self.reply_prefix}{CONNECTION_QUEUE_PREFIX}"

    def client_connection_prefix(self, client: str) -> str:
        """The prefix client `client` creates its per-connection reply queues under; its IAM
        policy covers exactly `<this prefix>*`."""
        return f"{self.connection_queue_prefix}{client}{CONNECTION_QUEUE_SEPARATOR}"

    def server(self, name: str) -> ServerSpec:
        for spec in self.servers:
            if spec.name == name:
                return spec
        raise KeyError(f"no server named {name!r} in deployment {self.name!r}")

    @classmethod
    def parse(cls, data: Any, *, source: str = "deployment") -> Deployment:
        """Validate raw data, raising `DeploymentError` with one line per problem."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            lines = [f"  {'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}" for e in exc.errors()]
            raise DeploymentError(f"{source} is invalid:\n" + "\n".join(lines)) from None

    @classmethod
    def load(cls, path: str | Path) -> Deployment:
        """Read and validate a deployment description from a JSON file."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise DeploymentError(f"{path} does not exist") from None
        except json.JSONDecodeError as exc:
            raise DeploymentError(f"{path} is not valid JSON: {exc}") from None
        return cls.parse(data, source=str(path))


@dataclass(frozen=True)
class QueueSpec:
    """A queue to create: a request queue with its DLQ, a DLQ, or a reply queue."""

    name: str
    role: str
    """`requests`, `dlq` or `reply`."""
    dead_letter_queue: str | None = None
    max_receive_count: int | None = None
    visibility_timeout_s: int = 30
    fifo: bool = False


@dataclass(frozen=True)
class SubscriptionSpec:
    """A raw-delivery subscription of a request queue to the request topic.

    `dead_letter_queue` receives what SNS cannot deliver to the queue (its redrive policy)."""

    queue: str
    filter_policy: dict[str, Any]
    dead_letter_queue: str | None = None


@dataclass(frozen=True)
class WorkerSpec:
    """A worker: the server it serves (or the catch-all) and the queues it uses."""

    server: str
    handler: str
    request_queue: str
    dead_letter_queue: str
    spec: ServerSpec

    @property
    def environment(self) -> dict[str, str]:
        """The worker function's own environment variables (a `command` server's settings)."""
        return self.spec.worker_environment


@dataclass(frozen=True)
class Topology:
    """Every messaging resource of a deployment, by name."""

    topic: str
    reply_prefix: str
    idempotency_table: str | None = None
    tasks_table: str | None = None
    """DynamoDB table of the Tasks extension's task store (`dmcp_aws.tasks.store`)."""
    queues: list[QueueSpec] = field(default_factory=list)
    subscriptions: list[SubscriptionSpec] = field(default_factory=list)
    workers: list[WorkerSpec] = field(default_factory=list)


CATCH_ALL_HANDLER: Final = "dmcp_aws.catch_all.handler"


VISIBILITY_PER_TIMEOUT: Final = 6
"""AWS's advice: a queue's visibility timeout is at least six times its function's timeout."""


def topology(deployment: Deployment) -> Topology:
    """The queues, subscriptions and workers a deployment consists of (pure)."""
    name = deployment.name
    served = [s.name for s in deployment.servers]
    catch_all = ServerSpec(name=UNROUTED, handler=CATCH_ALL_HANDLER, memory_mb=256, timeout_s=10)
    table = f"{name}-idempotency" if deployment.idempotency else None
    tasks = (
        f"{name}-tasks"
        if (deployment.idempotency if deployment.tasks is None else deployment.tasks)
        else None
    )
    result = Topology(
        topic=f"{name}-requests",
        reply_prefix=deployment.reply_prefix,
        idempotency_table=table,
        tasks_table=tasks,
    )
    for spec, policy in [(s, {"mcp.server": [s.name]}) for s in deployment.servers] + [
        # `exists: false` first: SNS ORs the two, and moto stops at a failed `anything-but`.
        (catch_all, {"mcp.server": [{"exists": False}, {"anything-but": served}]})
    ]:
        requests, dlq = f"{name}-{spec.name}-requests", f"{name}-{spec.name}-dlq"
        result.queues.append(QueueSpec(dlq, "dlq", visibility_timeout_s=30))
        result.queues.append(
            QueueSpec(
                requests,
                "requests",
                dead_letter_queue=dlq,
                max_receive_count=spec.max_receive_count + LAST_WORD_DELIVERIES,
                visibility_timeout_s=VISIBILITY_PER_TIMEOUT * spec.timeout_s,
            )
        )
        result.subscriptions.append(SubscriptionSpec(requests, policy, dead_letter_queue=dlq))
        result.workers.append(WorkerSpec(spec.name, spec.entry_point, requests, dlq, spec))
    for client in deployment.clients:
        suffix = ".fifo" if client.fifo else ""
        result.queues.append(
            QueueSpec(f"{deployment.reply_prefix}{client.name}{suffix}", "reply", fifo=client.fifo)
        )
    return result


DEFAULT_DEPLOYMENT: Final = Deployment(servers=[ServerSpec(name="example")])
