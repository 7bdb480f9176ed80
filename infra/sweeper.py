"""The orphan sweeper: a scheduled function deleting per-connection reply queues no client touches.

A client killed with SIGKILL cannot delete its per-connection reply queue; a live one touches it
every few minutes. Every `schedule` the function `dmcp_aws.sweep.handler` lists the queues under
`<reply prefix>conn-` and deletes those idle for `idle_s` (see `dmcp_aws.sweep`). It may list
queues (`sqs:ListQueues` has no resource-level permissions), and read attributes of and delete
only queues under the connection prefix: never a request queue, a DLQ or a provisioned reply
queue.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from aws_cdk import Duration
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from dmcp_aws.naming import CONNECTION_QUEUE_PREFIX
from infra.config import SWEEPER_HANDLER
from infra.grants import SWEEPER_ACTIONS, queue_name_arn
from infra.nag import acknowledge, nag_arn
from infra.server_worker import ARCHITECTURES, RUNTIME

SWEEPER_FUNCTION_SUFFIX: Final = "-orphan_sweeper"
"""Appended to the deployment's name: server names have no `_`, so no worker (`<name>-<server>`)
can have the sweeper's function name."""


@dataclass(frozen=True)
class OrphanSweeperProps:
    """What to sweep, how idle a queue must be, how often, and the code asset holding the handler."""

    connection_prefix: str
    """`Deployment.connection_queue_prefix`: every client's per-connection queues."""
    idle_s: int
    code: lambda_.Code
    function_name: str
    architecture: str = "arm64"
    schedule: Duration = field(default_factory=lambda: Duration.minutes(15))
    timeout: Duration = field(default_factory=lambda: Duration.minutes(5))
    memory_mb: int = 256
    log_retention: logs.RetentionDays = logs.RetentionDays.ONE_MONTH


class OrphanSweeper(Construct):
    """The sweeper function, its least-privilege role and log group, and its EventBridge schedule."""

    def __init__(self, scope: Construct, construct_id: str, *, props: OrphanSweeperProps) -> None:
        super().__init__(scope, construct_id)
        if not props.connection_prefix.endswith(CONNECTION_QUEUE_PREFIX):
            raise ValueError(
                f"the sweeper sweeps connection queues only; {props.connection_prefix!r} does not end "
                f"with {CONNECTION_QUEUE_PREFIX!r}"
            )
        log_group = logs.LogGroup(
            self, "Logs", log_group_name=f"/aws/lambda/{props.function_name}", retention=props.log_retention
        )
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description="dMCP orphan sweeper: list queues, delete idle per-connection reply queues, its logs",
        )
        log_group.grant_write(self.role)
        self.role.add_to_principal_policy(
            iam.PolicyStatement(sid="ListQueues", actions=["sqs:ListQueues"], resources=["*"])
        )
        self.role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="SweepConnectionQueues",
                actions=list(SWEEPER_ACTIONS),
                resources=[queue_name_arn(self, f"{props.connection_prefix}*")],
            )
        )
        self.function = lambda_.Function(
            self,
            "Function",
            function_name=props.function_name,
            description="dMCP: deletes per-connection reply queues their clients left behind",
            runtime=RUNTIME,
            architecture=ARCHITECTURES[props.architecture],
            handler=SWEEPER_HANDLER,
            code=props.code,
            memory_size=props.memory_mb,
            timeout=props.timeout,
            environment={
                "DMCP_CONNECTION_PREFIX": props.connection_prefix,
                "DMCP_ORPHAN_QUEUE_IDLE_S": str(props.idle_s),
                "POWERTOOLS_SERVICE_NAME": "dmcp-sweeper",
                "POWERTOOLS_LOG_LEVEL": "INFO",
            },
            role=self.role,
            log_group=log_group,
        )
        self.rule = events.Rule(
            self,
            "Schedule",
            description=f"Sweep orphaned dMCP connection queues ({props.connection_prefix}*)",
            schedule=events.Schedule.rate(props.schedule),
            targets=[targets.LambdaFunction(self.function, retry_attempts=0)],
        )
        self._suppress(props)

    def _suppress(self, props: OrphanSweeperProps) -> None:
        acknowledge(
            self.role,
            "AwsSolutions-IAM5",
            "Resource::*",
            "SQS ListQueues supports no resource-level permissions, so the sweeper needs it on '*'; it only "
            "lists queue URLs, and the sweeper reads and deletes only queues under the connection prefix.",
        )
        acknowledge(
            self.role,
            "AwsSolutions-IAM5",
            f"Resource::{nag_arn(self, props.connection_prefix + '*')}",
            "Per-connection reply queues are created by clients at run time with random names, so only a "
            "pattern can name them; it covers the connection prefix alone, never a request queue, a "
            "dead-letter queue or a provisioned reply queue.",
        )
        acknowledge(
            self.function,
            "AwsSolutions-L1",
            None,
            "Python 3.13 is pinned on purpose: the sweeper runs from the workers' asset, whose wheels "
            "(cp313) and bytecode are built for it; the runtime and the bundle change together.",
        )
