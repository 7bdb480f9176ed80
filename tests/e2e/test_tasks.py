"""The Tasks extension end to end on the embedded stack: real clients, real workers, moto.

Every message a task client receives is checked against the spec's shapes (`dmcp_aws.tasks.model`,
strict) and against the SDK's `mcp_types` models for what they share (see `assert_valid`).
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp_types import (
    INVALID_PARAMS,
    MISSING_REQUIRED_CLIENT_CAPABILITY,
    CallToolResult,
    ErrorData,
    JSONRPCError,
    JSONRPCMessage,
    JSONRPCNotification,
    JSONRPCResponse,
    TextContent,
)
from mcp_types import Task as SdkTask

from dmcp_aws.client import QueueTarget, sqs_client_transport
from dmcp_aws.local.lambda_event import lambda_record
from dmcp_aws.local.stack import RunningStack
from dmcp_aws.tasks.client import TaskClient, result_of
from dmcp_aws.tasks.model import (
    TASK_STATUS_NOTIFICATION,
    TASKS_EXTENSION,
    CreateTaskResult,
    DetailedTask,
    EmptyTaskResult,
    GetTaskResult,
    Task,
)
from dmcp_aws.tasks.runner import TASK_ATTRIBUTE
from dmcp_aws.worker import Worker, WorkerSettings

from .raw import (
    example_queues,
    make_reply_queue,
    new_conn,
    receive_matching,
    request_attributes,
    send,
    tool_call,
)

pytestmark = pytest.mark.anyio


def assert_valid(message: JSONRPCMessage) -> None:
    """A task message is valid: the spec's 2026-07-28 shape, and the SDK's models for the parts
    it defines (the 2025-11-25 `Task` under its field names, `CallToolResult`, `ErrorData`)."""
    if isinstance(message, JSONRPCError):
        ErrorData.model_validate(message.error.model_dump(by_alias=True))
        return
    if isinstance(message, JSONRPCNotification):
        assert message.method == TASK_STATUS_NOTIFICATION, message.method
        body = dict(message.params or {})
        task: Task = DetailedTask.model_validate(body)
    else:
        assert isinstance(message, JSONRPCResponse)
        body = dict(message.result)
        kind = body.get("resultType")
        if kind == "task":
            task = CreateTaskResult.model_validate(body)
        elif "taskId" in body:
            task = GetTaskResult.model_validate(body)
        elif kind == "complete" and set(body) <= {"resultType", "_meta"}:
            EmptyTaskResult.model_validate(body)
            return
        else:
            CallToolResult.model_validate(body)  # a plain answer
            return
    assert "ttlMs" in body, "ttlMs is required (null for unlimited)"
    old_names = {"ttlMs": "ttl", "pollIntervalMs": "pollInterval"}
    SdkTask.model_validate({old_names.get(k, k): v for k, v in body.items() if k not in ("result", "error")})
    if isinstance(task, DetailedTask) and task.result is not None:
        CallToolResult.model_validate(task.result)
    if isinstance(task, DetailedTask) and task.error is not None:
        ErrorData.model_validate(task.error)


@asynccontextmanager
async def task_client(stack: RunningStack, *, prefix: str | None = None) -> AsyncIterator[TaskClient]:
    """A task client on a new connection (its own reply queue) of the provisioned client `laptop`,
    or under `prefix`; every message it receives is validated."""
    options = stack.client_options()
    if prefix is not None:
        options["reply_prefix"] = prefix
    async with TaskClient.connect(
        stack.topic_target("example"), trace=assert_valid, wait_time_seconds=2, request_timeout=30, **options
    ) as client:
        yield client


async def test_a_task_is_answered_at_once_and_its_result_read_by_another_connection(
    stack: RunningStack,
) -> None:
    async with task_client(stack) as creator:
        started = time.monotonic()
        created = await creator.call_tool("slow_report", {"topic": "q3", "seconds": 5})
        accepted_s = time.monotonic() - started
        assert isinstance(created, CreateTaskResult)
        assert created.status == "working" and created.poll_interval_ms and created.ttl_ms
        assert accepted_s < 1.0, f"the task took {accepted_s:.2f} s to be accepted"
        # While its runner works, any other worker answers tasks/get at once from the store.
        await anyio.sleep(2.5)
        asked = time.monotonic()
        running = await creator.get(created.task_id)
        assert time.monotonic() - asked < 1.0
        assert running.status == "working"
        assert running.status_message and "section" in running.status_message

    async with task_client(stack) as other:  # a new connection with a new reply queue
        done = await other.wait(created.task_id, timeout=30)
        readable_s = time.monotonic() - started
    assert done.status == "completed", done
    result = result_of(done)
    assert isinstance(result.content[0], TextContent)
    assert result.content[0].text.endswith("on q3: 10 sections")
    assert 5.0 <= readable_s < 9.0, f"result readable after {readable_s:.2f} s"


async def test_the_creator_hears_of_the_end_by_notification(stack: RunningStack) -> None:
    async with task_client(stack) as client:
        created = await client.call_tool("slow_report", {"topic": "n", "seconds": 1})
        assert isinstance(created, CreateTaskResult)
        done = await client.wait(created.task_id, timeout=30)
        assert done.status == "completed"
        with anyio.fail_after(10):
            while client.notifications_received == 0:
                await anyio.sleep(0.1)


async def test_cancelled_while_running_the_tool_sees_it_and_the_task_ends_cancelled(
    stack: RunningStack,
) -> None:
    from functions.example.server import stopped_tasks

    async with task_client(stack) as client:
        created = await client.call_tool("slow_report", {"topic": "c", "seconds": 6})
        assert isinstance(created, CreateTaskResult)
        with anyio.fail_after(10):
            while "section" not in ((await client.get(created.task_id)).status_message or ""):
                await anyio.sleep(0.3)
        await client.cancel(created.task_id)
        done = await client.wait(created.task_id, timeout=20)
        assert done.status == "cancelled"
        with anyio.fail_after(10):  # the tool saw it at its next section and stopped
            while created.task_id not in stopped_tasks:
                await anyio.sleep(0.2)
        assert (await client.get(created.task_id)).status == "cancelled"
        with pytest.raises(MCPError):
            result_of(done)


async def test_unknown_and_foreign_task_ids_get_the_not_found_error(stack: RunningStack) -> None:
    async with task_client(stack) as owner:
        created = await owner.call_tool("slow_report", {"topic": "mine", "seconds": 2})
        assert isinstance(created, CreateTaskResult)
    foreign = stack.deployment.connection_queue_prefix + "intruder_"  # another client's identity
    async with task_client(stack, prefix=foreign) as intruder:
        for method in (intruder.get, intruder.cancel):
            with pytest.raises(MCPError) as raised:
                await method(created.task_id)
            assert raised.value.code == INVALID_PARAMS and "not found" in raised.value.message
        with pytest.raises(MCPError) as raised:
            await intruder.get("no-such-task")
        assert raised.value.code == INVALID_PARAMS and "not found" in raised.value.message
    async with task_client(stack) as owner_again:  # the intruder's cancel changed nothing
        assert (await owner_again.wait(created.task_id, timeout=20)).status == "completed"


async def test_an_expired_task_gets_the_expired_error(stack: RunningStack) -> None:
    async with task_client(stack) as client:
        created = await client.call_tool("slow_report", {"topic": "old", "seconds": 0})
        assert isinstance(created, CreateTaskResult) and created.ttl_ms is not None
        await client.wait(created.task_id, timeout=20)
        table = stack.topology.tasks_table
        assert table is not None
        async with stack.session().client("dynamodb", endpoint_url=stack.endpoint_url) as dynamodb:
            ttl = await dynamodb.describe_time_to_live(TableName=table)
            assert ttl["TimeToLiveDescription"]["AttributeName"] == "expiresAt"
            # Time passes: the task was created longer ago than its time to live.
            created_ms = int(time.time() * 1000) - created.ttl_ms - 1
            await dynamodb.update_item(
                TableName=table,
                Key={"id": {"S": created.task_id}},
                UpdateExpression="SET createdMs = :c",
                ExpressionAttributeValues={":c": {"N": str(created_ms)}},
            )
        with pytest.raises(MCPError) as raised:
            await client.get(created.task_id)
        assert raised.value.code == INVALID_PARAMS and "expired" in raised.value.message


async def test_a_client_without_the_extension_gets_a_plain_answer(stack: RunningStack) -> None:
    transport = sqs_client_transport(stack.topic_target("example"), **stack.client_options())
    async with Client(transport, read_timeout_seconds=30) as client:
        assert TASKS_EXTENSION in (client.server_capabilities.extensions or {})  # server/discover
        result = await client.call_tool("slow_report", {"topic": "plain", "seconds": 0.2})
    assert not result.is_error
    assert isinstance(result.content[0], TextContent)
    assert result.content[0].text.endswith("on plain: 10 sections")


async def test_fifty_concurrent_tasks_from_five_clients(stack: RunningStack) -> None:
    results: dict[str, str] = {}

    async def one_client(number: int) -> None:
        async with task_client(stack) as client:

            async def one_task(index: int) -> None:
                topic = f"t{number}-{index}"
                result = await client.run_tool("slow_report", {"topic": topic, "seconds": 0.5}, timeout=90)
                assert isinstance(result.content[0], TextContent)
                results[topic] = result.content[0].text

            async with anyio.create_task_group() as tg:
                for index in range(10):
                    tg.start_soon(one_task, index)

    with anyio.fail_after(120):
        async with anyio.create_task_group() as tg:
            for number in range(5):
                tg.start_soon(one_client, number)
    assert len(results) == 50
    for topic, text in results.items():
        assert text.endswith(f"on {topic}: 10 sections"), text
    numbers = {text.split()[1] for text in results.values()}
    assert len(numbers) == 50, "every task took its own ticket, once"


class ManualQueue:
    """A request queue of the example server that the test serves itself, one message at a time,
    with `Worker`s it chooses (each is a separate execution environment)."""

    def __init__(self, stack: RunningStack, sqs: Any, url: str, arn: str) -> None:
        self.stack, self.sqs, self.url, self.arn = stack, sqs, url, arn

    async def serve(self, worker: Worker, *, runs_task: bool) -> None:
        """Serve the next message that is (or is not) a task-run message with `worker`."""
        with anyio.fail_after(20):
            while True:
                response = await self.sqs.receive_message(
                    QueueUrl=self.url,
                    MaxNumberOfMessages=10,
                    WaitTimeSeconds=1,
                    MessageAttributeNames=["All"],
                    AttributeNames=["All"],
                )
                chosen = None
                for message in response.get("Messages", []):
                    is_run = TASK_ATTRIBUTE in message.get("MessageAttributes", {})
                    if chosen is None and is_run == runs_task:
                        chosen = message
                    else:  # not now: back to the queue at once
                        await self.sqs.change_message_visibility(
                            QueueUrl=self.url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
                        )
                if chosen is not None:
                    break
        await worker.handle_record(lambda_record(chosen, self.arn, self.stack.region))
        await self.sqs.delete_message(QueueUrl=self.url, ReceiptHandle=chosen["ReceiptHandle"])


@pytest.fixture
async def manual(stack: RunningStack, sqs: Any) -> AsyncIterator[ManualQueue]:
    name = f"dmcp-manual-{secrets.token_hex(4)}"
    dlq = (await sqs.create_queue(QueueName=f"{name}-dlq"))["QueueUrl"]
    dlq_arn = (await sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"]))["Attributes"][
        "QueueArn"
    ]
    redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 6})
    url = (await sqs.create_queue(QueueName=name, Attributes={"RedrivePolicy": redrive}))["QueueUrl"]
    arn = (await sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"]))["Attributes"][
        "QueueArn"
    ]
    try:
        yield ManualQueue(stack, sqs, url, arn)
    finally:
        await sqs.delete_queue(QueueUrl=url)
        await sqs.delete_queue(QueueUrl=dlq)


def _worker() -> Worker:
    from functions.example.server import mcp

    return Worker(mcp, WorkerSettings.from_env())


@asynccontextmanager
async def manual_client(stack: RunningStack, manual: ManualQueue) -> AsyncIterator[TaskClient]:
    target = QueueTarget(queue_url=manual.url, server="example")
    async with TaskClient.connect(
        target, trace=assert_valid, wait_time_seconds=1, request_timeout=30, **stack.client_options()
    ) as client:
        yield client


async def ask(client: TaskClient, manual: ManualQueue, worker: Worker, task_id: str) -> str:
    """The task's status, from a `tasks/get` that `worker` answers."""
    async with anyio.create_task_group() as tg:
        seen: list[str] = []

        async def get() -> None:
            seen.append((await client.get(task_id)).status)

        tg.start_soon(get)
        await manual.serve(worker, runs_task=False)
    return seen[0]


