"""The worker's side of the Tasks extension: accept, answer, run.

The worker hands this module every request it `takes`:
- a `tools/call` of a task-capable tool from a client that declared the extension: the task is
  written to the store, its work is sent as a message of its own to the server's request queue
  (attribute `dmcp.task`), and the client is answered at once with the `resultType: "task"` result;
- `tasks/get`, `tasks/update`, `tasks/cancel`: answered from the store by whichever worker gets
  them;
- a task-run message (`dmcp.task`): the runner claims the task (a lease in the store, renewed
  while it runs, with the message's visibility), serves the original `tools/call` and records its
  outcome. A runner that dies leaves the lease and the message to expire; the next delivery runs
  the task again, with the same idempotency key for the tool (`current_request()`).

    >>> tasks = TaskWorker.from_env(mcp_server)          # None when the deployment has no task table
    >>> if tasks and await tasks.takes(request, attributes):
    ...     answer = await tasks.handle(request, attributes, port)
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any, Final

import anyio
from mcp.server.lowlevel.server import Server
from mcp.server.mcpserver import MCPServer
from mcp_types import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    ErrorData,
    JSONRPCError,
    JSONRPCMessage,
    JSONRPCNotification,
    JSONRPCRequest,
    JSONRPCResponse,
)

from dmcp_aws.naming import TASKS_TABLE_VARIABLE
from dmcp_aws.request_context import QueueRequest, serving
from dmcp_aws.serving import serve_request
from dmcp_aws.tasks.context import RunningTask, running
from dmcp_aws.tasks.model import (
    TASK_METHODS,
    TASKS_EXTENSION,
    EmptyTaskResult,
    TaskRecord,
    TaskSupport,
    create_result,
    declares_tasks,
    expired_error,
    finished,
    get_result,
    missing_capability,
    new_task,
    not_found,
    owner_of,
    run_key,
    status_notification,
    task_id_for,
    tool_task_support,
    wire,
)
from dmcp_aws.tasks.store import TaskBusy, TaskGone, TaskStore
from dmcp_aws.threaded_aws import AsyncAwsSession
from dmcp_aws.wire import Attr

logger = logging.getLogger(__name__)
served_log = logging.getLogger("dmcp_aws.worker.tasks")
"""A child of the worker's logger: its records reach the handlers that print served requests."""

TASK_ATTRIBUTE: Final = "dmcp.task"
"""On a task-run message: the id of the task whose work it carries."""
DEFAULT_TTL_MS: Final = 3_600_000
DEFAULT_POLL_INTERVAL_MS: Final = 1_000
HEARTBEAT_S: Final = 2.0
"""How often a runner renews its lease and its message's visibility (and writes progress)."""
LEASE_MS: Final = 8_000
"""How long a runner's claim lasts without a heartbeat: a dead runner's task runs again after it."""
_PROGRESS_TOKEN: Final = "dmcp-task"
_DROPPED_ATTRIBUTES: Final = frozenset({Attr.DEADLINE.value, Attr.PAYLOAD.value})


@dataclass(frozen=True)
class TaskSettings:
    """The task table and the times tasks are given."""

    table: str
    ttl_ms: int | None = DEFAULT_TTL_MS
    poll_interval_ms: int = DEFAULT_POLL_INTERVAL_MS
    endpoint_url: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> TaskSettings | None:
        """`DMCP_TASKS_TABLE` (None when unset: no tasks), `DMCP_TASK_TTL_S`, `DMCP_TASK_POLL_MS`."""
        table = environ.get(TASKS_TABLE_VARIABLE)
        if not table:
            return None
        ttl_s = environ.get("DMCP_TASK_TTL_S")
        return cls(
            table=table,
            ttl_ms=int(ttl_s) * 1000 if ttl_s else DEFAULT_TTL_MS,
            poll_interval_ms=int(environ.get("DMCP_TASK_POLL_MS") or DEFAULT_POLL_INTERVAL_MS),
            endpoint_url=environ.get("AWS_ENDPOINT_URL_DYNAMODB") or environ.get("AWS_ENDPOINT_URL") or None,
        )


@dataclass(frozen=True)
class TaskPort:
    """What the worker lends for one request: its server, the reply channel, the request queue."""

    server: Server[Any]
    lifespan_state: Any
    sqs: Any
    request_queue_url: str
    receipt_handle: str
    reply_queue: str
    """Name of the reply queue the request named (its sender's identity, `owner_of`)."""
    reply_prefix: str
    conn: str
    digest: str
    body: str
    delivery: int
    may_run: bool
    """False on a delivery past the server's `max_receive_count`: the task fails instead of running."""
    budget_ms: int
    """How long this delivery may run (the function timeout left, less a margin)."""
    send: Callable[[JSONRPCMessage], Awaitable[None]]
    """Send a message to the request's reply queue (raises if it cannot)."""


