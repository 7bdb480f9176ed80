"""The embedded local stack: moto's server in this process on 127.0.0.1, provisioned from the
deployment description, with one Lambda-faithful poller per worker calling the real handlers.

    >>> async with embedded_stack(Deployment.load("dmcp.json"), code_root=".") as stack:
    ...     async with Client(sqs_client_transport(stack.topic_target("example"), **stack.client_options())):
    ...         ...
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import aioboto3
import anyio
from botocore.config import Config

from dmcp_aws.client import QueueTarget, TopicTarget
from dmcp_aws.deployment import DEFAULT_DEPLOYMENT, Deployment, Topology, WorkerSpec, topology
from dmcp_aws.local.poller import EventSourceMapping, MappingSettings
from dmcp_aws.local.provision import Provisioned, provision
from dmcp_aws.naming import TASKS_TABLE_VARIABLE

logger = logging.getLogger(__name__)

REGION: Final = "us-east-1"
LOOPBACK: Final = "127.0.0.1"
_FAKE_CREDENTIALS: Final = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


@dataclass
class RunningStack:
    """A running embedded stack: where it listens and what it created."""

    endpoint_url: str
    region: str
    deployment: Deployment
    topology: Topology
    resources: Provisioned
    mappings: list[EventSourceMapping] = field(default_factory=list)

    @property
    def topic_arn(self) -> str:
        return self.resources.topic_arn

    @property
    def reply_prefix(self) -> str:
        return self.topology.reply_prefix

    def session(self) -> aioboto3.Session:
        """An aioboto3 session with the stack's (fake) credentials and region."""
        return aioboto3.Session(region_name=self.region, **_FAKE_CREDENTIALS)

    def queue_url(self, name: str) -> str:
        return self.resources.queue_urls[name]

    def worker(self, server: str) -> WorkerSpec:
        """The topology's worker entry for `server` (its request queue and DLQ names)."""
        return next(w for w in self.topology.workers if w.server == server)

    def topic_target(self, server: str) -> TopicTarget:
        return TopicTarget(topic_arn=self.topic_arn, server=server)

    def queue_target(self, server: str) -> QueueTarget:
        return QueueTarget(queue_url=self.queue_url(self.worker(server).request_queue), server=server)

    @property
    def connection_queue_prefix(self) -> str:
        """Every client's per-connection reply queues are named under this (what the sweeper sweeps)."""
        return self.deployment.connection_queue_prefix

    def client_connection_prefix(self, client: str | None = None) -> str:
        """The prefix a client's per-connection reply queues go under: provisioned client
        `client`'s own, by default the first provisioned client's (as its principal would be
        allowed in a deployed stack), or `<reply prefix>conn-` when there are no clients."""
        names = [c.name for c in self.deployment.clients]
        if client is None:
            client = names[0] if names else None
        elif client not in names:
            raise KeyError(f"deployment {self.deployment.name!r} has no client {client!r}; it has {names}")
        if client is None:
            return self.deployment.connection_queue_prefix
        return self.deployment.client_connection_prefix(client)

    def client_options(self, client: str | None = None) -> dict[str, Any]:
        """Keyword arguments for `sqs_client_transport` to use this stack, creating its reply queue
        per connection under `client_connection_prefix(client)`."""
        return {
            "session": self.session(),
            "endpoint_url": self.endpoint_url,
            "reply_prefix": self.client_connection_prefix(client),
        }


@asynccontextmanager
async def embedded_stack(
    deployment: Deployment = DEFAULT_DEPLOYMENT,
    *,
    code_root: str | Path = ".",
    workers: bool = True,
    port: int = 0,
    wait_time_seconds: int = 20,
) -> AsyncIterator[RunningStack]:
    """Start moto on 127.0.0.1 (`port` 0: any free port), provision `deployment`, run its workers."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(max(logging.getLogger("werkzeug").level, logging.WARNING))
    server = ThreadedMotoServer(ip_address=LOOPBACK, port=port, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    _running_stacks.append(endpoint)
    try:
        with lambda_environment(deployment, endpoint, code_root):
            session = aioboto3.Session(region_name=REGION, **_FAKE_CREDENTIALS)
            async with AsyncExitStack() as stack:
                sqs = await stack.enter_async_context(session.client("sqs", endpoint_url=endpoint))
                sns = await stack.enter_async_context(session.client("sns", endpoint_url=endpoint))
                dynamodb = await stack.enter_async_context(session.client("dynamodb", endpoint_url=endpoint))
                shape = topology(deployment)
                resources = await provision(shape, sqs, sns, dynamodb)
                running = RunningStack(endpoint, REGION, deployment, shape, resources)
                async with anyio.create_task_group() as tg:
                    if workers:
                        for worker in shape.workers:
                            # Each poll loop holds one connection for its whole long poll: a
                            # mapping gets a client whose pool fits all its loops and their deletes.
                            poller_sqs = await stack.enter_async_context(
                                session.client(
                                    "sqs",
                                    endpoint_url=endpoint,
                                    config=poller_config(worker.spec.max_concurrency),
                                )
                            )
                            mapping = EventSourceMapping(
                                poller_sqs,
                                load_handler(worker.handler),
                                mapping_settings(
                                    worker,
                                    f"{deployment.name}-{worker.server}",
                                    resources.queue_urls[worker.request_queue],
                                    resources.queue_arns[worker.request_queue],
                                ),
                                wait_time_seconds,
                            )
                            running.mappings.append(mapping)
                            await tg.start(mapping.run)
                    try:
                        yield running
                    finally:
                        tg.cancel_scope.cancel()
    finally:
        _running_stacks.remove(endpoint)
        if not _running_stacks:
            _reset_moto(endpoint)
        server.stop()


_running_stacks: list[str] = []
"""Endpoints of the embedded stacks running in this process: they share moto's backends."""


