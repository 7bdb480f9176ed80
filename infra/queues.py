"""Every SQS queue of the stack, created one way: encrypted at rest (SSE-SQS) and TLS-only.

>>> queue = secure_queue(self, "RequestQueue", spec, dead_letter_queue=...)
"""

from __future__ import annotations

from typing import Any

from aws_cdk import Duration
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from dmcp_aws.deployment import QueueSpec


def secure_queue(scope: Construct, construct_id: str, spec: QueueSpec, **props: Any) -> sqs.Queue:
    """A queue named and shaped by its topology `spec`; `props` adds queue-specific settings."""
    return sqs.Queue(
        scope,
        construct_id,
        queue_name=spec.name,
        fifo=spec.fifo or None,
        encryption=sqs.QueueEncryption.SQS_MANAGED,
        enforce_ssl=True,
        visibility_timeout=Duration.seconds(spec.visibility_timeout_s),
        **props,
    )
