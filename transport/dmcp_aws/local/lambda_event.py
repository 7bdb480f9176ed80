"""Build the Lambda SQS event from `ReceiveMessage` results (pure functions).

The shape is the one the Lambda SQS event source mapping delivers: camel-cased record fields,
`messageAttributes` with `stringValue`/`dataType`, only the system `attributes` Lambda passes on.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from time import monotonic
from typing import Any, Final

LAMBDA_SYSTEM_ATTRIBUTES: Final = (
    "ApproximateReceiveCount",
    "SentTimestamp",
    "SenderId",
    "ApproximateFirstReceiveTimestamp",
    "AWSTraceHeader",
    "SequenceNumber",
    "MessageGroupId",
    "MessageDeduplicationId",
)


def lambda_record(message: Mapping[str, Any], queue_arn: str, region: str) -> dict[str, Any]:
    """One SQS `ReceiveMessage` message as a Lambda SQS event record."""
    record: dict[str, Any] = {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message.get("Body", ""),
        "attributes": {
            k: v for k, v in message.get("Attributes", {}).items() if k in LAMBDA_SYSTEM_ATTRIBUTES
        },
        "messageAttributes": {
            name: _lambda_attribute(value) for name, value in message.get("MessageAttributes", {}).items()
        },
        "md5OfBody": message.get("MD5OfBody"),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    }
    if "MD5OfMessageAttributes" in message:
        record["md5OfMessageAttributes"] = message["MD5OfMessageAttributes"]
    return record


def lambda_event(messages: Sequence[Mapping[str, Any]], queue_arn: str, region: str) -> dict[str, Any]:
    """The event one invocation receives for a batch of messages."""
    return {"Records": [lambda_record(m, queue_arn, region) for m in messages]}


def failed_message_ids(response: Any, event: Mapping[str, Any]) -> set[str]:
    """Which records to leave for redelivery, read the way Lambda reads a partial-batch response.

    An invalid response (not a dict, unknown ids, malformed entries) fails the whole batch.
    """
    everything = {r["messageId"] for r in event["Records"]}
    if response is None:
        return set()
    if not isinstance(response, Mapping) or not isinstance(response.get("batchItemFailures", []), list):
        return everything
    failed: set[str] = set()
    for item in response.get("batchItemFailures", []):
        identifier = item.get("itemIdentifier") if isinstance(item, Mapping) else None
        if not isinstance(identifier, str) or identifier not in everything:
            return everything
        failed.add(identifier)
    return failed


def _lambda_attribute(value: Mapping[str, Any]) -> dict[str, Any]:
    attribute: dict[str, Any] = {
        "stringListValues": [],
        "binaryListValues": [],
        "dataType": value["DataType"],
    }
    if "StringValue" in value:
        attribute["stringValue"] = value["StringValue"]
    if "BinaryValue" in value:
        attribute["binaryValue"] = value["BinaryValue"]
    return attribute


@dataclass
class LocalLambdaContext:
    """The parts of Lambda's context object that handlers and powertools read."""

    function_name: str
    memory_limit_in_mb: int
    timeout_s: int
    region: str
    account: str
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"
    _started: float = field(default_factory=monotonic)

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:{self.region}:{self.account}:function:{self.function_name}"

    @property
    def log_group_name(self) -> str:
        return f"/aws/lambda/{self.function_name}"

    @property
    def log_stream_name(self) -> str:
        return "local"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.timeout_s - (monotonic() - self._started)) * 1000))
