"""Delete the per-connection reply queues their clients left behind (orphans).

A client transport creates a reply queue per connection under its connection prefix
(`<reply prefix>conn-<client>_<random>`) and deletes it on close; a client killed with SIGKILL
cannot. A live connection touches its queue every few minutes (`SetQueueAttributes`, which moves
the queue's `LastModifiedTimestamp`), so a queue whose last sign of life is older than the idle
limit has no client left, and the sweeper deletes it:

    >>> is_orphaned({"CreatedTimestamp": "1700000000", "LastModifiedTimestamp": "1700000300"},
    ...             now=1700004000, idle_s=3600)
    True
    >>> deleted = await sweep_orphaned_queues(sqs, "dmcp-reply-conn-", idle_s=3600)  # aioboto3 SQS

In a deployed stack `handler` runs on a schedule (`infra/sweeper.py`), configured by the
environment: `DMCP_CONNECTION_PREFIX` (every client's connection queues, `<reply prefix>conn-`)
and `DMCP_ORPHAN_QUEUE_IDLE_S`. Locally `dmcp dev` sweeps in the background and `dmcp sweep`
sweeps on demand. A reply a worker sends to a swept queue is dropped as "the client left".
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any, Final

logger = logging.getLogger(__name__)

TIMESTAMP_ATTRIBUTES: Final = ("CreatedTimestamp", "LastModifiedTimestamp")
"""Epoch seconds: when the queue was created and when its attributes last changed (a touch)."""
IN_FLIGHT_ATTRIBUTE: Final = "ApproximateNumberOfMessagesNotVisible"
"""Messages received and not yet deleted: a queue with some is being read, so it is kept."""
QUEUE_GONE_CODES: Final = frozenset(
    {"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist", "NonExistentQueue"}
)
"""Error codes of a queue that no longer exists (deleted meanwhile: its client closed)."""
PREFIX_ENV: Final = "DMCP_CONNECTION_PREFIX"
IDLE_ENV: Final = "DMCP_ORPHAN_QUEUE_IDLE_S"
DEFAULT_IDLE_S: Final = 3600
"""`Deployment.orphan_queue_idle_s`'s default."""
LIST_PAGE_SIZE: Final = 1000
"""The most queue URLs one `ListQueues` call returns."""


class SweepIncomplete(RuntimeError):
    """Some queues could not be checked or deleted (not because they were gone); the rest were
    swept. `deleted` lists the queue URLs that were deleted, `failures` the URL -> error."""

    def __init__(self, deleted: list[str], failures: dict[str, str]) -> None:
        listing = "; ".join(f"{url}: {error}" for url, error in failures.items())
        super().__init__(f"{len(failures)} queue(s) could not be swept: {listing}")
        self.deleted = deleted
        self.failures = failures


def last_sign_of_life(attributes: Mapping[str, str]) -> float | None:
    """The latest of the queue's creation and last change (epoch seconds), or None if unknown."""
    stamps = []
    for name in TIMESTAMP_ATTRIBUTES:
        try:
            stamps.append(float(attributes[name]))
        except (KeyError, TypeError, ValueError):
            continue
    return max(stamps) if stamps else None


def is_orphaned(attributes: Mapping[str, str], *, now: float, idle_s: float) -> bool:
    """Whether a per-connection queue with these attributes (`GetQueueAttributes`) is orphaned:
    nothing has touched it for at least `idle_s` seconds before `now` and no message of it is
    being read. A queue whose age cannot be told is kept."""
    if idle_s < 0:
        raise ValueError(f"idle_s must be >= 0, not {idle_s}")
    last = last_sign_of_life(attributes)
    if last is None:
        return False
    try:
        if int(attributes.get(IN_FLIGHT_ATTRIBUTE) or 0) > 0:
            return False
    except ValueError:
        return False
    return now - last >= idle_s


def queue_name(url: str) -> str:
    """The queue's name: the last segment of its URL."""
    return url.rstrip("/").rsplit("/", 1)[-1]


