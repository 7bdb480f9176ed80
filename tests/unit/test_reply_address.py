"""Reply-address validation: same account and region, under the prefix, on the right endpoint."""

from __future__ import annotations

import pytest

from dmcp_aws.errors import ForbiddenReplyAddress
from dmcp_aws.reply_address import QueueArn, ReplyRules, validate_reply_to

AWS = ReplyRules(account="123456789012", region="eu-west-1", prefix="dmcp-reply-")
LOCAL = ReplyRules(
    account="000000000000", region="us-east-1", prefix="dmcp-reply-", endpoint_url="http://127.0.0.1:4566"
)


@pytest.mark.parametrize(
    "url",
    [
        "https://sqs.eu-west-1.amazonaws.com/123456789012/dmcp-reply-alice",
        "https://eu-west-1.queue.amazonaws.com/123456789012/dmcp-reply-alice",
        "https://sqs.eu-west-1.amazonaws.com/123456789012/dmcp-reply-ordered.fifo",
    ],
)
def test_allowed_on_aws(url: str) -> None:
    address = validate_reply_to(url, AWS)
    assert (address.account, address.region) == ("123456789012", "eu-west-1")
    assert address.fifo == url.endswith(".fifo")


@pytest.mark.parametrize(
    ("url", "why"),
    [
        (None, "missing"),
        ("", "missing"),
        ("https://sqs.eu-west-1.amazonaws.com/999999999999/dmcp-reply-a", "not in account"),
        ("https://sqs.us-east-1.amazonaws.com/123456789012/dmcp-reply-a", "not in region"),
        ("https://sqs.eu-west-1.amazonaws.com/123456789012/other-queue", "not under the reply prefix"),
        ("http://sqs.eu-west-1.amazonaws.com/123456789012/dmcp-reply-a", "must use https"),
        ("https://evil.example.com/123456789012/dmcp-reply-a", "not an SQS endpoint"),
        ("https://sqs.eu-west-1.amazonaws.com/dmcp-reply-a", "not an SQS queue URL"),
        ("https://sqs.eu-west-1.amazonaws.com/123456789012/dmcp-reply-a?x=1", "not an SQS queue URL"),
        (
            "https://sqs.eu-west-1.amazonaws.com/123456789012/dmcp-reply-" + "a" * 80,
            "not a valid SQS queue name",
        ),
        ("https://sqs.eu-west-1.amazonaws.com/123456789012/dmcp-reply-a b", "not an SQS queue URL"),
        ("https://sqs.eu-west-1.amazonaws.com/123456789012/dmcp-reply-a\n", "not an SQS queue URL"),
        ("https://sqs.eu-west-1.amazonaws.com/123456789012/dmcp-reply-a/", "not an SQS queue URL"),
        ("https://sqs.eu-west-1.amazonaws.com/x/123456789012/dmcp-reply-a", "not an SQS queue URL"),
        ("https://sqs.eu-west-1.amazonaws.com//123456789012/dmcp-reply-a", "not an SQS queue URL"),
        (
            "https://sqs.eu-west-1.amazonaws.com/queue/eu-west-1/123456789012/dmcp-reply-a",
            "not an SQS endpoint",
        ),
        ("https://sqs.eu-west-1.amazonaws.com.evil.com/123456789012/dmcp-reply-a", "not an SQS endpoint"),
    ],
)
def test_forbidden_on_aws(url: str | None, why: str) -> None:
    with pytest.raises(ForbiddenReplyAddress, match=why):
        validate_reply_to(url, AWS)


def test_local_endpoints() -> None:
    assert validate_reply_to("http://127.0.0.1:4566/000000000000/dmcp-reply-a", LOCAL).name == "dmcp-reply-a"
    localstack_path = "http://127.0.0.1:4566/queue/us-east-1/000000000000/dmcp-reply-a"
    assert validate_reply_to(localstack_path, LOCAL).region == "us-east-1"
    with pytest.raises(ForbiddenReplyAddress, match="not in region"):
        validate_reply_to("http://127.0.0.1:4566/queue/eu-west-1/000000000000/dmcp-reply-a", LOCAL)
    with pytest.raises(ForbiddenReplyAddress, match="not on the endpoint"):
        validate_reply_to("http://127.0.0.1:9999/000000000000/dmcp-reply-a", LOCAL)
    with pytest.raises(ForbiddenReplyAddress, match="not on the endpoint"):
        validate_reply_to("https://sqs.us-east-1.amazonaws.com/000000000000/dmcp-reply-a", LOCAL)


def test_queue_arn() -> None:
    arn = QueueArn.parse("arn:aws:sqs:eu-west-1:123456789012:dmcp-example-requests")
    assert (arn.region, arn.account, arn.name) == ("eu-west-1", "123456789012", "dmcp-example-requests")
    with pytest.raises(ValueError, match="not an SQS queue ARN"):
        QueueArn.parse("arn:aws:sns:eu-west-1:123456789012:topic")
