"""Create a deployment's topology on an AWS endpoint (moto's server, LocalStack or AWS itself).

The same `Topology` the CDK app is built from, so local and deployed stacks agree.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from dmcp_aws.deployment import QueueSpec, Topology
from dmcp_aws.tasks.provision import create_task_table


@dataclass
class Provisioned:
    """What was created: the topic and every queue, by name."""

    topic_arn: str
    queue_urls: dict[str, str] = field(default_factory=dict)
    queue_arns: dict[str, str] = field(default_factory=dict)


async def provision(topology: Topology, sqs: Any, sns: Any, dynamodb: Any) -> Provisioned:
    """Create the topic, queues (DLQs first), queue policies letting the topic send to the
    subscribed queues and their DLQs, filtered raw subscriptions with their DLQs (SNS redrive)
    the idempotency table and the task table."""
    if topology.idempotency_table is not None:
        await _create_ledger_table(dynamodb, topology.idempotency_table)
    if topology.tasks_table is not None:
        await create_task_table(dynamodb, topology.tasks_table)
    topic_arn = (await sns.create_topic(Name=topology.topic, Attributes={"KmsMasterKeyId": "alias/aws/sns"}))[
        "TopicArn"
    ]
    result = Provisioned(topic_arn)
    for queue in sorted(topology.queues, key=lambda q: q.dead_letter_queue is not None):
        url = (await sqs.create_queue(QueueName=queue.name, Attributes=_queue_attributes(queue, result)))[
            "QueueUrl"
        ]
        arn = (await sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"]))["Attributes"][
            "QueueArn"
        ]
        result.queue_urls[queue.name], result.queue_arns[queue.name] = url, arn
    # Every queue the topic sends to: the subscribed queues and their subscriptions' DLQs.
    senders = {s.queue for s in topology.subscriptions} | {
        s.dead_letter_queue for s in topology.subscriptions if s.dead_letter_queue is not None
    }
    for name in sorted(senders):
        await sqs.set_queue_attributes(
            QueueUrl=result.queue_urls[name],
            Attributes={"Policy": json.dumps(_allow_topic(result.queue_arns[name], topic_arn))},
        )
    for subscription in topology.subscriptions:
        attributes = {"RawMessageDelivery": "true", "FilterPolicy": json.dumps(subscription.filter_policy)}
        if subscription.dead_letter_queue is not None:
            # SNS redrive: a request SNS cannot deliver to the queue is kept in the DLQ.
            dead_letters = result.queue_arns[subscription.dead_letter_queue]
            attributes["RedrivePolicy"] = json.dumps({"deadLetterTargetArn": dead_letters})
        await sns.subscribe(
            TopicArn=topic_arn,
            Protocol="sqs",
            Endpoint=result.queue_arns[subscription.queue],
            Attributes=attributes,
            ReturnSubscriptionArn=True,
        )
    return result


async def _create_ledger_table(dynamodb: Any, name: str) -> None:
    """The table powertools' idempotency layer expects: key `id`, TTL on `expiration`."""
    await dynamodb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
        SSESpecification={"Enabled": True},
    )
    await dynamodb.update_time_to_live(
        TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": "expiration"}
    )


def _queue_attributes(queue: QueueSpec, created: Provisioned) -> dict[str, str]:
    attributes = {"SqsManagedSseEnabled": "true", "VisibilityTimeout": str(queue.visibility_timeout_s)}
    if queue.fifo:
        attributes["FifoQueue"] = "true"
    if queue.dead_letter_queue is not None:
        redrive = {
            "deadLetterTargetArn": created.queue_arns[queue.dead_letter_queue],
            "maxReceiveCount": queue.max_receive_count,
        }
        attributes["RedrivePolicy"] = json.dumps(redrive)
    return attributes


def _allow_topic(queue_arn: str, topic_arn: str) -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "sns.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": queue_arn,
                "Condition": {"ArnEquals": {"aws:SourceArn": topic_arn}},
            }
        ],
    }