async def _task_item(stack: RunningStack, task_id: str) -> dict[str, Any]:
    async with stack.session().client("dynamodb", endpoint_url=stack.endpoint_url) as dynamodb:
        item = await dynamodb.get_item(TableName=stack.topology.tasks_table, Key={"id": {"S": task_id}})
    return dict(item["Item"])


async def test_a_task_cancelled_before_it_starts_never_runs(stack: RunningStack, manual: ManualQueue) -> None:
    from functions.example.server import stopped_tasks

    accepting, running = _worker(), _worker()
    async with manual_client(stack, manual) as client, anyio.create_task_group() as tg:
        created: list[Any] = []

        async def call() -> None:
            created.append(await client.call_tool("slow_report", {"topic": "never", "seconds": 1}))

        tg.start_soon(call)
        await manual.serve(accepting, runs_task=False)  # the tools/call: answered with a task
        with anyio.fail_after(10):
            while not created:
                await anyio.sleep(0.05)
        task = created[0]
        assert isinstance(task, CreateTaskResult)
        tg.start_soon(client.cancel, task.task_id)
        await manual.serve(accepting, runs_task=False)  # the tasks/cancel
        await manual.serve(running, runs_task=True)  # the task's work: cancelled, so not run
        with anyio.fail_after(10):  # the runner told the creator
            while client.notifications_received == 0:
                await anyio.sleep(0.05)
        assert await ask(client, manual, running, task.task_id) == "cancelled"
    for worker in (accepting, running):
        await worker.aclose()
    item = await _task_item(stack, task.task_id)
    assert item["runs"]["N"] == "0", "the tool never ran"
    assert task.task_id not in stopped_tasks


