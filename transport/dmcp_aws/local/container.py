"""A local stand-in for one Lambda execution environment: a daemon thread running invocations.

It keeps its event loop between invocations, as a warm environment does. Its thread is a daemon:
an invocation that never returns (a handler stuck in blocking code) is abandoned when the
poller replaces the container after the function timeout, and it no longer keeps `dmcp dev`,
`dmcp worker` or a test process from exiting, as a pool thread would (Python joins those at
exit).

    >>> container = Container("dmcp-example-0")
    >>> result = await asyncio.wrap_future(container.submit(handler, event, context))
    >>> container.retire()
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

_Job = tuple[Future[Any], Callable[..., Any], tuple[Any, ...]]


class Container:
    """Runs submitted calls one at a time on its own daemon thread."""

    def __init__(self, name: str) -> None:
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, call: Callable[..., Any], *args: Any) -> Future[Any]:
        """Queue `call(*args)`; its future completes when the container has run it."""
        future: Future[Any] = Future()
        self._jobs.put((future, call, args))
        return future

    def retire(self) -> None:
        """Let the thread end after what is queued (a stuck one is left to die with the process)."""
        self._jobs.put(None)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            future, call, args = job
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(call(*args))
            except BaseException as exc:
                future.set_exception(exc)
