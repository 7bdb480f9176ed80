"""The workers' AWS clients (`dmcp_aws.threaded_aws`) against the embedded stack's moto."""

from __future__ import annotations

import asyncio
import secrets
import threading

import pytest
from botocore.exceptions import ClientError

from dmcp_aws.local.stack import RunningStack
from dmcp_aws.threaded_aws import POOL_CONNECTIONS, ThreadedSession


def _session(stack: RunningStack) -> ThreadedSession:
    credentials = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
    return ThreadedSession(region_name=stack.region, **credentials)


@pytest.mark.anyio
async def test_operations_are_awaited_and_errors_are_botocores(stack: RunningStack) -> None:
    async with _session(stack).client("sqs", endpoint_url=stack.endpoint_url) as sqs:
        url = (await sqs.create_queue(QueueName=f"threaded-{secrets.token_hex(4)}"))["QueueUrl"]
        await sqs.send_message(QueueUrl=url, MessageBody="hello")
        got = await sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1)
        assert [m["Body"] for m in got["Messages"]] == ["hello"]
        with pytest.raises(ClientError) as refused:
            await sqs.get_queue_url(QueueName="threaded-no-such-queue")
        assert refused.value.response["Error"]["Code"] in {
            "AWS.SimpleQueueService.NonExistentQueue",
            "QueueDoesNotExist",
        }
        assert isinstance(refused.value, sqs.exceptions.QueueDoesNotExist)  # not wrapped: boto3's own
        await sqs.delete_queue(QueueUrl=url)


def test_its_threads_outlive_each_event_loop_run(stack: RunningStack) -> None:
    """A Lambda environment runs each invocation to completion on its loop: the session's threads
    must be reused by the next one, not started anew."""
    session = _session(stack)

    async def one_invocation() -> None:
        async with session.client("sqs", endpoint_url=stack.endpoint_url) as sqs:
            await asyncio.gather(*(sqs.list_queues() for _ in range(3)))

    def aws_threads() -> set[int]:
        return {t.ident or 0 for t in threading.enumerate() if t.name.startswith("dmcp-aws")}

    asyncio.run(one_invocation())
    first = aws_threads()
    for _ in range(5):
        asyncio.run(one_invocation())
    assert first and first <= aws_threads()  # none ended with its loop's run
    assert len(aws_threads()) <= POOL_CONNECTIONS  # one pool for the process, however many runs