async def test_tasks_get_is_answered_by_workers_that_do_not_run_the_task(
    stack: RunningStack, manual: ManualQueue
) -> None:
    accepting, running, other = _worker(), _worker(), _worker()
    async with manual_client(stack, manual) as client, anyio.create_task_group() as tg:
        created: list[Any] = []

        async def call() -> None:
            created.append(await client.call_tool("slow_report", {"topic": "elsewhere", "seconds": 3}))

        tg.start_soon(call)
        await manual.serve(accepting, runs_task=False)
        with anyio.fail_after(10):
            while not created:
                await anyio.sleep(0.05)
        task_id = created[0].task_id
        tg.start_soon(partial(manual.serve, running, runs_task=True))  # runs for 3 s
        await anyio.sleep(0.5)
        assert await ask(client, manual, other, task_id) == "working"
        assert await ask(client, manual, accepting, task_id) == "working"
        with anyio.fail_after(10):
            while (await _task_item(stack, task_id))["status"]["S"] == "working":
                await anyio.sleep(0.2)
        assert await ask(client, manual, other, task_id) == "completed"
    for worker in (accepting, running, other):
        await worker.aclose()


async def test_dynamodb_calls_per_task(stack: RunningStack, monkeypatch: pytest.MonkeyPatch) -> None:
    """Counts every DynamoDB call on the task table (and the request ledger) for one 5 s task
    polled by its creator; the figures are in docs/tasks.md."""
    from aiobotocore.client import AioBaseClient
    from botocore.client import BaseClient

    calls: list[tuple[str, str]] = []

    def note(client: Any, operation: str, params: dict[str, Any]) -> None:
        if client.meta.service_model.service_name == "dynamodb":
            key = (params.get("Key") or params.get("Item") or {}).get("id", {}).get("S", "")
            # The request ledger's own entries (powertools), not the example's tickets in its table.
            table = str(params.get("TableName"))
            if table != stack.topology.idempotency_table or key.startswith("dmcp#"):
                calls.append((operation, table))

    original_async, original_sync = AioBaseClient._make_api_call, BaseClient._make_api_call

    async def counting_async(self: Any, operation: str, params: dict[str, Any]) -> Any:
        note(self, operation, params)
        return await original_async(self, operation, params)

    def counting_sync(self: Any, operation: str, params: dict[str, Any]) -> Any:
        note(self, operation, params)
        return original_sync(self, operation, params)

    monkeypatch.setattr(AioBaseClient, "_make_api_call", counting_async)
    monkeypatch.setattr(BaseClient, "_make_api_call", counting_sync)
    async with task_client(stack) as client:
        started = time.monotonic()
        created = await client.call_tool("slow_report", {"topic": "count", "seconds": 5})
        assert isinstance(created, CreateTaskResult)
        done = await client.wait(created.task_id, timeout=30)
        readable_s = time.monotonic() - started
    assert done.status == "completed"
    table = stack.topology.tasks_table
    writes = [op for op, name in calls if name == table and op in ("PutItem", "UpdateItem")]
    reads = [op for op, name in calls if name == table and op == "GetItem"]
    ledger = [op for op, name in calls if name == stack.topology.idempotency_table]
    print(f"\ntask readable after {readable_s:.2f} s; task table: {len(writes)} writes, {len(reads)} reads")
    assert writes.count("PutItem") == 1  # created once
    assert len(writes) <= 6, writes  # create, claim, a renewal per 2 s, finish
    assert len(reads) <= 12, reads  # the runner's check, then one per poll (1 s)
    assert not ledger, "neither accepting nor polling a task goes through the request ledger"


