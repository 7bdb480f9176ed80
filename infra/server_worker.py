"""A server worker: request queue + DLQ, its filtered subscription, the Lambda function and alarms.

The subscription has the DLQ as its own dead-letter queue too (SNS redrive): a request SNS cannot
deliver to the request queue lands there instead of being lost without trace.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from dmcp_aws.deployment import VISIBILITY_PER_TIMEOUT, QueueSpec, WorkerSpec
from infra.grants import grant_worker
from infra.idempotency_ledger import IdempotencyLedger
from infra.nag import acknowledge, nag_arn
from infra.queues import secure_queue

DLQ_RETENTION = Duration.days(14)
RUNTIME = lambda_.Runtime.PYTHON_3_13
"""Must match `BundleSpec.python_version`, the Python the asset's wheels and bytecode are built for."""


ARCHITECTURES: Final = {"arm64": lambda_.Architecture.ARM_64, "x86_64": lambda_.Architecture.X86_64}


@dataclass(frozen=True)
class ServerWorkerProps:
    """A worker of the topology, with the queues and subscription it owns."""

    worker: WorkerSpec
    request_queue: QueueSpec
    dead_letter_queue: QueueSpec
    filter_policy: dict[str, Any]
    topic: sns.ITopic
    reply_prefix: str
    code: lambda_.Code
    function_name: str
    architecture: str = "arm64"
    """`arm64` or `x86_64`: must match the platform the code asset was bundled for."""
    ledger: IdempotencyLedger | None = None
    """The request ledger (idempotency); None when the deployment switches it off."""
    log_retention: logs.RetentionDays = logs.RetentionDays.ONE_MONTH
    oldest_message_alarm: Duration = field(default_factory=lambda: Duration.minutes(5))


class ServerWorker(Construct):
    """Everything one MCP server needs to be served from the request topic."""

    def __init__(self, scope: Construct, construct_id: str, *, props: ServerWorkerProps) -> None:
        super().__init__(scope, construct_id)
        spec = props.worker.spec
        if props.request_queue.visibility_timeout_s < VISIBILITY_PER_TIMEOUT * spec.timeout_s:
            raise ValueError(
                f"{props.request_queue.name}: visibility timeout must be >= 6 x the function timeout"
            )

        self.dead_letter_queue = secure_queue(
            self, "DeadLetterQueue", props.dead_letter_queue, retention_period=DLQ_RETENTION
        )
        self.request_queue = secure_queue(
            self,
            "RequestQueue",
            props.request_queue,
            dead_letter_queue=sqs.DeadLetterQueue(
                queue=self.dead_letter_queue, max_receive_count=props.request_queue.max_receive_count or 3
            ),
        )
        props.topic.add_subscription(
            subscriptions.SqsSubscription(
                self.request_queue,
                raw_message_delivery=True,
                filter_policy={
                    k: sns.SubscriptionFilter(conditions=v) for k, v in props.filter_policy.items()
                },
                # SNS redrive: what SNS cannot deliver to the request queue (the queue deleted, its
                # policy broken) is kept here; CDK adds the DLQ policy letting the topic send.
                dead_letter_queue=self.dead_letter_queue,
            )
        )
        self.function = self._function(props)
        # With SnapStart the queue feeds the published version's alias: only versions are restored
        # from a snapshot.
        self.target: lambda_.IFunction = self.function
        if spec.snap_start:
            self.target = lambda_.Alias(
                self, "Live", alias_name="live", version=self.function.current_version
            )
        self.target.add_event_source(
            sources.SqsEventSource(
                self.request_queue,
                batch_size=spec.batch_size,
                max_batching_window=Duration.seconds(spec.batching_window_s)
                if spec.batching_window_s
                else None,
                report_batch_item_failures=True,
                max_concurrency=spec.max_concurrency,
            )
        )
        assert self.function.role is not None
        grant_worker(
            self.function.role, reply_prefix=props.reply_prefix, dead_letter_queue=self.dead_letter_queue
        )
        if props.ledger is not None:
            props.ledger.grant_worker(self.function.role)
        self._alarms(props)
        self._suppress(props)

    def _function(self, props: ServerWorkerProps) -> lambda_.Function:
        spec = props.worker.spec
        log_group = logs.LogGroup(
            self, "Logs", log_group_name=f"/aws/lambda/{props.function_name}", retention=props.log_retention
        )
        role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"dMCP worker {props.worker.server}: its queues, replies under the prefix, its logs",
        )
        log_group.grant_write(role)
        environment = {
            "DMCP_REPLY_PREFIX": props.reply_prefix,
            "POWERTOOLS_SERVICE_NAME": f"dmcp-{props.worker.server}",
            "POWERTOOLS_LOG_LEVEL": "INFO",
            **props.worker.environment,
        }
        if props.ledger is not None:
            environment["DMCP_IDEMPOTENCY_TABLE"] = props.ledger.table.table_name
        return lambda_.Function(
            self,
            "Function",
            function_name=props.function_name,
            description=f"dMCP worker for MCP server {props.worker.server!r}",
            runtime=RUNTIME,
            architecture=ARCHITECTURES[props.architecture],
            handler=props.worker.handler,
            code=props.code,
            memory_size=spec.memory_mb,
            timeout=Duration.seconds(spec.timeout_s),
            environment=environment,
            role=role,
            tracing=lambda_.Tracing.ACTIVE,
            log_group=log_group,
            snap_start=lambda_.SnapStartConf.ON_PUBLISHED_VERSIONS if spec.snap_start else None,
        )

    def _alarms(self, props: ServerWorkerProps) -> None:
        name = props.worker.server
        self.dead_letter_alarm = cloudwatch.Alarm(
            self,
            "DeadLetterAlarm",
            alarm_description=f"Messages for {name!r} reached its dead-letter queue",
            metric=self.dead_letter_queue.metric_approximate_number_of_messages_visible(
                period=Duration.minutes(1), statistic="Maximum"
            ),
            threshold=1,
            evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        threshold = props.oldest_message_alarm.to_seconds()
        self.oldest_message_alarm = cloudwatch.Alarm(
            self,
            "OldestMessageAlarm",
            alarm_description=f"Requests for {name!r} wait longer than {threshold:g} s",
            metric=self.request_queue.metric_approximate_age_of_oldest_message(
                period=Duration.minutes(1), statistic="Maximum"
            ),
            threshold=threshold,
            evaluation_periods=3,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )

    def _suppress(self, props: ServerWorkerProps) -> None:
        assert self.function.role is not None
        acknowledge(
            self.function.role,
            "AwsSolutions-IAM5",
            f"Resource::{nag_arn(self, props.reply_prefix + '*')}",
            "Reply queues are created per client and per connection at run time; the worker may send only to "
            "queue names under the deployment's reply prefix, which this resource pattern pins.",
        )
        acknowledge(
            self.function.role,
            "AwsSolutions-IAM5",
            "Resource::*",
            "X-Ray's PutTraceSegments and PutTelemetryRecords support no resource-level permissions, so "
            "active tracing (powertools Tracer) needs them on '*'; they let the function write traces only.",
        )
        acknowledge(
            self.function,
            "AwsSolutions-L1",
            None,
            "Python 3.13 is pinned on purpose: the asset's wheels (cp313, arm64) and bytecode are built for "
            "it and tested with it; a newer runtime is adopted by changing the runtime and the bundle's "
            "version together.",
        )
