"""The Lambda SQS event the poller builds, and how it reads a partial-batch response."""

from __future__ import annotations

from dmcp_aws.local.lambda_event import LocalLambdaContext, failed_message_ids, lambda_event, lambda_record

ARN = "arn:aws:sqs:us-east-1:123456789012:dmcp-example-requests"
MESSAGE = {
    "MessageId": "m1",
    "ReceiptHandle": "rh",
    "Body": "{}",
    "MD5OfBody": "99914b932bd37a50b983c5e7c90ae93b",
    "MD5OfMessageAttributes": "abc",
    "Attributes": {"ApproximateReceiveCount": "2", "SentTimestamp": "1", "SenderId": "AID", "QueueArn": "x"},
    "MessageAttributes": {"dmcp.version": {"DataType": "String", "StringValue": "1"}},
}


def test_record_has_the_exact_lambda_fields() -> None:
    assert lambda_record(MESSAGE, ARN, "us-east-1") == {
        "messageId": "m1",
        "receiptHandle": "rh",
        "body": "{}",
        "attributes": {"ApproximateReceiveCount": "2", "SentTimestamp": "1", "SenderId": "AID"},
        "messageAttributes": {
            "dmcp.version": {
                "stringValue": "1",
                "stringListValues": [],
                "binaryListValues": [],
                "dataType": "String",
            }
        },
        "md5OfBody": "99914b932bd37a50b983c5e7c90ae93b",
        "md5OfMessageAttributes": "abc",
        "eventSource": "aws:sqs",
        "eventSourceARN": ARN,
        "awsRegion": "us-east-1",
    }


def test_partial_batch_response_is_read_like_lambda() -> None:
    event = lambda_event([MESSAGE, {**MESSAGE, "MessageId": "m2"}], ARN, "us-east-1")
    assert failed_message_ids({"batchItemFailures": []}, event) == set()
    assert failed_message_ids(None, event) == set()
    assert failed_message_ids({"batchItemFailures": [{"itemIdentifier": "m2"}]}, event) == {"m2"}
    everything = {"m1", "m2"}
    assert failed_message_ids({"batchItemFailures": [{"itemIdentifier": "nope"}]}, event) == everything
    assert failed_message_ids({"batchItemFailures": [{"itemIdentifier": ""}]}, event) == everything
    assert failed_message_ids({"batchItemFailures": "m1"}, event) == everything
    assert failed_message_ids("not a dict", event) == everything


def test_context_reports_remaining_time() -> None:
    context = LocalLambdaContext("dmcp-example", 512, 30, "us-east-1", "123456789012")
    assert 29_000 < context.get_remaining_time_in_millis() <= 30_000
    assert context.invoked_function_arn == "arn:aws:lambda:us-east-1:123456789012:function:dmcp-example"