async def test_a_forged_task_attribute_is_answered_with_an_error(stack: RunningStack, sqs: Any) -> None:
    """A client cannot make a worker run, or reveal, a task by naming it on a message of its own."""
    async with task_client(stack) as owner:
        created = await owner.call_tool("slow_report", {"topic": "real", "seconds": 0})
        assert isinstance(created, CreateTaskResult)
        await owner.wait(created.task_id, timeout=20)
    reply_to, conn = await make_reply_queue(sqs, stack), new_conn()
    try:
        attributes = request_attributes(stack, reply_to, conn, dmcp_task=created.task_id)
        await send(sqs, example_queues(stack)[0], tool_call(7, tool="slow_report"), attributes)
        ((body, _),) = await receive_matching(sqs, reply_to, conn)
    finally:
        await sqs.delete_queue(QueueUrl=reply_to)
    answer = json.loads(body)
    assert answer["id"] == 7 and answer["error"]["code"] == INVALID_PARAMS, answer
    assert "names no task" in answer["error"]["message"]


async def test_a_tool_that_only_runs_as_a_task_refuses_a_client_without_the_extension(
    stack: RunningStack, manual: ManualQueue
) -> None:
    from mcp.server.mcpserver import MCPServer

    from dmcp_aws.tasks import task_tool

    server = MCPServer("example")

    @server.tool(meta=task_tool("required"))
    def batch_job(size: int) -> str:
        """Runs only as a task."""
        return f"processed {size}"

    worker = Worker(server, WorkerSettings.from_env())
    target = QueueTarget(queue_url=manual.url, server="example")
    async with (
        Client(sqs_client_transport(target, **stack.client_options()), mode="2026-07-28") as plain,
        anyio.create_task_group() as tg,
    ):
        refused: list[BaseException] = []

        async def call_plainly() -> None:
            try:
                await plain.call_tool("batch_job", {"size": 3})
            except MCPError as exc:
                refused.append(exc)

        tg.start_soon(call_plainly)
        await manual.serve(worker, runs_task=False)
    (error,) = refused
    assert isinstance(error, MCPError) and error.code == MISSING_REQUIRED_CLIENT_CAPABILITY
    assert error.data == {"requiredCapabilities": {"extensions": {TASKS_EXTENSION: {}}}}

    async with manual_client(stack, manual) as client, anyio.create_task_group() as tg:
        created: list[Any] = []

        async def call_as_task() -> None:
            created.append(await client.call_tool("batch_job", {"size": 3}))

        tg.start_soon(call_as_task)
        await manual.serve(worker, runs_task=False)
        await manual.serve(worker, runs_task=True)
        with anyio.fail_after(10):
            while not created:
                await anyio.sleep(0.05)
        assert isinstance(created[0], CreateTaskResult)
        assert await ask(client, manual, worker, created[0].task_id) == "completed"
    await worker.aclose()


