"""The Tasks extension's pure rules and wire shapes (`dmcp_aws.tasks.model`, `store` items)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from mcp_types import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    MISSING_REQUIRED_CLIENT_CAPABILITY,
    ErrorData,
    JSONRPCError,
    JSONRPCResponse,
)
from pydantic import ValidationError

from dmcp_aws.tasks.model import (
    TASK_STATUS_NOTIFICATION,
    TASKS_EXTENSION,
    DetailedTask,
    TaskRecord,
    can_move,
    create_result,
    declares_tasks,
    detailed,
    expired_error,
    finished,
    get_result,
    missing_capability,
    new_task,
    not_found,
    owner_of,
    status_notification,
    task_id_for,
    task_tool,
    tool_task_support,
    wire,
)
from dmcp_aws.tasks.store import from_item, to_item


def _record(**changes: object) -> TaskRecord:
    record = new_task(
        "t1",
        owner="client:laptop",
        server="example",
        tool="slow_report",
        request_digest="d" * 64,
        now_ms=1_700_000_000_000,
        ttl_ms=60_000,
        poll_interval_ms=1000,
    )
    return replace(record, **changes)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("current", "new", "allowed"),
    [
        ("working", "completed", True),
        ("working", "failed", True),
        ("working", "cancelled", True),
        ("working", "input_required", True),
        ("input_required", "working", True),
        ("input_required", "cancelled", True),
        ("completed", "working", False),
        ("cancelled", "completed", False),
        ("failed", "cancelled", False),
        ("working", "working", False),
    ],
)
def test_the_state_machine_has_no_way_out_of_a_terminal_state(current: str, new: str, allowed: bool) -> None:
    assert can_move(current, new) is allowed


def test_a_new_task_is_working_and_expires_after_its_ttl() -> None:
    record = _record()
    assert record.status == "working" and not record.terminal
    assert not record.expired(record.created_ms + 59_999)
    assert record.expired(record.created_ms + 60_000)
    assert not _record(ttl_ms=None).expired(10**15)


def test_a_json_rpc_error_fails_the_task_and_an_error_result_completes_it() -> None:
    error = JSONRPCError(jsonrpc="2.0", id=1, error=ErrorData(code=INTERNAL_ERROR, message="boom"))
    failed = finished(_record(), error, 5)
    assert failed.status == "failed" and failed.error == {"code": INTERNAL_ERROR, "message": "boom"}
    assert failed.result is None and failed.status_message and "boom" in failed.status_message
    tool_error = {"content": [{"type": "text", "text": "bad input"}], "isError": True}
    completed = finished(_record(), JSONRPCResponse(jsonrpc="2.0", id=1, result=tool_error), 5)
    assert completed.status == "completed" and completed.result == tool_error and completed.error is None


def test_task_ids_are_stable_per_request_and_differ_across_connections() -> None:
    first = task_id_for("secret-a", "https://q/reply", "digest")
    assert first == task_id_for("secret-a", "https://q/reply", "digest")
    assert first != task_id_for("secret-b", "https://q/reply", "digest")
    assert first != task_id_for("secret-a", "https://q/reply", "other")
    assert len(first) >= 43 and "=" not in first  # 256 bits, URL-safe


@pytest.mark.parametrize(
    ("queue", "owner"),
    [
        ("dmcp-reply-laptop", "client:laptop"),
        ("dmcp-reply-laptop.fifo", "client:laptop"),
        ("dmcp-reply-conn-laptop_0123abcd", "client:laptop"),
        ("dmcp-reply-conn-0123abcd", "queue:dmcp-reply-conn-0123abcd"),
    ],
)
def test_the_owner_is_the_provisioned_client_behind_the_reply_queue(queue: str, owner: str) -> None:
    assert owner_of(queue, "dmcp-reply-") == owner


def test_only_a_declared_extension_counts() -> None:
    caps = "io.modelcontextprotocol/clientCapabilities"
    assert declares_tasks({"_meta": {caps: {"extensions": {TASKS_EXTENSION: {}}}}})
    assert not declares_tasks({"_meta": {caps: {"extensions": {}}}})
    assert not declares_tasks({"_meta": {caps: {}}})
    assert not declares_tasks({"name": "x"})
    assert not declares_tasks(None)


def test_the_tool_marker() -> None:
    assert tool_task_support(task_tool()) == "optional"
    assert tool_task_support(task_tool("required")) == "required"
    assert tool_task_support({"dmcp.aws/taskSupport": "sometimes"}) is None
    assert tool_task_support(None) is None


def test_wire_shapes_follow_the_2026_07_28_extension() -> None:
    created = wire(create_result(_record()))
    assert created["resultType"] == "task" and created["taskId"] == "t1" and created["ttlMs"] == 60_000
    assert created["createdAt"] == "2023-11-14T22:13:20.000Z" and created["pollIntervalMs"] == 1000
    assert "result" not in created and "error" not in created
    unlimited = wire(get_result(_record(ttl_ms=None)))
    assert unlimited["ttlMs"] is None and unlimited["resultType"] == "complete"
    done = finished(_record(), JSONRPCResponse(jsonrpc="2.0", id=1, result={"content": []}), 1)
    notification = status_notification(done)
    assert notification.method == TASK_STATUS_NOTIFICATION
    assert notification.params == wire(detailed(done))
    assert notification.params is not None and "resultType" not in notification.params


def test_a_detailed_task_carries_exactly_its_status_payload() -> None:
    base = {"taskId": "t", "createdAt": "x", "lastUpdatedAt": "x", "ttlMs": None}
    DetailedTask.model_validate(base | {"status": "completed", "result": {"content": []}})
    with pytest.raises(ValidationError):
        DetailedTask.model_validate(base | {"status": "completed"})
    with pytest.raises(ValidationError):
        DetailedTask.model_validate(base | {"status": "working", "error": {"code": 1, "message": "m"}})
    with pytest.raises(ValidationError):
        DetailedTask.model_validate(base | {"status": "done"})


def test_the_spec_errors() -> None:
    assert not_found("t").code == INVALID_PARAMS and "not found" in not_found("t").message
    assert expired_error("t").code == INVALID_PARAMS and "expired" in expired_error("t").message
    missing = missing_capability()
    assert missing.code == MISSING_REQUIRED_CLIENT_CAPABILITY
    assert missing.data == {"requiredCapabilities": {"extensions": {TASKS_EXTENSION: {}}}}


def test_store_items_round_trip() -> None:
    done = finished(
        _record(), JSONRPCResponse(jsonrpc="2.0", id=1, result={"content": [], "isError": False}), 9
    )
    item = to_item(done)
    assert item["expiresAt"] == {"N": str((done.created_ms + 60_000) // 1000 + 1)}
    assert from_item(item) == done
    assert from_item(to_item(_record(ttl_ms=None))) == _record(ttl_ms=None)
    assert "expiresAt" not in to_item(_record(ttl_ms=None))
