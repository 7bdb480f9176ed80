"""The request bus: the SNS topic every request is published to, encrypted and TLS-only."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from constructs import Construct

AWS_MANAGED_SNS_KEY = "alias/aws/sns"


@dataclass(frozen=True)
class RequestBusProps:
    """`topic_name` comes from the deployment's topology (`<deployment>-requests`)."""

    topic_name: str


class RequestBus(Construct):
    """The request topic; subscriptions filter on the `mcp.server` message attribute."""

    def __init__(self, scope: Construct, construct_id: str, *, props: RequestBusProps) -> None:
        super().__init__(scope, construct_id)
        self.topic = sns.Topic(
            self,
            "Topic",
            topic_name=props.topic_name,
            master_key=kms.Alias.from_alias_name(self, "AwsManagedKey", AWS_MANAGED_SNS_KEY),
            enforce_ssl=True,
        )

    def allow_publish(self, principal: iam.IPrincipal, sid: str) -> None:
        """Let `principal` publish requests (topic policy: works across accounts)."""
        self.topic.add_to_resource_policy(
            iam.PolicyStatement(
                sid=sid, principals=[principal], actions=["sns:Publish"], resources=[self.topic.topic_arn]
            )
        )
