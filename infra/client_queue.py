"""A provisioned client: its reply queue under the reply prefix and what its principal may do.

The principal may publish to the request topic and receive, delete, change the visibility of
and read attributes of its own reply queue (resource policies, so they work across accounts). An
identity policy with the same rights, plus managing its own per-connection reply queues
(`<reply prefix>conn-<client>_*`, never another client's), is created for the client's roles or
users to attach.
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Duration
from aws_cdk import aws_iam as iam
from constructs import Construct

from dmcp_aws.deployment import ClientSpec, QueueSpec
from infra.grants import CONNECTION_QUEUE_ACTIONS, client_connection_queues_arn, client_reader_statement
from infra.nag import acknowledge, nag_arn
from infra.principals import client_principal
from infra.queues import secure_queue
from infra.request_bus import RequestBus

REPLY_RETENTION = Duration.hours(1)
"""Replies are read within a request's lifetime; an unread one is stale after an hour."""


@dataclass(frozen=True)
class ClientQueueProps:
    client: ClientSpec
    queue: QueueSpec
    bus: RequestBus
    reply_prefix: str
    connection_prefix: str
    """`Deployment.client_connection_prefix(client)`: the client's per-connection queues' prefix."""


class ClientQueue(Construct):
    """The reply queue of one provisioned client, and its grants."""

    def __init__(self, scope: Construct, construct_id: str, *, props: ClientQueueProps) -> None:
        super().__init__(scope, construct_id)
        if not props.queue.name.startswith(props.reply_prefix):
            raise ValueError(
                f"reply queue {props.queue.name} is not under the reply prefix {props.reply_prefix}"
            )
        if not props.connection_prefix.startswith(props.reply_prefix) or props.queue.name.startswith(
            props.connection_prefix
        ):
            raise ValueError(
                f"connection prefix {props.connection_prefix} must be under the reply prefix "
                f"{props.reply_prefix} and must not cover the reply queue {props.queue.name}"
            )
        self.principal = client_principal(props.client.principal)
        self.queue = secure_queue(self, "ReplyQueue", props.queue, retention_period=REPLY_RETENTION)
        self.queue.add_to_resource_policy(client_reader_statement(self.principal, self.queue))
        props.bus.allow_publish(self.principal, sid=f"ClientPublishes{_pascal(props.client.name)}")
        self.policy = self._identity_policy(props)
        acknowledge(
            self.queue,
            "AwsSolutions-SQS3",
            None,
            "A reply queue is read only by its own client, which deletes every message it receives; "
            "a reply it "
            "cannot use is dropped by design, so a dead-letter queue would only collect stale replies.",
        )

    def _identity_policy(self, props: ClientQueueProps) -> iam.ManagedPolicy:
        policy = iam.ManagedPolicy(
            self,
            "Policy",
            description=f"dMCP client {props.client.name}: publish requests, read its replies",
            statements=[
                iam.PolicyStatement(
                    sid="PublishRequests", actions=["sns:Publish"], resources=[props.bus.topic.topic_arn]
                ),
                client_reader_statement(None, self.queue),
                iam.PolicyStatement(
                    sid="OwnPerConnectionReplyQueues",
                    actions=list(CONNECTION_QUEUE_ACTIONS),
                    resources=[client_connection_queues_arn(self, props.connection_prefix)],
                ),
            ],
        )
        acknowledge(
            policy,
            "AwsSolutions-IAM5",
            f"Resource::{nag_arn(policy, props.connection_prefix + '*')}",
            "A client creates one reply queue per connection, named with a random suffix under its own "
            "connection prefix, so the names cannot be listed in advance; the pattern covers only this "
            "client's connection queues, never a provisioned reply queue or another client's queues.",
        )
        return policy


def _pascal(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("-"))
