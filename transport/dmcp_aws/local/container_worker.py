"""A worker outside Lambda: one server's request queue served by a long-running process.

The same handler and the same Lambda event semantics as a deployed function (the poller in
`dmcp_aws.local.poller`), pointed at real SQS, LocalStack or the embedded stack — for containers
(ECS, Kubernetes) or a laptop. Each of its execution environments is a process
(`dmcp_aws.local.container.ProcessContainer`), as in Lambda: a handler that never returns is
killed after the function timeout (the next invocation starts a new process), and no child
outlives the worker. The embedded stack (`dmcp dev`) keeps thread environments instead.

    >>> await serve_from_queue(Deployment.load("dmcp.json"), "example", code_root=".")
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Final

import aioboto3
import anyio

from dmcp_aws.deployment import Deployment, topology
from dmcp_aws.local.container import ProcessContainer
from dmcp_aws.local.poller import EventSourceMapping
from dmcp_aws.local.stack import mapping_settings, poller_config, worker_environment

CONTAINER_POLL_WAIT_S: Final = 5
"""Long-poll wait of a container worker. Shorter than Lambda's 20 s on purpose: when a container
is killed, its receive stays pending in SQS and takes the next message with it (counted as a
delivery no worker saw) for up to this long."""


async def serve_from_queue(
    deployment: Deployment,
    server: str,
    *,
    code_root: str | Path = ".",
    session: aioboto3.Session | None = None,
    endpoint_url: str | None = None,
    region_name: str | None = None,
    task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve `server`'s request queue until cancelled (in-flight batches finish first)."""
    worker = next((w for w in topology(deployment).workers if w.server == server), None)
    if worker is None:
        served = ", ".join(w.server for w in topology(deployment).workers)
        raise KeyError(f"deployment {deployment.name!r} has no server {server!r}; it has {served}")
    session = session or aioboto3.Session()
    # The handler builds its own AWS clients from the environment, as in Lambda.
    endpoint = {"AWS_ENDPOINT_URL": endpoint_url} if endpoint_url else {}
    function_name, handler = f"{deployment.name}-{server}", worker.handler
    with worker_environment(deployment, code_root, extra=endpoint):
        environment = dict(os.environ)  # the handler's processes get the worker's settings

    def container(name: str) -> ProcessContainer:
        return ProcessContainer(name, handler, code_root=code_root, environment=environment)

    # The first environment starts now: a handler that cannot be loaded is an error at once.
    first = container(f"{function_name}-0")
    await first.start()
    prepared = [first]
    try:
        config = poller_config(worker.spec.max_concurrency)
        async with session.client(
            "sqs", endpoint_url=endpoint_url, region_name=region_name, config=config
        ) as sqs:
            url = (await sqs.get_queue_url(QueueName=worker.request_queue))["QueueUrl"]
            arn = (await sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"]))["Attributes"][
                "QueueArn"
            ]
            settings = mapping_settings(worker, function_name, url, arn)
            if worker.spec.container_timeout_s is not None:  # long tasks, beyond Lambda's 900 s
                settings = replace(settings, timeout_s=worker.spec.container_timeout_s)
            mapping = EventSourceMapping(
                sqs,
                None,
                settings,
                wait_time_seconds=CONTAINER_POLL_WAIT_S,
                containers=lambda name: prepared.pop() if prepared else container(name),
            )
            await mapping.run(task_status=task_status)
    finally:
        with anyio.CancelScope(shield=True):
            await first.retire()  # when the mapping never took it over
