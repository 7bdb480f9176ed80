"""What a tool running as a task may know: its task id, and whether the task was cancelled.

Cancellation is cooperative: `tasks/cancel` marks the task `cancelled` in the store at once, the
runner notices within a heartbeat, and a long tool checks between steps:

    >>> from dmcp_aws.tasks import task_cancelled
    >>> for part in parts:
    ...     if task_cancelled():
    ...         return "stopped"
    ...     await work_on(part)
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

import anyio


@dataclass
class RunningTask:
    """The task the running tool serves."""

    task_id: str
    cancellation: anyio.Event = field(default_factory=anyio.Event)
    """Set when the task was cancelled (the tool may stop; its result is discarded)."""

    @property
    def cancelled(self) -> bool:
        return self.cancellation.is_set()


_current: ContextVar[RunningTask | None] = ContextVar("dmcp_running_task", default=None)


def current_task() -> RunningTask | None:
    """The task the running tool serves; None when the tool was not called as a task."""
    return _current.get()


def task_cancelled() -> bool:
    """Whether the task the running tool serves was cancelled (False outside a task)."""
    task = _current.get()
    return task is not None and task.cancelled


@contextmanager
def running(task: RunningTask) -> Iterator[None]:
    """Make `task` the current one for the code run inside (the task runner uses this)."""
    token = _current.set(task)
    try:
        yield
    finally:
        _current.reset(token)
