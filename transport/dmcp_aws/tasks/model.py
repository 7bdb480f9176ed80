"""The Tasks extension's rules and wire shapes (2026-07-28, `io.modelcontextprotocol/tasks`): pure.

A task record is what the task store keeps; the wire models are what goes to clients
(`CreateTaskResult` answering `tools/call`, `GetTaskResult` answering `tasks/get`, the params of
`notifications/tasks`). The SDK's `mcp_types` task models describe the 2025-11-25 shape (`ttl`,
`pollInterval`, a nested `task`), so the 2026-07-28 shapes are defined here, strictly:

    >>> record = new_task("abc", owner="client:laptop", server="example", tool="slow_report",
    ...                   request_digest="…", now_ms=0, ttl_ms=3_600_000, poll_interval_ms=1000)
    >>> create_result(record).model_dump(by_alias=True, exclude_none=True)["resultType"]
    'task'
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Final, Literal

from mcp_types import (
    CLIENT_CAPABILITIES_META_KEY,
    INVALID_PARAMS,
    MISSING_REQUIRED_CLIENT_CAPABILITY,
    ErrorData,
    JSONRPCError,
    JSONRPCNotification,
    JSONRPCResponse,
)
from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

TASKS_EXTENSION: Final = "io.modelcontextprotocol/tasks"
"""The extension's identifier, in client capabilities and in `server/discover`."""
TASK_STATUS_NOTIFICATION: Final = "notifications/tasks"
TASK_METHODS: Final = frozenset({"tasks/get", "tasks/update", "tasks/cancel"})
TASK_SUPPORT_META_KEY: Final = "dmcp.aws/taskSupport"
"""Key of a tool's `_meta` that marks it task-capable: `optional` or `required`."""

Status = Literal["working", "input_required", "completed", "failed", "cancelled"]
TaskSupport = Literal["optional", "required"]
TERMINAL: Final[frozenset[str]] = frozenset({"completed", "failed", "cancelled"})
_NEXT: Final[Mapping[str, frozenset[str]]] = {
    "working": frozenset({"input_required"}) | TERMINAL,
    "input_required": frozenset({"working"}) | TERMINAL,
}
"""The spec's state diagram: terminal states have no way out."""


def task_tool(support: TaskSupport = "optional") -> dict[str, Any]:
    """The `meta` that marks a tool task-capable: `@mcp.tool(meta=task_tool())`.

    `optional`: a client that declared the extension gets a task, any other a plain answer.
    `required`: a client that did not declare it gets the spec's -32021 error.
    """
    return {TASK_SUPPORT_META_KEY: support}


def tool_task_support(meta: Mapping[str, Any] | None) -> TaskSupport | None:
    """How a tool with this `_meta` runs as a task (None: never)."""
    value = (meta or {}).get(TASK_SUPPORT_META_KEY)
    return value if value in ("optional", "required") else None


def can_move(current: str, new: str) -> bool:
    """Whether the spec's state machine allows `current` → `new`."""
    return new in _NEXT.get(current, frozenset())


@dataclass(frozen=True)
class TaskRecord:
    """One task as the store keeps it (times in ms since the epoch)."""

    task_id: str
    owner: str
    """The identity that created it (`owner_of`); only it may see or cancel the task."""
    server: str
    tool: str
    status: Status
    created_ms: int
    updated_ms: int
    ttl_ms: int | None
    poll_interval_ms: int
    request_digest: str
    """Digest of the `tools/call` body: a runner message must carry exactly that request."""
    status_message: str | None = None
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    lease_until_ms: int = 0
    """Until when the runner that claimed the task holds it (0: never claimed)."""
    runs: int = 0
    """How many runners have claimed it (more than one: a runner died and another took over)."""

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    @property
    def expires_ms(self) -> int | None:
        return None if self.ttl_ms is None else self.created_ms + self.ttl_ms

    def expired(self, now_ms: int) -> bool:
        """Whether the task's time to live has passed (it may still be in the table: TTL is lazy)."""
        expires = self.expires_ms
        return expires is not None and now_ms >= expires


def new_task(
    task_id: str,
    *,
    owner: str,
    server: str,
    tool: str,
    request_digest: str,
    now_ms: int,
    ttl_ms: int | None,
    poll_interval_ms: int,
) -> TaskRecord:
    """A task just accepted: `working`, not yet claimed by a runner."""
    return TaskRecord(
        task_id=task_id,
        owner=owner,
        server=server,
        tool=tool,
        status="working",
        created_ms=now_ms,
        updated_ms=now_ms,
        ttl_ms=ttl_ms,
        poll_interval_ms=poll_interval_ms,
        request_digest=request_digest,
        status_message="queued",
    )


def finished(record: TaskRecord, answer: JSONRPCResponse | JSONRPCError, now_ms: int) -> TaskRecord:
    """The task after its tool answered: a JSON-RPC error is `failed`; any result (even one with
    `isError`) is `completed`."""
    if isinstance(answer, JSONRPCError):
        error = answer.error.model_dump(by_alias=True, exclude_none=True)
        return replace(
            record,
            status="failed",
            error=error,
            status_message=f"Tool execution failed: {answer.error.message}"[:1000],
            updated_ms=now_ms,
        )
    is_error = bool(answer.result.get("isError"))
    message = "the tool reported an error" if is_error else "done"
    return replace(
        record, status="completed", result=dict(answer.result), status_message=message, updated_ms=now_ms
    )


