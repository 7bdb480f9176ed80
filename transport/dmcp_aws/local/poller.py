"""A poller that emulates the Lambda SQS event source mapping.

It long-polls a request queue up to the batch size (within the batching window), calls the
real Lambda handler with a Lambda-shaped event, deletes the records that did not fail and
leaves the failures for redelivery after the visibility timeout. Each of its `max_concurrency`
poll loops owns one "container" (`dmcp_aws.local.container`: a daemon thread) that keeps its
event loop between invocations, as a warm Lambda execution environment does; an invocation that
overruns the function timeout fails its batch and its container is replaced (the stuck thread is
abandoned and cannot keep the process from exiting). Pointed at real SQS it is the long-running worker for
containers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio

from dmcp_aws.local.container import Container
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
        self, sqs: Any, handler: Handler, settings: MappingSettings, wait_time_seconds: int = 20
    ) -> None:
        self.sqs = sqs
        self.handler = handler
        self.settings = settings
        self.wait_time_seconds = wait_time_seconds
        self.invocations = 0

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Run the poll loops; in-flight batches finish before a cancellation takes effect."""
        containers = [self._new_container(i) for i in range(self.settings.max_concurrency)]
        try:
            async with anyio.create_task_group() as tg:
                for slot in range(len(containers)):
                    tg.start_soon(self._poll, containers, slot)
                task_status.started()
        finally:
            with anyio.CancelScope(shield=True):
                for container in containers:
                    await asyncio.wrap_future(container.submit(self._retire_container))
                    container.retire()
            if (reset := getattr(self.handler, "reset", None)) is not None:
                reset()  # like a function's environments being recycled: settings are read anew

    def _new_container(self, slot: int) -> Container:
        return Container(f"{self.settings.function_name}-{slot}")

    async def _poll(self, containers: list[Container], slot: int) -> None:
        while True:
            try:
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
                    containers[slot].retire()
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

    async def _invoke(self, container: Container, messages: list[dict[str, Any]]) -> bool:
        """Run one invocation; False if it overran the function timeout."""
        settings = self.settings
        event = lambda_event(messages, settings.queue_arn, settings.region)
        context = LocalLambdaContext(
            settings.function_name, settings.memory_mb, settings.timeout_s, settings.region, settings.account
        )
        self.invocations += 1
        invocation = asyncio.wrap_future(container.submit(self.handler, event, context))
        try:
            response = await asyncio.wait_for(asyncio.shield(invocation), settings.timeout_s)
        except TimeoutError:
            logger.error(
                "%s timed out after %s s; the batch will be retried",
                settings.function_name,
                settings.timeout_s,
            )
            return False
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

    def _retire_container(self) -> None:
        """In the container thread: release what the handler keeps per event loop, close the loop."""
        try:
            loop = asyncio.get_event_loop()
        except RuntimeError:
            return
        close = getattr(self.handler, "aclose", None)
        if close is not None and not loop.is_closed():
            loop.run_until_complete(close())
        loop.close()
