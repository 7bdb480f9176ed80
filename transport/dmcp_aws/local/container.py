"""Local stand-ins for Lambda execution environments ("containers"), two kinds.

Both keep the handler warm between invocations, run one invocation at a time, and share the
small interface the poller (`dmcp_aws.local.poller`) needs: `invoke(event, context, timeout_s)`
(raises `InvocationTimeout` when the function timeout passes) and `retire()`.

- `Container`, a daemon thread in this process: for the embedded stack (`dmcp dev`, `dmcp demo`,
  the tests' stack), where everything stays in one process, so `dmcp dev` prints a line per
  request and tests stay fast. An invocation that never returns cannot be ended there: after the
  function timeout the thread is abandoned (it is a daemon, so it does not keep the process from
  exiting, as a pool thread would: Python joins those at exit).
- `ProcessContainer`, a child process (`python -m dmcp_aws.local.runtime`), as Lambda runs one:
  for `dmcp worker`, the long-running container worker, where an abandoned thread would live for
  ever. A timed-out invocation is ended for real (the child is SIGKILLed; the next invocation
  cold-starts a new one), and a child never outlives its parent, even a SIGKILLed one.

    >>> container = ProcessContainer("dmcp-example-0", "server.handler", code_root=".")
    >>> response = await container.invoke(event, context, timeout_s=30)
    >>> await container.retire()
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import queue
import signal
import sys
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Final, Protocol

from dmcp_aws.local.lambda_event import LocalLambdaContext

logger = logging.getLogger(__name__)

_Job = tuple[Future[Any], Callable[..., Any], tuple[Any, ...]]

INIT_TIMEOUT_S: Final = 10.0
"""How long a process container's cold start (importing the handler) may take: Lambda's init
phase limit, counted apart from the function timeout as Lambda counts it."""

RETIRE_GRACE_S: Final = 5.0
"""How long a retiring child gets to release what it holds and exit before it is SIGKILLed."""


class InvocationTimeout(TimeoutError):
    """The invocation overran the function timeout; the container is no longer usable."""


class InvocationFailed(RuntimeError):
    """The handler raised, or its environment could not run it (the whole batch is retried)."""


class HandlerContainer(Protocol):
    """What the poller needs of an execution environment."""

    async def invoke(self, event: dict[str, Any], context: LocalLambdaContext, timeout_s: float) -> Any:
        """The handler's response; `InvocationTimeout` after `timeout_s`, else what it raised."""
        ...

    async def retire(self) -> None:
        """Release the environment (after its last invocation, or after one timed out)."""
        ...


ContainerFactory = Callable[[str], HandlerContainer]
"""Builds a container from its name (`<function>-<slot>`)."""


class Container:
    """A thread execution environment: runs the handler one call at a time on a daemon thread,
    with an event loop kept between invocations."""

    def __init__(self, name: str, handler: Callable[[dict[str, Any], Any], Any] | None = None) -> None:
        self.handler = handler
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()
        self._stuck = False

    def submit(self, call: Callable[..., Any], *args: Any) -> Future[Any]:
        """Queue `call(*args)`; its future completes when the container has run it."""
        future: Future[Any] = Future()
        self._jobs.put((future, call, args))
        return future

    async def invoke(self, event: dict[str, Any], context: LocalLambdaContext, timeout_s: float) -> Any:
        if self.handler is None:
            raise InvocationFailed("this container has no handler")
        invocation = asyncio.wrap_future(self.submit(self.handler, event, context))
        try:
            return await asyncio.wait_for(asyncio.shield(invocation), timeout_s)
        except TimeoutError:
            self._stuck = True  # the thread runs on; it is abandoned, not ended
            raise InvocationTimeout(f"no response within {timeout_s:g} s") from None

    async def retire(self) -> None:
        """Close what the handler keeps for this thread's event loop, then let the thread end (a
        stuck thread is left to die with the process)."""
        if not self._stuck and self._thread.is_alive():
            await asyncio.wrap_future(self.submit(self._close_loop))
        self._jobs.put(None)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _close_loop(self) -> None:
        """In the container thread: release what the handler keeps per event loop, close the loop."""
        try:
            loop = asyncio.get_event_loop()
        except RuntimeError:
            return
        close = getattr(self.handler, "aclose", None)
        if close is not None and not loop.is_closed():
            loop.run_until_complete(close())
        loop.close()

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            future, call, args = job
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(call(*args))
            except BaseException as exc:
                future.set_exception(exc)


def logger_levels() -> dict[str, int]:
    """This process's explicitly set logger levels (`""` is the root), for a child to copy."""
    levels = {"": logging.getLogger().level}
    for name, item in logging.Logger.manager.loggerDict.items():
        if isinstance(item, logging.Logger) and item.level != logging.NOTSET:
            levels[name] = item.level
    return levels


