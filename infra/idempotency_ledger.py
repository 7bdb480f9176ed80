"""The request ledger: a DynamoDB table powertools' idempotency layer keeps (`dmcp.conn`, id) in,
so a redelivered request runs once (see `dmcp_aws.idempotency`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from aws_cdk import RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from constructs import Construct

from infra.nag import acknowledge

LEDGER_ACTIONS: Final = ("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem")
"""What powertools' `DynamoDBPersistenceLayer` calls: claim, read, complete, release."""


@dataclass(frozen=True)
class IdempotencyLedgerProps:
    table_name: str


class IdempotencyLedger(Construct):
    """Key `id` (string), TTL on `expiration`, on-demand, encrypted with the AWS-managed key."""

    def __init__(self, scope: Construct, construct_id: str, *, props: IdempotencyLedgerProps) -> None:
        super().__init__(scope, construct_id)
        self.table = dynamodb.Table(
            self,
            "Table",
            table_name=props.table_name,
            partition_key=dynamodb.Attribute(name="id", type=dynamodb.AttributeType.STRING),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            time_to_live_attribute="expiration",
            encryption=dynamodb.TableEncryption.AWS_MANAGED,
            removal_policy=RemovalPolicy.DESTROY,
        )
        acknowledge(
            self.table,
            "AwsSolutions-DDB3",
            None,
            "The ledger only holds answers to recent requests and every entry expires within an hour; "
            "restoring it to a past point in time has no use, so point-in-time recovery would be pure cost.",
        )

    def grant_worker(self, role: iam.IRole) -> None:
        """Item reads and writes on this table only (no scans, queries or table management)."""
        role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="RequestLedger", actions=list(LEDGER_ACTIONS), resources=[self.table.table_arn]
            )
        )
