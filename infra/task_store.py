"""The task store of the Tasks extension: a DynamoDB table every server's worker reads and writes
(see `dmcp_aws.tasks.store`), and what a worker needs to run task work from its own queue."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from aws_cdk import RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from constructs import Construct

from dmcp_aws.naming import TASKS_TABLE_VARIABLE
from dmcp_aws.tasks.store import TTL_ATTRIBUTE
from infra.server_worker import ServerWorker

TASK_STORE_ACTIONS: Final = ("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem")
"""What `TaskStore` calls: read a task, create it, change it conditionally (nothing is deleted:
the table's TTL removes expired tasks)."""


@dataclass(frozen=True)
class TaskStoreProps:
    table_name: str


class TaskStore(Construct):
    """Key `id` (the task id), TTL on `expiresAt`, on demand, encrypted with the AWS-managed key,
    point-in-time recovery on: tasks are what clients come back for, hours later."""

    def __init__(self, scope: Construct, construct_id: str, *, props: TaskStoreProps) -> None:
        super().__init__(scope, construct_id)
        self.table = dynamodb.Table(
            self,
            "Table",
            table_name=props.table_name,
            partition_key=dynamodb.Attribute(name="id", type=dynamodb.AttributeType.STRING),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            time_to_live_attribute=TTL_ATTRIBUTE,
            encryption=dynamodb.TableEncryption.AWS_MANAGED,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            removal_policy=RemovalPolicy.DESTROY,
        )

    def serve(self, worker: ServerWorker) -> None:
        """Let `worker` keep tasks here and queue their work on its own request queue."""
        role = worker.function.role
        assert role is not None
        role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="TaskStore", actions=list(TASK_STORE_ACTIONS), resources=[self.table.table_arn]
            )
        )
        worker.request_queue.grant_send_messages(role)  # a task's work is a message of its own
        worker.function.add_environment(TASKS_TABLE_VARIABLE, self.table.table_name)