async def sweep_orphaned_queues(
    sqs: Any,
    connection_prefix: str,
    idle_s: float,
    now: float | None = None,
    *,
    page_size: int = LIST_PAGE_SIZE,
) -> list[str]:
    """Delete every queue named `connection_prefix…` that `is_orphaned` at `now` (default: the
    current time); return the deleted queues' URLs.

    `sqs` is an aioboto3 SQS client allowed `ListQueues` and, on the prefix, `GetQueueAttributes`
    and `DeleteQueue`. A queue deleted meanwhile is skipped; any other failure on a queue is
    logged, the sweep goes on, and `SweepIncomplete` is raised at the end.
    """
    if not connection_prefix:
        raise ValueError("refusing to sweep with an empty connection prefix (it would cover every queue)")
    if idle_s < 0:
        raise ValueError(f"idle_s must be >= 0, not {idle_s}")
    now = time.time() if now is None else now
    deleted: list[str] = []
    failures: dict[str, str] = {}
    async for url in _queue_urls(sqs, connection_prefix, page_size):
        if not queue_name(url).startswith(connection_prefix):
            continue  # never trust a listing to have honoured the prefix
        try:
            response = await sqs.get_queue_attributes(
                QueueUrl=url, AttributeNames=[*TIMESTAMP_ATTRIBUTES, IN_FLIGHT_ATTRIBUTE]
            )
            if not is_orphaned(response.get("Attributes", {}), now=now, idle_s=idle_s):
                continue
            await sqs.delete_queue(QueueUrl=url)
        except Exception as exc:
            if _queue_gone(exc):
                logger.debug("queue %s was deleted meanwhile", queue_name(url))
                continue
            logger.warning("could not sweep %s: %s", queue_name(url), exc)
            failures[url] = str(exc)
            continue
        logger.info("deleted orphaned connection queue %s", queue_name(url))
        deleted.append(url)
    if failures:
        raise SweepIncomplete(deleted, failures)
    return deleted


async def _queue_urls(sqs: Any, prefix: str, page_size: int) -> AsyncIterator[str]:
    """Every queue URL under `prefix`, page by page (`ListQueues` paginates only with MaxResults)."""
    token: str | None = None
    while True:
        request: dict[str, Any] = {"QueueNamePrefix": prefix, "MaxResults": page_size}
        if token:
            request["NextToken"] = token
        page = await sqs.list_queues(**request)
        for url in page.get("QueueUrls", []):
            yield url
        token = page.get("NextToken")
        if not token:
            return


def _queue_gone(exc: Exception) -> bool:
    response = getattr(exc, "response", None)
    code = (response or {}).get("Error", {}).get("Code") if isinstance(response, Mapping) else None
    return code in QUEUE_GONE_CODES


def settings_from_env(environ: Mapping[str, str] = os.environ) -> tuple[str, int]:
    """`(connection prefix, idle seconds)` from `DMCP_CONNECTION_PREFIX` and `DMCP_ORPHAN_QUEUE_IDLE_S`."""
    prefix = environ.get(PREFIX_ENV, "")
    if not prefix:
        raise RuntimeError(
            f"{PREFIX_ENV} is not set: the sweeper does not know which queues are its to sweep"
        )
    raw = environ.get(IDLE_ENV) or str(DEFAULT_IDLE_S)
    try:
        idle_s = int(raw)
    except ValueError:
        raise RuntimeError(f"{IDLE_ENV} must be a whole number of seconds, not {raw!r}") from None
    if idle_s < 0:
        raise RuntimeError(f"{IDLE_ENV} must be >= 0, not {idle_s}")
    return prefix, idle_s


@functools.cache
def _lambda_logger() -> Any:
    """powertools' JSON logger, shared with this module's logger (made on the first invocation,
    so that importing the module, as the `dmcp` command does, configures no logging)."""
    from aws_lambda_powertools import Logger
    from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers

    powertools = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME") or "dmcp-sweeper")
    copy_config_to_registered_loggers(source_logger=powertools, include={__name__})
    return powertools


async def _sweep_with_new_client(prefix: str, idle_s: int) -> list[str]:
    import aioboto3

    async with aioboto3.Session().client("sqs") as sqs:
        return await sweep_orphaned_queues(sqs, prefix, idle_s)


def handler(event: Mapping[str, Any] | None = None, context: Any = None) -> dict[str, Any]:
    """The scheduled Lambda entry point (`dmcp_aws.sweep.handler`); the event is ignored.

    Returns `{"prefix": ..., "idle_s": ..., "deleted": [queue names]}`.
    """
    log = _lambda_logger()
    prefix, idle_s = settings_from_env()
    try:
        deleted = asyncio.run(_sweep_with_new_client(prefix, idle_s))
    except SweepIncomplete as exc:
        log.error(
            "sweep incomplete",
            extra={
                "prefix": prefix,
                "deleted": [queue_name(u) for u in exc.deleted],
                "failures": exc.failures,
            },
        )
        raise
    names = [queue_name(url) for url in deleted]
    log.info("swept orphaned connection queues", extra={"prefix": prefix, "idle_s": idle_s, "deleted": names})
    return {"prefix": prefix, "idle_s": idle_s, "deleted": names}
