"""AWS clients shared by the client connections of a process.

    >>> async with shared_client(await shared_session(), "sqs", endpoint_url, region) as sqs:
    ...     await sqs.receive_message(QueueUrl=url, WaitTimeSeconds=20)

Making an aiobotocore client costs milliseconds of CPU on the event loop, and its first calls
tens more (HTTP session, endpoint rules, request signing set up per client); a connection that
made its own paid that on every connect, more than the round trip it connects with. So the
connections of a process share their clients: one per event loop, session, service, endpoint
and region (a session carries its credentials). Each serves at most `CONNECTIONS_PER_CLIENT`
connections at once, with a connection pool big enough for their long polls (a long poll holds a
pooled HTTP connection for its whole wait) and their sends; a further one gets another client.

A client belongs to the loop that made it. The clients of a loop stay open while the loop runs
and are closed when it shuts down: `asyncio.run` and `anyio.run` finalise async generators
before they close the loop, and one of those closes them. `close_shared_clients()` closes the
current loop's clients at once (when no connection is open). A loop closed without that
shutdown leaves its clients unclosed; they are forgotten, never used by another loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Final

import aioboto3
import anyio
import botocore.session
from botocore.config import Config

logger = logging.getLogger(__name__)

CONNECTIONS_PER_CLIENT: Final = 16
"""Connections one shared client serves at once (each holds one pooled HTTP connection in its
long poll)."""
_POOL: Final = Config(max_pool_connections=4 * CONNECTIONS_PER_CLIENT)
"""Room for every connection's long poll plus its sends and deletes (botocore's default is 10)."""

_Key = tuple[int, str, str | None, str | None]
"""(id of the session, service, endpoint, region)."""


@dataclass(eq=False)
class _Shared:
    session: aioboto3.Session
    """Held so that the session's id in the key is not reused while the client lives."""
    client: Any
    closing: AsyncExitStack
    users: int = 0


@dataclass(eq=False)
class _LoopClients:
    """The shared clients of one event loop."""

    lock: anyio.Lock = field(default_factory=anyio.Lock)
    clients: dict[_Key, list[_Shared]] = field(default_factory=dict)
    finaliser: AsyncGenerator[None] | None = None

    async def aclose(self) -> None:
        clients, self.clients = self.clients, {}
        for shared in (s for group in clients.values() for s in group):
            try:
                await shared.closing.aclose()
            except Exception as exc:
                logger.debug("closing a shared AWS client failed: %s", exc)


_by_loop: dict[asyncio.AbstractEventLoop, _LoopClients] = {}
_shared_session: aioboto3.Session | None = None
_prepared: set[_Key] = set()


async def shared_session() -> aioboto3.Session:
    """The aioboto3 session connections use when given none: one per process, made in a worker
    thread (it reads configuration files), since making one costs about 100 ms of CPU."""
    global _shared_session
    if _shared_session is None:
        _shared_session = await anyio.to_thread.run_sync(aioboto3.Session)
    return _shared_session


@asynccontextmanager
async def shared_client(
    session: aioboto3.Session, service: str, endpoint_url: str | None, region: str | None
) -> AsyncIterator[Any]:
    """A client of `service` shared with the other users on this loop, for the `async with` block."""
    clients = await _loop_clients()
    key = (id(session), service, endpoint_url, region)
    async with clients.lock:
        group = clients.clients.setdefault(key, [])
        shared = next((s for s in group if s.users < CONNECTIONS_PER_CLIENT), None)
        if shared is None:
            shared = await _create(session, key)
            group.append(shared)
        shared.users += 1
    try:
        yield shared.client
    finally:
        shared.users -= 1


async def close_shared_clients() -> None:
    """Close the running loop's shared clients now (they are closed when the loop shuts down
    anyway); call it when no connection is open. Later connections make new ones."""
    clients = _by_loop.pop(asyncio.get_running_loop(), None)
    if clients is not None:
        await clients.aclose()
        if clients.finaliser is not None:
            await clients.finaliser.aclose()


def shared_client_count() -> int:
    """How many shared clients the running loop holds open."""
    clients = _by_loop.get(asyncio.get_running_loop())
    return 0 if clients is None else sum(len(group) for group in clients.clients.values())


async def _loop_clients() -> _LoopClients:
    loop = asyncio.get_running_loop()
    clients = _by_loop.get(loop)
    if clients is None:
        for closed in [other for other in _by_loop if other.is_closed()]:
            del _by_loop[closed]  # shut down without finalising async generators
        clients = _by_loop[loop] = _LoopClients()
        clients.finaliser = _close_at_shutdown(loop, clients)
        await clients.finaliser.asend(None)  # the loop now finalises it when it shuts down
    return clients


async def _close_at_shutdown(loop: asyncio.AbstractEventLoop, clients: _LoopClients) -> AsyncGenerator[None]:
    try:
        yield
    finally:
        if _by_loop.get(loop) is clients:
            del _by_loop[loop]
        await clients.aclose()


async def _create(session: aioboto3.Session, key: _Key) -> _Shared:
    """A new client, its botocore data files read in a worker thread, not on the event loop
    (botocore reads them synchronously when a client is created)."""
    _, service, endpoint_url, region = key
    if key not in _prepared:
        await anyio.to_thread.run_sync(_prepare_client_data, session, service, endpoint_url, region)
        _prepared.add(key)
    closing = AsyncExitStack()
    client = await closing.enter_async_context(
        session.client(service, endpoint_url=endpoint_url, region_name=region, config=_POOL)
    )
    return _Shared(session, client, closing)


def _prepare_client_data(
    session: aioboto3.Session, service: str, endpoint_url: str | None, region: str | None
) -> None:
    """Load what creating a `service` client reads from disk into `session`'s shared loader
    caches, by creating a throwaway synchronous client (it makes no AWS call)."""
    aio_session: Any = session._session
    sync = botocore.session.Session()
    sync.register_component("data_loader", aio_session.get_component("data_loader"))
    sync.create_client(
        service,
        endpoint_url=endpoint_url,
        region_name=region or session.region_name or "us-east-1",
        aws_access_key_id="prepare",
        aws_secret_access_key="prepare",
    )
    aio_session.get_scoped_config()
    aio_session._get_internal_component("endpoint_resolver")