async def test_task_methods_need_the_extension_and_update_is_acknowledged(
    stack: RunningStack, sqs: Any
) -> None:
    async with task_client(stack) as client:
        created = await client.call_tool("slow_report", {"topic": "u", "seconds": 0})
        assert isinstance(created, CreateTaskResult)
        # tasks/update: this kit's tasks never ask for input; responses are acknowledged and ignored.
        await client.update(created.task_id, {"unknown-key": {"action": "accept"}})
        assert (await client.wait(created.task_id, timeout=20)).status == "completed"
    reply_to, conn = await make_reply_queue(sqs, stack), new_conn()
    try:
        for request_id, method in enumerate(("tasks/get", "tasks/cancel", "tasks/update"), start=1):
            meta = {
                "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientCapabilities": {},  # no extension declared
            }
            body = {
                "jsonrpc": "2.0",
                "id": request_id,
                "method": method,
                "params": {"taskId": created.task_id},
            }
            body["params"]["_meta"] = meta  # type: ignore[index]
            attributes = request_attributes(stack, reply_to, conn, mcp_method=method)
            await send(sqs, example_queues(stack)[0], json.dumps(body), attributes)
        answers = [json.loads(body) for body, _ in await receive_matching(sqs, reply_to, conn, count=3)]
    finally:
        await sqs.delete_queue(QueueUrl=reply_to)
    assert sorted(a["id"] for a in answers) == [1, 2, 3]
    for answer in answers:
        assert answer["error"]["code"] == MISSING_REQUIRED_CLIENT_CAPABILITY, answer