def task_id_for(conn: str, reply_to: str, digest: str) -> str:
    """The task id of one `tools/call` of one connection: unguessable (it hashes the connection's
    secret) and the same for every delivery of that request, so accepting it again is harmless."""
    material = "\n".join(("dmcp-task", conn, reply_to, digest)).encode("utf-8", "surrogatepass")
    return base64.urlsafe_b64encode(hashlib.sha256(material).digest()).decode().rstrip("=")


def run_key(task_id: str) -> str:
    """The idempotency key a task's tool sees (`current_request().idempotency_key`)."""
    return hashlib.sha256(f"dmcp-task-run\n{task_id}".encode()).hexdigest()


def owner_of(reply_queue: str, reply_prefix: str, connection_prefix: str = "conn-") -> str:
    """The identity of a request, from the reply queue it named (workers reply to no other).

    A provisioned client's queue `<prefix><client>` and its per-connection queues
    `<prefix>conn-<client>_<random>` are one identity, `client:<client>`: IAM lets only that
    client's principal read them. A per-connection queue of no provisioned client
    (`<prefix>conn-<random>`) is an identity of its own.
    """
    name = reply_queue.removesuffix(".fifo")
    rest = name.removeprefix(reply_prefix)
    if rest.startswith(connection_prefix):
        client, separator, _ = rest.removeprefix(connection_prefix).partition("_")
        return f"client:{client}" if separator and client else f"queue:{name}"
    return f"client:{rest}"


def declares_tasks(params: Mapping[str, Any] | None) -> bool:
    """Whether a request's 2026-07-28 client capabilities declare the Tasks extension."""
    meta = (params or {}).get("_meta")
    capabilities = meta.get(CLIENT_CAPABILITIES_META_KEY) if isinstance(meta, Mapping) else None
    extensions = capabilities.get("extensions") if isinstance(capabilities, Mapping) else None
    return isinstance(extensions, Mapping) and TASKS_EXTENSION in extensions


def iso(ms: int) -> str:
    """An ISO 8601 UTC timestamp."""
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class _Wire(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


class Task(_Wire):
    """The spec's `Task`."""

    task_id: str
    status: Status
    status_message: str | None = None
    created_at: str
    last_updated_at: str
    ttl_ms: int | None
    poll_interval_ms: int | None = None
    meta: dict[str, Any] | None = Field(default=None, alias="_meta")

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL


class DetailedTask(Task):
    """A `Task` with its status's payload: `result` when completed, `error` when failed."""

    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    input_requests: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _payload_matches_status(self) -> DetailedTask:
        if (self.result is not None) != (self.status == "completed"):
            raise ValueError("`result` is present exactly when the status is completed")
        if (self.error is not None) != (self.status == "failed"):
            raise ValueError("`error` is present exactly when the status is failed")
        if (self.input_requests is not None) != (self.status == "input_required"):
            raise ValueError("`inputRequests` is present exactly when the status is input_required")
        return self


class CreateTaskResult(Task):
    """The answer to a `tools/call` that became a task."""

    result_type: Literal["task"] = "task"


class GetTaskResult(DetailedTask):
    """The answer to `tasks/get`."""

    result_type: Literal["complete"] = "complete"


class EmptyTaskResult(_Wire):
    """The answer to `tasks/cancel` and `tasks/update` (an acknowledgement)."""

    result_type: Literal["complete"] = "complete"
    meta: dict[str, Any] | None = Field(default=None, alias="_meta")


def _task_fields(record: TaskRecord) -> dict[str, Any]:
    return {
        "task_id": record.task_id,
        "status": record.status,
        "status_message": record.status_message,
        "created_at": iso(record.created_ms),
        "last_updated_at": iso(record.updated_ms),
        "ttl_ms": record.ttl_ms,
        "poll_interval_ms": record.poll_interval_ms,
    }


def detailed(record: TaskRecord) -> DetailedTask:
    """The task as `tasks/get` and `notifications/tasks` show it."""
    return DetailedTask(**_task_fields(record), result=record.result, error=record.error)


def create_result(record: TaskRecord) -> CreateTaskResult:
    return CreateTaskResult(**_task_fields(record))


def get_result(record: TaskRecord) -> GetTaskResult:
    return GetTaskResult(**_task_fields(record), result=record.result, error=record.error)


def wire(model: BaseModel) -> dict[str, Any]:
    """A wire model as the JSON object it is sent as (`ttlMs` is required even when null)."""
    body = model.model_dump(by_alias=True, exclude_none=True, mode="json")
    if isinstance(model, Task):
        body["ttlMs"] = model.ttl_ms
    return body


def status_notification(record: TaskRecord) -> JSONRPCNotification:
    """`notifications/tasks` carrying the task as `tasks/get` would show it now."""
    return JSONRPCNotification(jsonrpc="2.0", method=TASK_STATUS_NOTIFICATION, params=wire(detailed(record)))


def not_found(task_id: object) -> ErrorData:
    """The spec's error for a task that does not exist, or is not the caller's to see."""
    return ErrorData(
        code=INVALID_PARAMS, message="Failed to retrieve task: Task not found", data={"taskId": task_id}
    )


def expired_error(task_id: str) -> ErrorData:
    return ErrorData(
        code=INVALID_PARAMS, message="Failed to retrieve task: Task has expired", data={"taskId": task_id}
    )


def missing_capability() -> ErrorData:
    """-32021: the request needs a client that declared the Tasks extension."""
    return ErrorData(
        code=MISSING_REQUIRED_CLIENT_CAPABILITY,
        message="Missing required client capability",
        data={"requiredCapabilities": {"extensions": {TASKS_EXTENSION: {}}}},
    )
