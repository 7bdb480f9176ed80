"""Exceptions for each way a dMCP message can be wrong.

Every exception carries a short machine-readable `reason` (it becomes the `dmcp.dlq-reason`
attribute when a message is moved to a dead-letter queue) and a human-readable message.
"""

from __future__ import annotations

from mcp_types import RequestId


class WireError(Exception):
    """A message that does not follow the dMCP wire format."""

    reason = "wire-error"

    def __init__(self, message: str, *, request_id: RequestId | None = None) -> None:
        super().__init__(message)
        self.request_id = request_id
        """The JSON-RPC id, when it could be read: such a message can still be answered."""


class UnsupportedWireVersion(WireError):
    """`dmcp.version` is missing or names a version this library does not speak."""

    reason = "unsupported-wire-version"


class MalformedBody(WireError):
    """The body is not UTF-8 JSON, or not a single JSON-RPC message."""

    reason = "malformed-body"


class MissingAttribute(WireError):
    """A message attribute the wire format requires is absent."""

    reason = "missing-attribute"


class PayloadTooLarge(WireError):
    """The encoded message is larger than SQS/SNS accept."""

    reason = "payload-too-large"


class ForbiddenReplyAddress(WireError):
    """`dmcp.reply-to` is not a queue this deployment may reply to."""

    reason = "forbidden-reply-address"


class Unanswerable(WireError):
    """No reply can carry the answer (its id is too large or not encodable as UTF-8 JSON)."""

    reason = "unanswerable"
