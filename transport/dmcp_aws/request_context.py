"""What a tool may know about the queue delivery it runs in (a context variable, no I/O).

Delivery is at least once and the request ledger makes execution effectively once, but a worker
can die between a tool's side effect and the ledger's record of its answer. A tool whose effect
lives outside the worker (a payment, a database write) makes it idempotent end to end with the
request's idempotency key:

    >>> from dmcp_aws.request_context import current_request
    >>> key = current_request().idempotency_key      # the same for every delivery of the request
    >>> table.put_item(Item={"id": key, ...}, ConditionExpression="attribute_not_exists(id)")
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(frozen=True)
class QueueRequest:
    """The request being served, as the worker received it."""

    idempotency_key: str
    """Hex key naming this request of this client connection, stable across redeliveries; it
    reveals nothing of the connection's secret."""
    delivery: int
    """Which delivery of the message this is (1 for the first)."""
    server: str


_current: ContextVar[QueueRequest | None] = ContextVar("dmcp_queue_request", default=None)


class NotOnAQueue(LookupError):
    """`current_request()` was called outside a request served by a dMCP worker."""


def current_request() -> QueueRequest:
    """The request the running tool serves; raises `NotOnAQueue` outside a dMCP worker."""
    request = _current.get()
    if request is None:
        raise NotOnAQueue("no dMCP request is being served in this context")
    return request


@contextmanager
def serving(request: QueueRequest) -> Iterator[None]:
    """Make `request` the current one for the code run inside (the worker uses this)."""
    token = _current.set(request)
    try:
        yield
    finally:
        _current.reset(token)