class ProcessContainer:
    """A process execution environment: a child `python -m dmcp_aws.local.runtime` that imports
    the handler once (started on the first invocation: a cold start) and runs invocations sent
    as JSON lines on its stdin, answering each with a JSON line on its stdout. The handler's own
    prints and logs go to the inherited stderr (the runtime points its stdout there); records of
    the standard `logging` module come back to this process, which shows them as its own (so
    `dmcp worker` prints its line per request). The child leads its own process group (Ctrl-C on
    the worker does not reach it: the worker finishes in-flight batches, then retires its
    containers)."""

    def __init__(
        self,
        name: str,
        handler: str,
        *,
        code_root: str | Path = ".",
        environment: Mapping[str, str] | None = None,
        init_timeout_s: float = INIT_TIMEOUT_S,
    ) -> None:
        self.name = name
        self.handler = handler
        self.code_root = str(Path(code_root).resolve())
        self.environment = dict(os.environ if environment is None else environment)
        # The runtime imports this very package, wherever this process found it.
        package_root = str(Path(__file__).resolve().parents[2])
        path = self.environment.get("PYTHONPATH")
        self.environment["PYTHONPATH"] = os.pathsep.join([package_root, *([path] if path else [])])
        self.init_timeout_s = init_timeout_s
        self._process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._replies: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    @property
    def pid(self) -> int | None:
        """The running child's process id (None before the first invocation and after the end)."""
        return self._process.pid if self._process is not None and self._process.returncode is None else None

    async def start(self) -> None:
        """Start the child and wait until it has imported the handler (a cold start); raises
        `dmcp_aws.local.stack.HandlerError` if the import fails, `InvocationFailed` otherwise."""
        if self.pid is not None:
            return
        self._replies = asyncio.Queue()
        arguments = [str(os.getpid()), self.handler, self.code_root, json.dumps(logger_levels())]
        self._process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "dmcp_aws.local.runtime", *arguments,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=None,
            env=self.environment, start_new_session=True, limit=2**26,
        )  # fmt: skip
        self._reader = asyncio.create_task(self._read(self._process), name=f"{self.name}-reader")
        try:
            reply = await asyncio.wait_for(self._replies.get(), self.init_timeout_s)
        except TimeoutError:
            await self._kill()
            raise InvocationFailed(
                f"{self.name}: the handler did not load within {self.init_timeout_s:g} s"
            ) from None
        if reply.get("type") == "ready":
            return
        await self._kill()
        if reply.get("type") == "init_error":
            from dmcp_aws.local.stack import HandlerError

            raise HandlerError(str(reply.get("message")))
        raise InvocationFailed(f"{self.name}: the runtime exited during its start")

    async def invoke(self, event: dict[str, Any], context: LocalLambdaContext, timeout_s: float) -> Any:
        await self.start()
        process = self._process
        assert process is not None and process.stdin is not None
        line = json.dumps({"event": event, "context": context_fields(context)}) + "\n"
        try:
            process.stdin.write(line.encode())
            await process.stdin.drain()
            reply = await asyncio.wait_for(self._replies.get(), timeout_s)
        except TimeoutError:
            await self._kill()  # Lambda ends the environment of a timed-out invocation: so do we
            raise InvocationTimeout(f"no response within {timeout_s:g} s; the process was killed") from None
        except (ConnectionError, RuntimeError) as exc:
            await self._kill()
            raise InvocationFailed(f"{self.name}: could not reach the runtime ({exc})") from exc
        kind = reply.get("type")
        if kind == "result":
            return reply.get("response")
        if kind == "error":
            raise InvocationFailed(f"{reply.get('error_type', 'Error')}: {reply.get('message', '')}")
        await self._kill()
        raise InvocationFailed(f"{self.name}: the runtime exited during the invocation")

    async def retire(self) -> None:
        """End the child: EOF on its stdin (it closes what the handler holds and exits), then
        SIGKILL if it is still there after `RETIRE_GRACE_S`; the child is reaped either way."""
        process = self._process
        if process is None:
            return
        if process.returncode is None and process.stdin is not None:
            with contextlib.suppress(OSError, RuntimeError):
                process.stdin.close()
            try:
                await asyncio.wait_for(process.wait(), RETIRE_GRACE_S)
            except TimeoutError:
                logger.warning("%s did not stop within %g s; killing it", self.name, RETIRE_GRACE_S)
        await self._kill()

    async def _kill(self) -> None:
        """SIGKILL the child's process group (what the handler started goes too) and reap it."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                process.kill()
        await process.wait()
        if process.stdin is not None:
            with contextlib.suppress(OSError, RuntimeError):
                process.stdin.close()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._reader, 2)
            self._reader = None

    async def _read(self, process: asyncio.subprocess.Process) -> None:
        """Hand replies to the waiting call and log records to `logging`, until the child's end."""
        assert process.stdout is not None
        replies = self._replies
        try:
            while line := await process.stdout.readline():
                try:
                    message = json.loads(line)
                except ValueError:
                    continue
                if not isinstance(message, dict):
                    continue
                if message.get("type") == "log":
                    _replay(message.get("record"))
                else:
                    replies.put_nowait(message)
        except (OSError, ValueError) as exc:
            logger.debug("%s: reading the runtime failed: %s", self.name, exc)
        replies.put_nowait({"type": "exit"})


def context_fields(context: LocalLambdaContext) -> dict[str, Any]:
    """What the runtime needs to rebuild `context` in the child (its remaining time included)."""
    return {
        "function_name": context.function_name,
        "memory_limit_in_mb": context.memory_limit_in_mb,
        "timeout_s": context.timeout_s,
        "region": context.region,
        "account": context.account,
        "aws_request_id": context.aws_request_id,
        "function_version": context.function_version,
        "remaining_ms": context.get_remaining_time_in_millis(),
    }


def _replay(fields: Any) -> None:
    """Log a record the child sent as if it had been logged here (its levels were checked there)."""
    if not isinstance(fields, dict):
        return
    record = logging.makeLogRecord(fields)
    target = logging.getLogger(record.name)
    if target.isEnabledFor(record.levelno):
        target.handle(record)