def _reset_moto(endpoint: str) -> None:
    """Forget every resource: moto's backends are process-wide and outlive the servers."""
    import urllib.request

    try:
        urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST"), timeout=5)
    except OSError as exc:
        logger.warning("could not reset moto: %s", exc)


def poller_config(max_concurrency: int) -> Config:
    """botocore settings for one event source mapping's SQS client: a connection per poll loop
    (each holds one for a 20 s long poll) plus as many for deletes, never the default 10."""
    return Config(max_pool_connections=2 * max_concurrency + 2)


class HandlerError(ImportError):
    """A server's handler cannot be loaded: its module is missing, fails on import, or lacks the
    attribute (what Lambda reports as `Runtime.ImportModuleError` / `Runtime.HandlerNotFound`)."""


def load_handler(dotted: str) -> Any:
    """Import `module.attribute`, the way the Lambda runtime resolves a handler string."""
    module_name, _, attribute = dotted.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        detail = f"{type(exc).__name__}: {exc}".splitlines()[0]
        raise HandlerError(
            f"cannot load handler {dotted!r}: importing {module_name} failed ({detail})"
        ) from exc
    try:
        return getattr(module, attribute)
    except AttributeError:
        raise HandlerError(f"cannot load handler {dotted!r}: {module_name} has no {attribute!r}") from None


@contextmanager
def lambda_environment(deployment: Deployment, endpoint: str, code_root: str | Path) -> Iterator[None]:
    """What Lambda (and the CDK stack) give a worker function, for the embedded stack's endpoint
    and fake credentials; restored on exit."""
    local = {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": _FAKE_CREDENTIALS["aws_access_key_id"],
        "AWS_SECRET_ACCESS_KEY": _FAKE_CREDENTIALS["aws_secret_access_key"],
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_DISABLED": os.environ.get("POWERTOOLS_METRICS_DISABLED", "true"),
        "POWERTOOLS_LOG_LEVEL": os.environ.get("POWERTOOLS_LOG_LEVEL", "WARNING"),
    }
    with worker_environment(deployment, code_root, extra=local):
        yield


@contextmanager
def worker_environment(
    deployment: Deployment, code_root: str | Path, extra: Mapping[str, str] | None = None
) -> Iterator[None]:
    """The deployment's worker settings (`DMCP_*`), the code root as Lambda's task root and on
    `sys.path`, plus `extra`; all restored on exit."""
    root = str(Path(code_root).resolve())
    shape = topology(deployment)
    values = {
        "DMCP_REPLY_PREFIX": shape.reply_prefix,
        "DMCP_IDEMPOTENCY_TABLE": shape.idempotency_table or "",
        TASKS_TABLE_VARIABLE: shape.tasks_table or "",
        "LAMBDA_TASK_ROOT": root,
        # Each worker's own settings: their names are per server, so they never clash.
        **{name: value for worker in shape.workers for name, value in worker.environment.items()},
        **(extra or {}),
    }
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    added_path = root not in sys.path
    if added_path:
        sys.path.insert(0, root)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        if added_path:
            sys.path.remove(root)


def mapping_settings(
    worker: WorkerSpec, function_name: str, queue_url: str, queue_arn: str
) -> MappingSettings:
    """The event source mapping of a topology's worker, as the CDK stack configures it."""
    spec = worker.spec
    return MappingSettings(
        function_name=function_name,
        queue_url=queue_url,
        queue_arn=queue_arn,
        batch_size=spec.batch_size,
        batching_window_s=spec.batching_window_s,
        max_concurrency=spec.max_concurrency,
        timeout_s=spec.timeout_s,
        memory_mb=spec.memory_mb,
    )
