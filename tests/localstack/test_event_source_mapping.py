"""LocalStack's real SQS event source mapping driving handlers run by the dmcp-host executor."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.localstack.support import wait_for

pytestmark = pytest.mark.localstack

APP = """
import json, os, time, boto3
sqs = boto3.client("sqs")  # endpoint and credentials come from the function's environment
OUT = os.environ["OUT_QUEUE_URL"]

def handler(event, context):
    failures = []
    for record in event["Records"]:
        body = record["body"]
        if body == "poison":
            failures.append({"itemIdentifier": record["messageId"]})
            continue
        if body == "raise":
            raise RuntimeError("the whole batch fails")
        if body == "slow":
            time.sleep(30)
        sqs.send_message(QueueUrl=OUT, MessageBody=json.dumps({"body": body, "batch": len(event["Records"])}))
    return {"batchItemFailures": failures}
"""


class Queues:
    """A source queue with a DLQ, an output queue, and helpers around them."""

    def __init__(self, sqs: Any, name: str, visibility_s: int, max_receive: int) -> None:
        self.sqs = sqs
        self.dlq = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
        dlq_arn = self.arn(self.dlq)
        self.source = sqs.create_queue(
            QueueName=f"{name}-in",
            Attributes={
                "VisibilityTimeout": str(visibility_s),
                "RedrivePolicy": json.dumps(
                    {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_receive)}
                ),
            },
        )["QueueUrl"]
        self.out = sqs.create_queue(QueueName=f"{name}-out")["QueueUrl"]

    def arn(self, url: str) -> str:
        return str(
            self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        )

    def drain(self, url: str, expected: int, timeout: float = 30.0) -> list[str]:
        bodies: list[str] = []

        def enough() -> bool:
            for message in self.sqs.receive_message(
                QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1
            ).get("Messages", []):
                bodies.append(message["Body"])
                self.sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
            return len(bodies) >= expected

        wait_for(enough, timeout=timeout, interval=0)
        return bodies

    def in_flight(self) -> int:
        attributes = self.sqs.get_queue_attributes(QueueUrl=self.source, AttributeNames=["All"])["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"]) + int(
            attributes["ApproximateNumberOfMessagesNotVisible"]
        )


def mapped_function(
    aws: Callable[[str], Any],
    make_function: Callable[..., str],
    name: str,
    timeout_s: int,
    visibility_s: int,
    max_receive: int,
) -> Queues:
    queues = Queues(aws("sqs"), name, visibility_s, max_receive)
    make_function(
        name, {"app.py": APP}, Timeout=timeout_s, Environment={"Variables": {"OUT_QUEUE_URL": queues.out}}
    )
    lam = aws("lambda")
    uuid = lam.create_event_source_mapping(
        FunctionName=name,
        EventSourceArn=queues.arn(queues.source),
        BatchSize=10,
        MaximumBatchingWindowInSeconds=1,
        FunctionResponseTypes=["ReportBatchItemFailures"],
    )["UUID"]
    wait_for(lambda: lam.get_event_source_mapping(UUID=uuid)["State"] == "Enabled")
    return queues


def test_batch_with_partial_failure(aws: Callable[[str], Any], make_function: Callable[..., str]) -> None:
    queues = mapped_function(aws, make_function, "esm-partial", timeout_s=3, visibility_s=3, max_receive=1)
    started = time.perf_counter()
    queues.sqs.send_message(QueueUrl=queues.source, MessageBody="first")
    assert [json.loads(b)["body"] for b in queues.drain(queues.out, 1)] == ["first"]
    round_trip = time.perf_counter() - started
    print(f"\nESM round trip (cold environment): {round_trip:.2f}s")

    entries = [{"Id": str(i), "MessageBody": body} for i, body in enumerate(["a", "b", "poison", "c"])]
    queues.sqs.send_message_batch(QueueUrl=queues.source, Entries=entries)
    done = [json.loads(b) for b in queues.drain(queues.out, 3)]
    assert sorted(d["body"] for d in done) == ["a", "b", "c"]
    assert any(d["batch"] > 1 for d in done), "the mapping should deliver the records as one batch"
    # only the reported record is retried, and with maxReceiveCount 1 it lands in the DLQ
    assert queues.drain(queues.dlq, 1) == ["poison"]
    wait_for(lambda: queues.in_flight() == 0)
    assert queues.drain(queues.out, 0, timeout=1) == []  # a, b, c were not redelivered


def test_function_error_and_timeout_fail_the_batch(
    aws: Callable[[str], Any], make_function: Callable[..., str]
) -> None:
    queues = mapped_function(aws, make_function, "esm-errors", timeout_s=1, visibility_s=2, max_receive=1)
    queues.sqs.send_message(QueueUrl=queues.source, MessageBody="raise")
    assert queues.drain(queues.dlq, 1) == ["raise"]
    queues.sqs.send_message(QueueUrl=queues.source, MessageBody="slow")
    assert queues.drain(queues.dlq, 1) == ["slow"]
    queues.sqs.send_message(QueueUrl=queues.source, MessageBody="fine")
    assert [json.loads(b)["body"] for b in queues.drain(queues.out, 1)] == ["fine"]
    assert queues.drain(queues.out, 0, timeout=1) == []
