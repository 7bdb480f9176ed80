"""The task store: one DynamoDB item per task, every change a conditional write.

    >>> store = TaskStore(dynamodb_client, "dmcp-tasks")
    >>> record = await store.create(new_task(...))      # the same record again if it exists
    >>> claimed = await store.claim(task_id, now_ms, lease_ms=10_000)
    >>> await store.finish(finished(claimed, answer, now_ms))

The table's key is `id` (the task id); `expiresAt` (seconds since the epoch) is its TTL
attribute, so DynamoDB deletes a task some time after its `ttlMs` has passed; until then the
store treats it as expired itself. Reads are strongly consistent: a task is readable by any worker
as soon as `create` returns (the spec's "durably created before answering").
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, Final, cast

from botocore.exceptions import ClientError

from dmcp_aws.tasks.model import TERMINAL, Status, TaskRecord

TTL_ATTRIBUTE: Final = "expiresAt"
MAX_PAYLOAD_BYTES: Final = 350_000
"""Largest result or error kept (DynamoDB items hold 400 KB)."""
_LIVE: Final = {":working": {"S": "working"}, ":input": {"S": "input_required"}}


class TaskBusy(Exception):
    """Another runner holds the task's lease."""

    def __init__(self, lease_until_ms: int) -> None:
        super().__init__(f"the task is held by another runner until {lease_until_ms}")
        self.lease_until_ms = lease_until_ms


class TaskGone(Exception):
    """The task is terminal (or no longer exists): there is nothing left to run."""


