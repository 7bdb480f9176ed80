"""The dMCP stack: composes the constructs from the deployment's topology, and its outputs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aws_cdk import CfnOutput, Stack
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from dmcp_aws.deployed import Output
from dmcp_aws.deployment import Deployment, QueueSpec, topology
from dmcp_aws.naming import UNROUTED
from infra.catch_all import UnroutedRequests
from infra.client_queue import ClientQueue, ClientQueueProps
from infra.idempotency_ledger import IdempotencyLedger, IdempotencyLedgerProps
from infra.request_bus import RequestBus, RequestBusProps
from infra.server_worker import ServerWorker, ServerWorkerProps
from infra.sweeper import SWEEPER_FUNCTION_SUFFIX, OrphanSweeper, OrphanSweeperProps
from infra.task_store import TaskStore, TaskStoreProps


@dataclass(frozen=True)
class DmcpStackProps:
    """The deployment description and the functions' code assets (see `infra.bundling.lambda_code`)."""

    deployment: Deployment
    code: lambda_.Code
    """The kit's asset: the catch-all, the sweeper and every server without its own."""
    server_code: Mapping[str, lambda_.Code] = field(default_factory=dict)
    """Server name -> its own asset (a server with `requirements`; `infra.config.bundle_specs`)."""


class DmcpStack(Stack):
    """Request bus, one worker per server, the catch-all, one reply queue per provisioned client,
    the sweeper of orphaned per-connection reply queues."""

    def __init__(self, scope: Construct, construct_id: str, *, props: DmcpStackProps, **kwargs: Any) -> None:
        super().__init__(
            scope, construct_id, description=f"dMCP on AWS: deployment {props.deployment.name}", **kwargs
        )
        deployment, shape = props.deployment, topology(props.deployment)
        queues: dict[str, QueueSpec] = {q.name: q for q in shape.queues}
        self.bus = RequestBus(self, "RequestBus", props=RequestBusProps(topic_name=shape.topic))
        self.ledger = (
            IdempotencyLedger(
                self, "Idempotency", props=IdempotencyLedgerProps(table_name=shape.idempotency_table)
            )
            if shape.idempotency_table
            else None
        )

        self.workers: dict[str, ServerWorker] = {}
        for worker in shape.workers:
            subscription = next(s for s in shape.subscriptions if s.queue == worker.request_queue)
            worker_props = ServerWorkerProps(
                worker=worker,
                request_queue=queues[worker.request_queue],
                dead_letter_queue=queues[worker.dead_letter_queue],
                filter_policy=subscription.filter_policy,
                topic=self.bus.topic,
                reply_prefix=shape.reply_prefix,
                code=props.server_code.get(worker.server, props.code),
                function_name=f"{deployment.name}-{worker.server}",
                architecture=deployment.lambda_architecture,
                ledger=self.ledger,
            )
            kind = UnroutedRequests if worker.server == UNROUTED else ServerWorker
            self.workers[worker.server] = kind(self, f"Server-{worker.server}", props=worker_props)

        self.tasks = (
            TaskStore(self, "Tasks", props=TaskStoreProps(table_name=shape.tasks_table))
            if shape.tasks_table
            else None
        )
        for server, served in self.workers.items():
            if self.tasks is not None and server != UNROUTED:
                self.tasks.serve(served)

        self.clients: dict[str, ClientQueue] = {}
        for client in deployment.clients:
            queue = queues[f"{shape.reply_prefix}{client.name}{'.fifo' if client.fifo else ''}"]
            self.clients[client.name] = ClientQueue(
                self,
                f"Client-{client.name}",
                props=ClientQueueProps(
                    client=client,
                    queue=queue,
                    bus=self.bus,
                    reply_prefix=shape.reply_prefix,
                    connection_prefix=deployment.client_connection_prefix(client.name),
                ),
            )

        self.sweeper = OrphanSweeper(
            self,
            "OrphanSweeper",
            props=OrphanSweeperProps(
                connection_prefix=deployment.connection_queue_prefix,
                idle_s=deployment.orphan_queue_idle_s,
                code=props.code,
                function_name=f"{deployment.name}{SWEEPER_FUNCTION_SUFFIX}",
                architecture=deployment.lambda_architecture,
            ),
        )
        self._outputs(deployment)

    def _outputs(self, deployment: Deployment) -> None:
        reply_prefix = deployment.reply_prefix

        def output(key: str, value: str, description: str) -> None:
            CfnOutput(self, key, value=value, description=description)

        output(Output.TOPIC_ARN, self.bus.topic.topic_arn, "Request topic: clients publish requests here")
        output(Output.REPLY_PREFIX, reply_prefix, "Every reply queue's name starts with this")
        output(
            Output.REQUEST_QUEUE_URLS,
            self.to_json_string({n: w.request_queue.queue_url for n, w in self.workers.items()}),
            "JSON: server name -> request queue URL",
        )
        output(
            Output.DEAD_LETTER_QUEUE_URLS,
            self.to_json_string({n: w.dead_letter_queue.queue_url for n, w in self.workers.items()}),
            "JSON: server name -> dead-letter queue URL",
        )
        output(
            Output.REPLY_QUEUE_URLS,
            self.to_json_string({n: c.queue.queue_url for n, c in self.clients.items()}),
            "JSON: provisioned client name -> reply queue URL",
        )
        output(
            Output.CLIENT_POLICY_ARNS,
            self.to_json_string({n: c.policy.managed_policy_arn for n, c in self.clients.items()}),
            "JSON: provisioned client name -> managed policy for its roles or users to attach",
        )
        output(
            Output.CONNECTION_QUEUE_PREFIXES,
            self.to_json_string({n: deployment.client_connection_prefix(n) for n in self.clients}),
            "JSON: provisioned client name -> the prefix its per-connection reply queues are created under",
        )
