"""What became of each record, counted for metrics without tying the worker to a metrics library.

The Lambda entry point installs a sink for the duration of one invocation; the worker reports:

    >>> record_outcome(Outcome.ANSWERED)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from enum import StrEnum


class Outcome(StrEnum):
    """One record's fate (these are the metric names)."""

    ANSWERED = "Answered"
    ANSWERED_WITH_ERROR = "AnsweredWithError"
    REPLAYED = "ReplayedFromLedger"
    """A duplicate delivery answered with the stored answer, not run again."""
    DEFERRED = "DeferredWhileInProgress"
    """A duplicate delivery of a request another delivery holds: hidden until the claim ends."""
    ROUTED_ELSEWHERE = "RoutedElsewhere"
    """A copy SNS also delivered to the worker that answers it (a `String.Array` `mcp.server`)."""
    EXPIRED = "ExpiredBeforeRun"
    """A request whose caller's deadline had passed when a worker got it: not run, answered."""
    DEAD_LETTERED = "DeadLettered"
    REPLY_QUEUE_GONE = "ReplyQueueGone"
    """The answer's per-connection reply queue was deleted: its client left (not poison)."""
    CLIENT_NOTIFICATION = "ClientNotification"
    """A client notification, handed to the server's notification handlers."""
    CLIENT_ANSWER = "ClientAnswer"
    """A client's answer to a server-to-client request, handed to the worker that waits for it."""
    CANCELLED = "Cancelled"
    """A request its client cancelled: stopped (or never started), not answered, not retried."""


Sink = Callable[[Outcome], None]

_sink: ContextVar[Sink | None] = ContextVar("dmcp_outcome_sink", default=None)


def record_outcome(outcome: Outcome) -> None:
    """Count `outcome` in the current invocation's sink, if there is one."""
    sink = _sink.get()
    if sink is not None:
        sink(outcome)


@contextmanager
def outcome_sink(sink: Sink) -> Iterator[None]:
    """Send the outcomes recorded in this context (and tasks started from it) to `sink`."""
    token = _sink.set(sink)
    try:
        yield
    finally:
        _sink.reset(token)
