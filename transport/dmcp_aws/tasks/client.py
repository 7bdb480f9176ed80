"""Call tools as tasks, wait for them, fetch or cancel them later, from any process.

The SDK's `Client` does not understand `resultType: "task"` yet, so this is a small JSON-RPC
client of its own, speaking 2026-07-28 with the Tasks extension declared, over the kit's
transport (or any MCP transport's streams):

    >>> async with TaskClient.connect(target, **transport_options) as tasks:
    ...     created = await tasks.call_tool("slow_report", {"topic": "q3"})
    ...     if isinstance(created, CreateTaskResult):
    ...         done = await tasks.wait(created.task_id)      # honours pollIntervalMs
    ...         print(done.status, done.result)

A task belongs to its creator's identity (its provisioned client), not to the connection: a new
connection of the same client, even in another process with a new reply queue, can `get`, `wait`
for and `cancel` it by id. While a connection lives, the `notifications/tasks` workers send to
its reply queue end a wait early; polling alone is enough after a reconnect.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any, Final

import anyio
from anyio.abc import TaskGroup
from mcp.client._transport import ReadStream, WriteStream
from mcp.shared.exceptions import MCPError
from mcp.shared.message import SessionMessage
from mcp_types import (
    CLIENT_CAPABILITIES_META_KEY,
    CLIENT_INFO_META_KEY,
    INTERNAL_ERROR,
    PROTOCOL_VERSION_META_KEY,
    CallToolResult,
    JSONRPCError,
    JSONRPCMessage,
    JSONRPCNotification,
    JSONRPCRequest,
    JSONRPCResponse,
    RequestId,
)

from dmcp_aws.tasks.model import (
    TASK_STATUS_NOTIFICATION,
    TASKS_EXTENSION,
    CreateTaskResult,
    DetailedTask,
    GetTaskResult,
)

PROTOCOL_VERSION: Final = "2026-07-28"
DEFAULT_POLL_INTERVAL_S: Final = 1.0
_CLIENT_INFO: Final = {"name": "dmcp-aws-tasks", "version": "0.1.0"}


class TaskNotFinished(TimeoutError):
    """`wait` gave up before the task reached a terminal status."""


class TaskClient:
    """A Tasks-extension client over one connection's `(read_stream, write_stream)`.

    Use `TaskClient.connect(target, ...)` for the kit's transport, or `TaskClient.running(read,
    write)` for streams you opened.
    """

    def __init__(
        self,
        read_stream: ReadStream[SessionMessage | Exception],
        write_stream: WriteStream[SessionMessage],
        *,
        trace: Callable[[JSONRPCMessage], None] | None = None,
    ) -> None:
        self._read = read_stream
        self._trace = trace
        self.notifications_received = 0
        """How many `notifications/tasks` this connection received."""
        self._write = write_stream
        self._ids = itertools.count(1)
        self._answers: dict[RequestId, tuple[anyio.Event, list[JSONRPCResponse | JSONRPCError]]] = {}
        self._latest: dict[str, DetailedTask] = {}
        self._changed: dict[str, anyio.Event] = {}

    @classmethod
    @asynccontextmanager
    async def connect(
        cls, target: Any, *, trace: Callable[[JSONRPCMessage], None] | None = None, **transport_options: Any
    ) -> AsyncIterator[TaskClient]:
        """Open the kit's transport to `target` (`sqs_client_transport`'s arguments) and a client on
        it; `trace` sees every message the client receives."""
        from dmcp_aws.client import sqs_client_transport

        async with (
            sqs_client_transport(target, **transport_options) as (read, write),
            cls.running(read, write, trace=trace) as client,
        ):
            yield client

    @classmethod
    @asynccontextmanager
    async def running(
        cls,
        read_stream: ReadStream[SessionMessage | Exception],
        write_stream: WriteStream[SessionMessage],
        *,
        trace: Callable[[JSONRPCMessage], None] | None = None,
    ) -> AsyncIterator[TaskClient]:
        """A client reading `read_stream` until the block ends."""
        client = cls(read_stream, write_stream, trace=trace)
        async with anyio.create_task_group() as tg:
            client._start(tg)
            try:
                yield client
            finally:
                tg.cancel_scope.cancel()

    async def call_tool(
        self, name: str, arguments: Mapping[str, Any] | None = None
    ) -> CreateTaskResult | CallToolResult:
        """Call a tool; the server decides whether it becomes a task (`CreateTaskResult`) or is
        answered at once (`CallToolResult`)."""
        result = await self._request("tools/call", {"name": name, "arguments": dict(arguments or {})})
        if result.get("resultType") == "task":
            return CreateTaskResult.model_validate(result)
        return CallToolResult.model_validate(result)

    async def get(self, task_id: str) -> GetTaskResult:
        """The task's current state (`tasks/get`); its `result` or `error` once it has ended."""
        task = GetTaskResult.model_validate(await self._request("tasks/get", {"taskId": task_id}))
        self._latest[task_id] = task
        return task

    async def cancel(self, task_id: str) -> None:
        """Ask for the task to be cancelled (`tasks/cancel`): cooperative, eventually consistent."""
        await self._request("tasks/cancel", {"taskId": task_id})

    async def update(self, task_id: str, input_responses: Mapping[str, Any]) -> None:
        """Answer a task's outstanding `inputRequests` (`tasks/update`)."""
        await self._request("tasks/update", {"taskId": task_id, "inputResponses": dict(input_responses)})

    async def wait(
        self,
        task_id: str,
        *,
        timeout: float | None = None,
        on_update: Callable[[DetailedTask], None] | None = None,
    ) -> DetailedTask:
        """Wait until the task is terminal; poll at its `pollIntervalMs`, or sooner when a
        `notifications/tasks` for it arrives. `on_update` sees each state on the way."""
        deadline = math.inf if timeout is None else time.monotonic() + timeout
        task: DetailedTask = await self.get(task_id)
        while True:
            if on_update is not None:
                on_update(task)
            if task.terminal:
                return task
            left = deadline - time.monotonic()
            if left <= 0:
                raise TaskNotFinished(f"task {task_id} is still {task.status} after {timeout:g} s")
            interval = (task.poll_interval_ms or DEFAULT_POLL_INTERVAL_S * 1000) / 1000
            notified = await self._next_notification(task_id, min(interval, left))
            task = notified if notified is not None else await self.get(task_id)

    async def run_tool(
        self, name: str, arguments: Mapping[str, Any] | None = None, *, timeout: float | None = None
    ) -> CallToolResult:
        """Call a tool and wait for its result, as a task or not; a task that failed or was
        cancelled raises `MCPError`."""
        created = await self.call_tool(name, arguments)
        if isinstance(created, CallToolResult):
            return created
        task = await self.wait(created.task_id, timeout=timeout)
        return result_of(task)

    async def _next_notification(self, task_id: str, timeout_s: float) -> DetailedTask | None:
        """The next `notifications/tasks` for the task within `timeout_s`, else None."""
        event = self._changed.setdefault(task_id, anyio.Event())
        with anyio.move_on_after(timeout_s):
            await event.wait()
            return self._latest.get(task_id)
        return None

    def _start(self, tg: TaskGroup) -> None:
        tg.start_soon(self._read_loop)

    async def _read_loop(self) -> None:
        async for item in self._read:
            if isinstance(item, Exception):
                self._fail_all(item)
                continue
            message = item.message
            if self._trace is not None:
                self._trace(message)
            if isinstance(message, JSONRPCResponse | JSONRPCError) and message.id is not None:
                slot = self._answers.get(message.id)
                if slot is not None:
                    slot[1].append(message)
                    slot[0].set()
            elif isinstance(message, JSONRPCNotification) and message.method == TASK_STATUS_NOTIFICATION:
                self.notifications_received += 1
                self._on_status(message.params or {})
        self._fail_all(ConnectionError("the connection closed"))

    def _on_status(self, params: Mapping[str, Any]) -> None:
        try:
            task = DetailedTask.model_validate(params)
        except ValueError:
            return
        self._latest[task.task_id] = task
        event = self._changed.pop(task.task_id, None)
        if event is not None:
            event.set()

    def _fail_all(self, problem: Exception) -> None:
        for request_id, (event, answers) in list(self._answers.items()):
            error = {"code": INTERNAL_ERROR, "message": f"the connection failed: {problem}"}
            answers.append(JSONRPCError.model_validate({"jsonrpc": "2.0", "id": request_id, "error": error}))
            event.set()

    async def _request(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """Send one request with the 2026-07-28 envelope; its result, or `MCPError`."""
        request_id = next(self._ids)
        params["_meta"] = {
            PROTOCOL_VERSION_META_KEY: PROTOCOL_VERSION,
            CLIENT_CAPABILITIES_META_KEY: {"extensions": {TASKS_EXTENSION: {}}},
            CLIENT_INFO_META_KEY: _CLIENT_INFO,
        }
        event, answers = self._answers[request_id] = (anyio.Event(), [])
        try:
            request = JSONRPCRequest(jsonrpc="2.0", id=request_id, method=method, params=params)
            await self._write.send(SessionMessage(request))
            await event.wait()
        finally:
            self._answers.pop(request_id, None)
        answer = answers[0]
        if isinstance(answer, JSONRPCError):
            raise MCPError(answer.error.code, answer.error.message, answer.error.data)
        return dict(answer.result)


def result_of(task: DetailedTask) -> CallToolResult:
    """The tool result of a completed task; `MCPError` for a failed or cancelled one."""
    if task.status == "completed" and task.result is not None:
        return CallToolResult.model_validate(task.result)
    if task.status == "failed" and task.error is not None:
        raise MCPError(
            int(task.error.get("code", INTERNAL_ERROR)),
            str(task.error.get("message")),
            task.error.get("data"),
        )
    raise MCPError(
        INTERNAL_ERROR, f"task {task.task_id} is {task.status}: {task.status_message or ''}".strip()
    )