class TaskWorker:
    """One server's task support: which tools become tasks, the store, the runner."""

    def __init__(
        self, server: MCPServer | Server[Any], settings: TaskSettings, session: AsyncAwsSession
    ) -> None:
        self.settings = settings
        self._mcp = server if isinstance(server, MCPServer) else None
        lowlevel = server._lowlevel_server if isinstance(server, MCPServer) else server
        lowlevel.extensions.setdefault(TASKS_EXTENSION, {})  # advertised by `server/discover`
        self._session = session
        self._support: dict[str, TaskSupport] | None = None
        self._stores: dict[asyncio.AbstractEventLoop, tuple[TaskStore, AsyncExitStack]] = {}
        """A DynamoDB client per event loop (local pollers run one handler on several threads)."""

    @classmethod
    def from_env(
        cls,
        server: MCPServer | Server[Any],
        session: AsyncAwsSession,
        environ: Mapping[str, str] = os.environ,
    ) -> TaskWorker | None:
        settings = TaskSettings.from_env(environ)
        return cls(server, settings, session) if settings is not None else None

    async def takes(self, request: JSONRPCRequest, attributes: Mapping[str, str]) -> bool:
        """Whether the request is this module's to handle."""
        if TASK_ATTRIBUTE in attributes or request.method in TASK_METHODS:
            return True
        if request.method != "tools/call":
            return False
        support = await self._tool_support((request.params or {}).get("name"))
        return support == "required" or (support == "optional" and declares_tasks(request.params))

    async def handle(
        self, request: JSONRPCRequest, attributes: Mapping[str, str], port: TaskPort
    ) -> JSONRPCMessage | None:
        """The answer to send to the client (None for a task-run message: nobody waits on it).

        Raises to leave the message for redelivery (the store failed, another runner holds it)."""
        started = time.monotonic()
        answer: JSONRPCMessage | None
        store = await self._store()
        task_id = attributes.get(TASK_ATTRIBUTE)
        if task_id is not None:
            answer = await self._run(store, task_id, request, attributes, port)
            outcome = "TaskRun" if answer is None else "AnsweredWithError"
        elif request.method in TASK_METHODS:
            answer = await self._answer_task_method(store, request, port)
            outcome = "AnsweredWithError" if isinstance(answer, JSONRPCError) else "Answered"
        else:
            answer = await self._accept(store, request, attributes, port)
            outcome = "AnsweredWithError" if isinstance(answer, JSONRPCError) else "TaskCreated"
        # One record per handled message, as the worker logs for the requests it serves (`dmcp dev`
        # prints it as a line).
        served_log.info(
            "handled %s",
            request.method,
            extra={
                "mcp_method": request.method if task_id is None else "task work",
                "mcp_name": attributes.get(Attr.NAME) or (request.params or {}).get("taskId"),
                "mcp_server": port.server.name,
                "outcome": outcome,
                "duration_ms": round((time.monotonic() - started) * 1000),
            },
        )
        return answer

    async def aclose(self) -> None:
        """Close the DynamoDB client held for the running event loop."""
        opened = self._stores.pop(asyncio.get_running_loop(), None)
        if opened is not None:
            await opened[1].aclose()

    async def _tool_support(self, name: object) -> TaskSupport | None:
        if self._mcp is None or not isinstance(name, str):
            return None
        if self._support is None:
            tools = await self._mcp.list_tools()
            self._support = {t.name: s for t in tools if (s := tool_task_support(t.meta)) is not None}
        return self._support.get(name)

    async def _store(self) -> TaskStore:
        """The store on a DynamoDB client of the running event loop (opened once per loop)."""
        key = asyncio.get_running_loop()
        for stale in [loop for loop in self._stores if loop.is_closed()]:
            del self._stores[stale]
        if key not in self._stores:
            stack = AsyncExitStack()
            client = await stack.enter_async_context(
                self._session.client("dynamodb", endpoint_url=self.settings.endpoint_url)
            )
            self._stores[key] = (TaskStore(client, self.settings.table), stack)
        return self._stores[key][0]

    async def _accept(
        self, store: TaskStore, request: JSONRPCRequest, attributes: Mapping[str, str], port: TaskPort
    ) -> JSONRPCMessage:
        """Turn a `tools/call` into a task: stored, its work queued, the task answered."""
        params = request.params or {}
        tool = str(params.get("name"))
        if not declares_tasks(params):  # a tool that runs only as a task
            return JSONRPCError(jsonrpc="2.0", id=request.id, error=missing_capability())
        record = new_task(
            task_id_for(port.conn, port.reply_queue, port.digest),
            owner=owner_of(port.reply_queue, port.reply_prefix),
            server=port.server.name,
            tool=tool,
            request_digest=port.digest,
            now_ms=_now_ms(),
            ttl_ms=self.settings.ttl_ms,
            poll_interval_ms=self.settings.poll_interval_ms,
        )
        stored = await store.create(record)  # a redelivered call finds its task again
        if not stored.terminal:
            run_attributes = {k: v for k, v in attributes.items() if k not in _DROPPED_ATTRIBUTES}
            run_attributes[TASK_ATTRIBUTE] = stored.task_id
            await port.sqs.send_message(
                QueueUrl=port.request_queue_url,
                MessageBody=port.body,
                MessageAttributes={
                    k: {"DataType": "String", "StringValue": v} for k, v in run_attributes.items()
                },
            )
        logger.info("accepted task %s… for tool %s", stored.task_id[:8], tool)
        return JSONRPCResponse(jsonrpc="2.0", id=request.id, result=wire(create_result(stored)))

    async def _answer_task_method(
        self, store: TaskStore, request: JSONRPCRequest, port: TaskPort
    ) -> JSONRPCMessage:
        """`tasks/get`, `tasks/update`, `tasks/cancel`, for the identity that created the task."""
        params = request.params or {}
        if not declares_tasks(params):
            return JSONRPCError(jsonrpc="2.0", id=request.id, error=missing_capability())
        task_id = params.get("taskId")
        if not isinstance(task_id, str) or not task_id:
            error = ErrorData(code=INVALID_PARAMS, message=f"{request.method} needs params.taskId, a string")
            return JSONRPCError(jsonrpc="2.0", id=request.id, error=error)
        now = _now_ms()
        record = await store.get(task_id)
        if record is None or record.owner != owner_of(port.reply_queue, port.reply_prefix):
            return JSONRPCError(jsonrpc="2.0", id=request.id, error=not_found(task_id))
        if record.expired(now):
            return JSONRPCError(jsonrpc="2.0", id=request.id, error=expired_error(task_id))
        if request.method == "tasks/get":
            return JSONRPCResponse(jsonrpc="2.0", id=request.id, result=wire(get_result(record)))
        if request.method == "tasks/cancel" and not record.terminal:
            await store.cancel(task_id, now)
            logger.info("task %s… cancelled", task_id[:8])
        # tasks/update: this kit's tasks never ask for input, so no response is outstanding.
        return JSONRPCResponse(jsonrpc="2.0", id=request.id, result=wire(EmptyTaskResult()))

    async def _run(
        self,
        store: TaskStore,
        task_id: str,
        request: JSONRPCRequest,
        attributes: Mapping[str, str],
        port: TaskPort,
    ) -> JSONRPCError | None:
        """Run a task's work once, or see that it needs no running; an error for the sender of a
        task-run message that matches no task (None otherwise: nobody waits for task work)."""
        record = await store.get(task_id)
        owner = owner_of(port.reply_queue, port.reply_prefix)
        if record is None or record.request_digest != port.digest or record.owner != owner:
            logger.warning("a task-run message matches no task (task %s…)", task_id[:8])
            message = f"message attribute {TASK_ATTRIBUTE} names no task of this request"
            return JSONRPCError(
                jsonrpc="2.0", id=request.id, error=ErrorData(code=INVALID_PARAMS, message=message)
            )
        if record.terminal:
            await _notify(port, record)  # cancelled before it started: it never runs
            return None
        if not port.may_run:
            message = f"the task's worker ended without an outcome on {port.delivery - 1} deliveries"
            await self._fail(store, record, port, message)
            return None
        try:
            claimed = await store.claim(task_id, _now_ms(), LEASE_MS)
        except TaskGone:
            return None
        except TaskBusy as busy:
            hidden_s = max(1, (busy.lease_until_ms - _now_ms()) // 1000 + 1)
            await _hide(port, hidden_s)
            raise
        await _hide(port, int(LEASE_MS / 1000) + 2)
        answer = await self._execute(store, claimed, request, attributes, port)
        try:
            final = finished(claimed, answer, _now_ms())
            stored = await store.finish(final)
        except ValueError as too_large:
            error = JSONRPCError(
                jsonrpc="2.0", id=request.id, error=ErrorData(code=INTERNAL_ERROR, message=str(too_large))
            )
            final = finished(claimed, error, _now_ms())
            stored = await store.finish(final)
        current = final if stored else await store.get(task_id)
        if current is not None:
            logger.info("task %s… is %s", task_id[:8], current.status)
            await _notify(port, current)
        return None

    async def _execute(
        self,
        store: TaskStore,
        record: TaskRecord,
        request: JSONRPCRequest,
        attributes: Mapping[str, str],
        port: TaskPort,
    ) -> JSONRPCResponse | JSONRPCError:
        """Serve the `tools/call`, renewing the lease meanwhile; progress becomes the status message."""
        task = RunningTask(record.task_id)
        progress: list[str] = []

        async def collect(notification: JSONRPCNotification) -> None:
            # Tasks carry no progress or log notifications: progress becomes `statusMessage`.
            if notification.method == "notifications/progress":
                params = notification.params or {}
                total = params.get("total")
                text = params.get("message") or f"{params.get('progress')}" + (
                    f" of {total}" if total else ""
                )
                progress.append(str(text))

        async def heartbeat() -> None:
            written: str | None = None
            while True:
                await anyio.sleep(HEARTBEAT_S)
                latest = progress[-1] if progress else None
                try:
                    alive = await store.renew(
                        record.task_id, _now_ms(), LEASE_MS, latest if latest != written else None
                    )
                except Exception as exc:  # the next beat tries again; the lease lasts 4 beats
                    logger.warning("could not renew task %s…: %s", record.task_id[:8], exc)
                    continue
                written = latest
                await _hide(port, int(LEASE_MS / 1000) + 2)
                if not alive:
                    task.cancellation.set()
                    return

        limit_s = max(0.1, port.budget_ms / 1000)
        with serving(QueueRequest(run_key(record.task_id), port.delivery, port.server.name)), running(task):
            async with anyio.create_task_group() as tg:
                tg.start_soon(heartbeat)
                try:
                    with anyio.fail_after(limit_s):
                        answer = await serve_request(
                            port.server,
                            _with_progress_token(request),
                            notify=collect,
                            lifespan_state=port.lifespan_state,
                            protocol_hint=attributes.get(Attr.PROTOCOL_VERSION),
                            # The SDK's own flag (the request context's `cancel_requested`) is the
                            # task's cancellation too: cooperative, the tool is not interrupted.
                            cancel_requested=task.cancellation,
                        )
                except TimeoutError:
                    message = f"the task ran out of time ({limit_s:.0f} s, its worker's function timeout)"
                    answer = JSONRPCError(
                        jsonrpc="2.0", id=request.id, error=ErrorData(code=INTERNAL_ERROR, message=message)
                    )
                tg.cancel_scope.cancel()
        return answer

    async def _fail(self, store: TaskStore, record: TaskRecord, port: TaskPort, message: str) -> None:
        error = JSONRPCError(jsonrpc="2.0", id=0, error=ErrorData(code=INTERNAL_ERROR, message=message))
        final = finished(record, error, _now_ms())
        if await store.finish(final):
            await _notify(port, final)


def _with_progress_token(request: JSONRPCRequest) -> JSONRPCRequest:
    """The request with a progress token, so the tool's progress reaches the runner."""
    params = dict(request.params or {})
    meta = dict(params.get("_meta") or {})
    meta["progressToken"] = _PROGRESS_TOKEN
    params["_meta"] = meta
    return request.model_copy(update={"params": params})


async def _notify(port: TaskPort, record: TaskRecord) -> None:
    """Tell the task's creator its status (best effort: it may have left)."""
    try:
        await port.send(status_notification(record))
    except Exception as exc:
        logger.info("could not send notifications/tasks for task %s…: %s", record.task_id[:8], exc)


async def _hide(port: TaskPort, seconds: int) -> None:
    """Keep the task-run message from other workers for `seconds` more."""
    try:
        await port.sqs.change_message_visibility(
            QueueUrl=port.request_queue_url, ReceiptHandle=port.receipt_handle, VisibilityTimeout=seconds
        )
    except Exception as exc:
        logger.warning("could not extend a task-run message's visibility: %s", exc)


def _now_ms() -> int:
    return int(time.time() * 1000)
