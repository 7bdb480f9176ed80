"""Async AWS clients for workers, on boto3 and threads rather than aioboto3.

    >>> session = ThreadedSession()
    >>> async with session.client("sqs", endpoint_url=url) as sqs:
    ...     await sqs.send_message(QueueUrl=queue_url, MessageBody="{}")

It has the shape of `aioboto3.Session` that the worker uses (`client(...)` as an async context
manager, operations awaited with keyword arguments, botocore's `ClientError` on failure), so the
worker's code reads the same with either. Each call runs the boto3 client's method on one of the
process's AWS threads (`in_thread`) (boto3 clients are thread-safe; the client is created once, off the event
loop). The threads outlive each invocation's event-loop run, unlike `anyio.to_thread`'s, which
end with the task that started them (in Lambda, every invocation).

Why: a Lambda function pays for every import at each cold start, and aioboto3 with aiohttp is
about 170 ms of it while boto3 is in every Lambda runtime already. A worker's AWS calls are few
and short (a reply, a ledger write), so a thread per call in flight costs little; the client
transport, which holds long polls open, keeps aioboto3.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Final, Protocol

import boto3
from botocore.config import Config

POOL_CONNECTIONS: Final = 50
"""HTTP connections a client keeps (botocore's default of 10 would make calls beyond it open
and drop a connection each time when a batch's records send at once)."""

_SESSION_LOCK: Final = threading.Lock()
"""boto3 sessions are not thread-safe: clients are created one at a time."""
_THREADS: Final = ThreadPoolExecutor(max_workers=POOL_CONNECTIONS, thread_name_prefix="dmcp-aws")
"""Where blocking AWS calls run (threads start when first needed and are then reused)."""


async def in_thread(call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """`call(*args, **kwargs)` on one of the process's AWS threads, awaited."""
    bound = functools.partial(call, *args, **kwargs)
    return await asyncio.get_running_loop().run_in_executor(_THREADS, bound)


class ThreadedClient:
    """An async face for a boto3 client: `await client.operation(**kwargs)` runs on a thread.

    Only the service's operations are wrapped; other attributes (`meta`, `exceptions`) are the
    boto3 client's own.
    """

    def __init__(self, client: Any) -> None:
        self.sync = client
        """The boto3 client underneath."""
        self._operations = frozenset(client.meta.method_to_api_mapping)

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.sync, name)
        if name not in self._operations:
            return attribute
        return functools.partial(in_thread, attribute)


class ThreadedSession:
    """Creates `ThreadedClient`s; shaped like the `aioboto3.Session` methods the worker uses."""

    def __init__(self, session: boto3.Session | None = None, **session_options: Any) -> None:
        self._session = session or boto3.Session(**session_options)

    @asynccontextmanager
    async def client(self, service_name: str, **options: Any) -> AsyncIterator[ThreadedClient]:
        """A client for `service_name` (boto3's `client` options), closed on exit."""
        options.setdefault("config", Config(max_pool_connections=POOL_CONNECTIONS))
        client = await in_thread(self._create, service_name, options)
        try:
            yield ThreadedClient(client)
        finally:
            client.close()

    def _create(self, service_name: str, options: dict[str, Any]) -> Any:
        with _SESSION_LOCK:
            return self._session.client(service_name, **options)  # type: ignore[call-overload]


class AsyncAwsSession(Protocol):
    """What workers need of a session: `ThreadedSession`, or an `aioboto3.Session`."""

    def client(self, service_name: str, **options: Any) -> AbstractAsyncContextManager[Any]:
        """An async context manager yielding a client whose operations are awaited."""
        ...
