"""The IAM statements between the parts: who may send where.

A worker may send only to reply queues (names under the deployment's reply prefix) and to its
own dead-letter queue; a client may publish requests and read only its own reply queue, and,
for per-connection reply queues, manage only queues under its own connection prefix
(`<reply prefix>conn-<client>_`, `Deployment.client_connection_prefix`), never another client's.
"""

from __future__ import annotations

from typing import Final

from aws_cdk import ArnFormat, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_sqs as sqs
from constructs import IConstruct

from dmcp_aws.naming import CONNECTION_QUEUE_PREFIX

__all__ = [
    "CONNECTION_QUEUE_PREFIX",
    "client_connection_queues_arn",
    "connection_queues_arn",
    "grant_worker",
    "reply_queues_arn",
]

CLIENT_READ_ACTIONS: Final = (
    "sqs:ReceiveMessage",
    "sqs:DeleteMessage",
    "sqs:ChangeMessageVisibility",
    "sqs:GetQueueAttributes",
    "sqs:GetQueueUrl",
)
"""What a client does on a reply queue it reads (the transport changes the visibility of a
reply it hands back to the queue)."""
CONNECTION_QUEUE_ACTIONS: Final = (
    "sqs:CreateQueue",
    "sqs:DeleteQueue",
    "sqs:SetQueueAttributes",
    *CLIENT_READ_ACTIONS,
)
"""What a client does on its own per-connection reply queues: create them (with SSE and a
TLS-only policy), touch them (`SetQueueAttributes`, its sign of life for the sweeper), read
them and delete them on close."""
SWEEPER_ACTIONS: Final = ("sqs:GetQueueAttributes", "sqs:DeleteQueue")
"""What the orphan sweeper does on per-connection reply queues (listing needs `*`)."""


def queue_name_arn(scope: IConstruct, name_pattern: str) -> str:
    """`arn:<partition>:sqs:<region>:<account>:<name_pattern>` for this stack."""
    return Stack.of(scope).format_arn(
        service="sqs", resource=name_pattern, arn_format=ArnFormat.NO_RESOURCE_NAME
    )


def reply_queues_arn(scope: IConstruct, reply_prefix: str) -> str:
    return queue_name_arn(scope, f"{reply_prefix}*")


def connection_queues_arn(scope: IConstruct, reply_prefix: str) -> str:
    """Every client's per-connection reply queues (`<reply prefix>conn-*`): the sweeper's scope."""
    return queue_name_arn(scope, f"{reply_prefix}{CONNECTION_QUEUE_PREFIX}*")


def client_connection_queues_arn(scope: IConstruct, client_connection_prefix: str) -> str:
    """One client's per-connection reply queues (`<reply prefix>conn-<client>_*`)."""
    return queue_name_arn(scope, f"{client_connection_prefix}*")


def grant_worker(role: iam.IRole, *, reply_prefix: str, dead_letter_queue: sqs.IQueue) -> None:
    """Replies go to queues under the prefix only; poison messages to the worker's own DLQ.

    Receiving from the request queue is granted by its event source (`grant_consume_messages`).
    """
    role.add_to_principal_policy(
        iam.PolicyStatement(
            sid="ReplyUnderPrefix",
            actions=["sqs:SendMessage"],
            resources=[reply_queues_arn(role, reply_prefix)],
        )
    )
    role.add_to_principal_policy(
        iam.PolicyStatement(
            sid="OwnDeadLetterQueue",
            actions=["sqs:SendMessage", "sqs:GetQueueUrl"],
            resources=[dead_letter_queue.queue_arn],
        )
    )


def client_reader_statement(principal: iam.IPrincipal | None, queue: sqs.IQueue) -> iam.PolicyStatement:
    """Read and delete messages of one reply queue (a queue policy when `principal` is given)."""
    return iam.PolicyStatement(
        sid="ClientReadsOwnReplies",
        principals=[principal] if principal else None,
        actions=list(CLIENT_READ_ACTIONS),
        resources=[queue.queue_arn],
    )
