"""Connect an `mcp.Client` to a dMCP server, remembering what the server said about itself.

    >>> async with connect(TopicTarget(topic_arn, "example"), endpoint_url=url) as client:
    ...     await client.call_tool("echo", {"text": "hi"})

`mcp.Client(sqs_client_transport(...))` works as it is; it probes the server with
`server/discover` on every connection, a round trip through the queues. `connect` probes once
per process and target: later connections reuse the first one's result (the SDK's
`prior_discover`, made for clients that remember a server), so connecting again costs no AWS call
with a provisioned reply queue, and only its `CreateQueue` with a per-connection one. A server
redeployed with other capabilities is seen by the next process (or with `rediscover=True`).
A server that answers only the handshake (`initialize`) is probed every time.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from mcp import Client
from mcp_types import DiscoverResult

from dmcp_aws.client import QueueTarget, Target, TopicTarget, sqs_client_transport

_discovered: dict[tuple[str, str], tuple[str, DiscoverResult]] = {}
"""Per target (where requests go, server): the negotiated version and the discover result."""


def _key(target: Target) -> tuple[str, str]:
    where = target.topic_arn if isinstance(target, TopicTarget) else target.queue_url
    return where, target.server


@asynccontextmanager
async def connect(
    target: QueueTarget | TopicTarget,
    *,
    client_options: Mapping[str, Any] | None = None,
    rediscover: bool = False,
    **transport_options: Any,
) -> AsyncIterator[Client]:
    """A connected `mcp.Client` over `sqs_client_transport(target, **transport_options)`.

    Args:
        target: where requests go.
        client_options: keyword arguments for `mcp.Client` (callbacks, timeouts).
        rediscover: probe the server even if this process has already.
        transport_options: keyword arguments for `sqs_client_transport`.
    """
    key = _key(target)
    remembered = None if rediscover else _discovered.get(key)
    transport = sqs_client_transport(target, **transport_options)
    options = dict(client_options or {})
    if remembered is not None:
        version, result = remembered
        client = Client(transport, mode=version, prior_discover=result, **options)  # type: ignore[arg-type]
    else:
        client = Client(transport, **options)  # type: ignore[arg-type]
    async with client:
        discovered = client.session.discover_result
        if remembered is None and discovered is not None and client.session.protocol_version:
            _discovered[key] = (client.session.protocol_version, discovered)
        yield client


def forget_discovered() -> None:
    """Forget every remembered discover result (the next connections probe again)."""
    _discovered.clear()
