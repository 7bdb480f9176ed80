"""Which reply queues a worker may answer to (pure functions, no I/O).

A worker replies only to a queue in its own account and region whose name starts with the
deployment's reply-queue prefix:

    >>> rules = ReplyRules(account="123456789012", region="us-east-1", prefix="dmcp-reply-")
    >>> validate_reply_to("https://sqs.us-east-1.amazonaws.com/123456789012/dmcp-reply-a", rules)
    ReplyAddress(url=..., account='123456789012', region='us-east-1', name='dmcp-reply-a')
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

from dmcp_aws.errors import ForbiddenReplyAddress

_QUEUE_NAME: Final = re.compile(r"[A-Za-z0-9_-]{1,80}|[A-Za-z0-9_-]{1,75}\.fifo")
_ACCOUNT: Final = re.compile(r"\d{12}")
_AWS_HOSTS: Final = (
    re.compile(r"sqs\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(\.cn)?"),
    re.compile(r"(?P<region>[a-z0-9-]+)\.queue\.amazonaws\.com(\.cn)?"),
)


@dataclass(frozen=True)
class ReplyRules:
    """Where replies may go: the worker's account and region, and the reply-queue name prefix.

    `endpoint_url` is set only for local stacks (moto, LocalStack); reply URLs must then be on it.
    """

    account: str
    region: str
    prefix: str
    endpoint_url: str | None = None


@dataclass(frozen=True)
class ReplyAddress:
    """A validated reply queue."""

    url: str
    account: str
    region: str
    name: str

    @property
    def fifo(self) -> bool:
        return self.name.endswith(".fifo")


@dataclass(frozen=True)
class QueueArn:
    """The parts of an SQS queue ARN."""

    region: str
    account: str
    name: str

    @classmethod
    def parse(cls, arn: str) -> QueueArn:
        parts = arn.split(":")
        if len(parts) != 6 or parts[0] != "arn" or parts[2] != "sqs":
            raise ValueError(f"not an SQS queue ARN: {arn!r}")
        return cls(region=parts[3], account=parts[4], name=parts[5])


def validate_reply_to(url: str | None, rules: ReplyRules) -> ReplyAddress:
    """Check `dmcp.reply-to` against `rules`; raise `ForbiddenReplyAddress` saying why not."""
    if not url:
        raise ForbiddenReplyAddress("dmcp.reply-to is missing: the request names no reply queue")
    if not url.isprintable() or any(c.isspace() for c in url):
        raise ForbiddenReplyAddress(f"dmcp.reply-to is not an SQS queue URL: {url!r}")
    parts = urlsplit(url)
    segments = parts.path.split("/")[1:]
    localstack_path = len(segments) == 4 and segments[0] == "queue"
    if (len(segments) != 2 and not localstack_path) or "" in segments or parts.query or parts.fragment:
        raise ForbiddenReplyAddress(f"dmcp.reply-to is not an SQS queue URL: {url!r}")
    account, name = segments[-2], segments[-1]
    region = _region_of(parts.scheme, parts.netloc, segments, rules, url)
    if not _ACCOUNT.fullmatch(account) or account != rules.account:
        raise ForbiddenReplyAddress(f"reply queue {url!r} is not in account {rules.account}")
    if region != rules.region:
        raise ForbiddenReplyAddress(f"reply queue {url!r} is not in region {rules.region}")
    if not _QUEUE_NAME.fullmatch(name):
        raise ForbiddenReplyAddress(f"reply queue name {name!r} is not a valid SQS queue name")
    if not name.startswith(rules.prefix):
        raise ForbiddenReplyAddress(f"reply queue {name!r} is not under the reply prefix {rules.prefix!r}")
    return ReplyAddress(url=url, account=account, region=region, name=name)


def _region_of(scheme: str, netloc: str, segments: list[str], rules: ReplyRules, url: str) -> str:
    """The region a queue URL points at, if its host is one this worker may talk to."""
    if rules.endpoint_url is not None:
        endpoint = urlsplit(rules.endpoint_url)
        if (scheme, netloc) != (endpoint.scheme, endpoint.netloc):
            raise ForbiddenReplyAddress(f"reply queue {url!r} is not on the endpoint {rules.endpoint_url}")
        # LocalStack's path strategy: /queue/<region>/<account>/<name>.
        if len(segments) == 4 and segments[0] == "queue":
            return segments[1]
        return rules.region
    for pattern in _AWS_HOSTS:
        if (match := pattern.fullmatch(netloc)) and len(segments) == 2:
            if scheme != "https":
                raise ForbiddenReplyAddress(f"reply queue {url!r} must use https")
            return match["region"]
    raise ForbiddenReplyAddress(f"reply queue {url!r} is not an SQS endpoint")