class TaskStore:
    """Reads and conditional writes of task records on an async DynamoDB client (`threaded_aws`)."""

    def __init__(self, dynamodb: Any, table: str) -> None:
        self.dynamodb = dynamodb
        self.table = table

    async def create(self, record: TaskRecord) -> TaskRecord:
        """Store a new task; if one with its id exists (a redelivered request), return that one."""
        try:
            await self.dynamodb.put_item(
                TableName=self.table,
                Item=to_item(record),
                ConditionExpression="attribute_not_exists(id)",
            )
        except ClientError as exc:
            if not _condition_failed(exc):
                raise
            existing = await self.get(record.task_id)
            if existing is None:
                raise
            return existing
        return record

    async def get(self, task_id: str) -> TaskRecord | None:
        """The task, read strongly consistently; None if there is none."""
        response = await self.dynamodb.get_item(
            TableName=self.table, Key={"id": {"S": task_id}}, ConsistentRead=True
        )
        item = response.get("Item")
        return from_item(item) if item else None

    async def cancel(
        self, task_id: str, now_ms: int, message: str = "cancelled by the client"
    ) -> TaskRecord | None:
        """Move a live task to `cancelled`; None if it was terminal already (or is gone)."""
        try:
            response = await self.dynamodb.update_item(
                TableName=self.table,
                Key={"id": {"S": task_id}},
                UpdateExpression="SET #s = :cancelled, statusMessage = :m, updatedMs = :now",
                ConditionExpression="attribute_exists(id) AND (#s = :working OR #s = :input)",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues={
                    ":cancelled": {"S": "cancelled"},
                    ":m": {"S": message},
                    ":now": {"N": str(now_ms)},
                    **_LIVE,
                },
                ReturnValues="ALL_NEW",
            )
        except ClientError as exc:
            if _condition_failed(exc):
                return None
            raise
        return from_item(response["Attributes"])

    async def claim(self, task_id: str, now_ms: int, lease_ms: int) -> TaskRecord:
        """Take the task to run it, for `lease_ms`. Raises `TaskBusy` while another runner's
        lease lasts and `TaskGone` when the task is terminal or does not exist."""
        try:
            response = await self.dynamodb.update_item(
                TableName=self.table,
                Key={"id": {"S": task_id}},
                UpdateExpression=(
                    "SET leaseUntil = :lease, statusMessage = :m, updatedMs = :now ADD runs :one"
                ),
                ConditionExpression=(
                    "#s = :working AND (attribute_not_exists(leaseUntil) OR leaseUntil < :now)"
                ),
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues={
                    ":lease": {"N": str(now_ms + lease_ms)},
                    ":m": {"S": "running"},
                    ":now": {"N": str(now_ms)},
                    ":one": {"N": "1"},
                    ":working": {"S": "working"},
                },
                ReturnValues="ALL_NEW",
            )
        except ClientError as exc:
            if not _condition_failed(exc):
                raise
            current = await self.get(task_id)
            if current is None or current.status in TERMINAL:
                raise TaskGone(task_id) from None
            raise TaskBusy(current.lease_until_ms) from None
        return from_item(response["Attributes"])

    async def renew(self, task_id: str, now_ms: int, lease_ms: int, status_message: str | None) -> bool:
        """Extend a running task's lease (and set its status message); False once the task is no
        longer `working` (cancelled): the runner should stop."""
        values: dict[str, Any] = {
            ":lease": {"N": str(now_ms + lease_ms)},
            ":working": {"S": "working"},
        }
        update = "SET leaseUntil = :lease"
        if status_message is not None:
            update += ", statusMessage = :m, updatedMs = :now"
            values |= {":m": {"S": status_message[:1000]}, ":now": {"N": str(now_ms)}}
        try:
            await self.dynamodb.update_item(
                TableName=self.table,
                Key={"id": {"S": task_id}},
                UpdateExpression=update,
                ConditionExpression="#s = :working",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues=values,
            )
        except ClientError as exc:
            if _condition_failed(exc):
                return False
            raise
        return True

    async def finish(self, record: TaskRecord) -> bool:
        """Record a terminal state reached by the runner; False if the task left `working` in the
        meantime (it was cancelled: that status stays)."""
        item = to_item(record)
        names = {"#s": "status"}
        values: dict[str, Any] = {
            ":s": item["status"],
            ":now": item["updatedMs"],
            ":working": {"S": "working"},
        }
        sets = ["#s = :s", "updatedMs = :now", "leaseUntil = :zero"]
        values[":zero"] = {"N": "0"}
        for field in ("statusMessage", "result", "error"):  # `result` is a reserved word
            if field in item:
                sets.append(f"#{field} = :{field}")
                names[f"#{field}"] = field
                values[f":{field}"] = item[field]
        try:
            await self.dynamodb.update_item(
                TableName=self.table,
                Key={"id": {"S": record.task_id}},
                UpdateExpression="SET " + ", ".join(sets),
                ConditionExpression="#s = :working",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
        except ClientError as exc:
            if _condition_failed(exc):
                return False
            raise
        return True


def to_item(record: TaskRecord) -> dict[str, Any]:
    """A record as a DynamoDB item (attribute values)."""
    item: dict[str, Any] = {
        "id": {"S": record.task_id},
        "owner": {"S": record.owner},
        "server": {"S": record.server},
        "tool": {"S": record.tool},
        "status": {"S": record.status},
        "createdMs": {"N": str(record.created_ms)},
        "updatedMs": {"N": str(record.updated_ms)},
        "pollMs": {"N": str(record.poll_interval_ms)},
        "digest": {"S": record.request_digest},
        "leaseUntil": {"N": str(record.lease_until_ms)},
        "runs": {"N": str(record.runs)},
    }
    if record.ttl_ms is not None:
        item["ttlMs"] = {"N": str(record.ttl_ms)}
        item[TTL_ATTRIBUTE] = {"N": str((record.created_ms + record.ttl_ms) // 1000 + 1)}
    if record.status_message is not None:
        item["statusMessage"] = {"S": record.status_message}
    for field, value in (("result", record.result), ("error", record.error)):
        if value is not None:
            item[field] = {"S": _bounded_json(value)}
    return item


def from_item(item: Mapping[str, Any]) -> TaskRecord:
    """A DynamoDB item as a record."""

    def text(name: str) -> str | None:
        value = item.get(name)
        return str(value["S"]) if value else None

    def number(name: str, default: int = 0) -> int:
        value = item.get(name)
        return int(value["N"]) if value else default

    record = TaskRecord(
        task_id=str(item["id"]["S"]),
        owner=text("owner") or "",
        server=text("server") or "",
        tool=text("tool") or "",
        status=cast(Status, text("status")),
        created_ms=number("createdMs"),
        updated_ms=number("updatedMs"),
        ttl_ms=number("ttlMs") if "ttlMs" in item else None,
        poll_interval_ms=number("pollMs", 1000),
        request_digest=text("digest") or "",
        status_message=text("statusMessage"),
        lease_until_ms=number("leaseUntil"),
        runs=number("runs"),
    )
    result, error = text("result"), text("error")
    return replace(
        record,
        result=json.loads(result) if result else None,
        error=json.loads(error) if error else None,
    )


def _bounded_json(value: Mapping[str, Any]) -> str:
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    if len(text.encode()) > MAX_PAYLOAD_BYTES:
        raise ValueError(f"a task result of {len(text.encode())} bytes is larger than the task store keeps")
    return text


def _condition_failed(exc: ClientError) -> bool:
    return bool(exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException")
