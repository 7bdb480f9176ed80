"""A poller that emulates the Lambda SQS event source mapping.

It long-polls a request queue up to the batch size (within the batching window), calls the
real Lambda handler with a Lambda-shaped event, deletes the records that did not fail and
leaves the failures for redelivery after the visibility timeout. Each of its `max_concurrency`
poll loops owns one "container" (`dmcp_aws.local.container`) that keeps the handler warm
between invocations, as a Lambda execution environment does; an invocation that overruns the
function timeout fails its batch and its container is replaced. The kind of container is
pluggable (`containers=`, a factory): by default a daemon thread in this process (the embedded
stack: `dmcp dev`, `dmcp demo`, the tests), where a stuck invocation is abandoned; `dmcp worker`
uses a process per container, where it is killed. Pointed at real SQS it is the long-running
worker for containers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio

from dmcp_aws.local.container import (
    Container,
    ContainerFactory,
    HandlerContainer,
    InvocationFailed,
    InvocationTimeout,
)
from dmcp_aws.local.lambda_event import LocalLambdaContext, failed_message_ids, lambda_event

logger = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any], Any], Any]


@dataclass(frozen=True)
class MappingSettings:
    """The event source mapping's knobs (as on `AWS::Lambda::EventSourceMapping`)."""

    function_name: str
    queue_url: str
    queue_arn: str
    batch_size: int = 10
    batching_window_s: float = 0
    max_concurrency: int = 2
    timeout_s: int = 30
    memory_mb: int = 512

    @property
    def region(self) -> str:
        return self.queue_arn.split(":")[3]

    @property
    def account(self) -> str:
        return self.queue_arn.split(":")[4]


class EventSourceMapping:
    """Feeds one queue to one handler until cancelled."""

    def __init__(
        self,
        sqs: Any,
        handler: Handler | None,
        settings: MappingSettings,
        wait_time_seconds: int = 20,
        *,
        containers: ContainerFactory | None = None,
    ) -> None:
        """`containers` builds an execution environment from its name; by default a thread
        (`Container`) running `handler`, which may be None only when `containers` is given."""
        if containers is None and handler is None:
            raise ValueError("an event source mapping needs a handler or a container factory")
        self.sqs = sqs
        self.handler = handler
        self.containers: ContainerFactory = containers or (lambda name: Container(name, handler))
        self.settings = settings
        self.wait_time_seconds = wait_time_seconds
        self.invocations = 0

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Run the poll loops; in-flight batches finish before a cancellation takes effect.

        The first container is started before the mapping reports itself started, so that a
        handler that cannot be loaded is an error here, not a failed invocation later."""
        containers = [self._new_container(i) for i in range(self.settings.max_concurrency)]
        try:
            if (start := getattr(containers[0], "start", None)) is not None:
                await start()
            async with anyio.create_task_group() as tg:
                for slot in range(len(containers)):
                    tg.start_soon(self._poll, containers, slot)
                task_status.started()
        finally:
            with anyio.CancelScope(shield=True):
                for container in containers:
                    await container.retire()
            if (reset := getattr(self.handler, "reset", None)) is not None:
                reset()  # like a function's environments being recycled: settings are read anew

    def _new_container(self, slot: int) -> HandlerContainer:
        return self.containers(f"{self.settings.function_name}-{slot}")

    async def _poll(self, containers: list[HandlerContainer], slot: int) -> None:
        while True:
            try:
                # Warm the container before taking messages: a cold start after the receive would
                # hold a batch invisible (and spend a delivery of it) while the handler loads.
                if (start := getattr(containers[slot], "start", None)) is not None:
                    await start()
                messages = await self._receive_batch()
            except Exception as exc:
                logger.error("polling %s failed: %s", self.settings.queue_url, exc)
                await anyio.sleep(1)
                continue
            if messages:
                with anyio.CancelScope(shield=True):
                    finished = await self._invoke(containers[slot], messages)
                if not finished:
                    # Lambda throws away an environment whose invocation timed out; so do we.
                    with anyio.CancelScope(shield=True):
                        await containers[slot].retire()
                    containers[slot] = self._new_container(slot)

    async def _receive_batch(self) -> list[dict[str, Any]]:
        """Long-poll until at least one message, then fill up to the batch size within the window."""
        settings = self.settings
        messages: list[dict[str, Any]] = []
        deadline: float | None = None
        while len(messages) < settings.batch_size:
            waiting = (
                self.wait_time_seconds if not messages else max(0, int((deadline or 0) - time.monotonic()))
            )
            response = await self.sqs.receive_message(
                QueueUrl=settings.queue_url,
                MaxNumberOfMessages=min(10, settings.batch_size - len(messages)),
                WaitTimeSeconds=waiting,
                AttributeNames=["All"],
                MessageAttributeNames=["All"],
            )
            received = response.get("Messages", [])
            messages.extend(received)
            if not messages and not received:
                continue
            if deadline is None:
                deadline = time.monotonic() + settings.batching_window_s
            if not received or time.monotonic() >= deadline:
                break
        return messages

    async def _invoke(self, container: HandlerContainer, messages: list[dict[str, Any]]) -> bool:
        """Run one invocation; False if it overran the function timeout."""
        settings = self.settings
        event = lambda_event(messages, settings.queue_arn, settings.region)
        context = LocalLambdaContext(
            settings.function_name, settings.memory_mb, settings.timeout_s, settings.region, settings.account
        )
        self.invocations += 1
        try:
            response = await container.invoke(event, context, settings.timeout_s)
        except InvocationTimeout:
            logger.error(
                "%s timed out after %s s; the batch will be retried",
                settings.function_name,
                settings.timeout_s,
            )
            return False
        except InvocationFailed as exc:
            logger.error("%s failed (%s); the whole batch will be retried", settings.function_name, exc)
            return True
        except Exception:
            logger.exception("%s failed; the whole batch will be retried", settings.function_name)
            return True
        failed = failed_message_ids(response, event)
        await self._delete([m for m in messages if m["MessageId"] not in failed])
        return True

    async def _delete(self, messages: list[dict[str, Any]]) -> None:
        """Delete processed messages, ten at a time (SQS's batch limit); what fails is redelivered."""
        for start in range(0, len(messages), 10):
            chunk = messages[start : start + 10]
            entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(chunk)]
            try:
                result = await self.sqs.delete_message_batch(
                    QueueUrl=self.settings.queue_url, Entries=entries
                )
            except Exception as exc:
                logger.error(
                    "could not delete %d processed messages (they will be redelivered): %s", len(chunk), exc
                )
                continue
            for failure in result.get("Failed", []):
                logger.error("could not delete a processed message: %s", failure.get("Message"))
