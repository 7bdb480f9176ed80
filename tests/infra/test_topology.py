"""The embedded local stack and the CDK stack, built from the same description, agree:
the same queues (DLQs, redrive counts, visibility, FIFO, encryption), the same subscriptions
(filter policies, raw delivery, their own dead-letter queues), the same queues the topic may send
to, and the same topic."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest
from aws_cdk.assertions import Template

from dmcp_aws.deployment import Deployment
from dmcp_aws.local.stack import embedded_stack
from tests.infra.conftest import ROOT, SAMPLE, build_stack

pytestmark = pytest.mark.anyio

Shape = dict[str, Any]


def cdk_shape(template: Template) -> Shape:
    queues = template.find_resources("AWS::SQS::Queue")
    names = {logical_id: q["Properties"]["QueueName"] for logical_id, q in queues.items()}
    shape: Shape = {"topic": None, "queues": {}, "subscriptions": {}, "tables": {}, "sns_may_send": set()}
    for table in template.find_resources("AWS::DynamoDB::Table").values():
        properties = table["Properties"]
        shape["tables"][properties["TableName"]] = {
            "key": properties["KeySchema"],
            "billing": properties["BillingMode"],
            "ttl": properties["TimeToLiveSpecification"]["AttributeName"],
            "encrypted": properties["SSESpecification"]["SSEEnabled"],
        }
    (topic,) = template.find_resources("AWS::SNS::Topic").values()
    shape["topic"] = topic["Properties"]["TopicName"]
    for logical_id, queue in queues.items():
        properties = queue["Properties"]
        redrive = properties.get("RedrivePolicy")
        shape["queues"][names[logical_id]] = {
            "visibility": properties.get("VisibilityTimeout", 30),
            "dlq": names[redrive["deadLetterTargetArn"]["Fn::GetAtt"][0]] if redrive else None,
            "max_receive_count": redrive["maxReceiveCount"] if redrive else None,
            "fifo": properties.get("FifoQueue", False),
            "encrypted": properties.get("SqsManagedSseEnabled", False),
        }
    for subscription in template.find_resources("AWS::SNS::Subscription").values():
        properties = subscription["Properties"]
        queue = names[properties["Endpoint"]["Fn::GetAtt"][0]]
        redrive = properties.get("RedrivePolicy")
        shape["subscriptions"][queue] = {
            "filter": properties["FilterPolicy"],
            "raw": properties["RawMessageDelivery"],
            "dlq": names[redrive["deadLetterTargetArn"]["Fn::GetAtt"][0]] if redrive else None,
        }
    for policy in template.find_resources("AWS::SQS::QueuePolicy").values():
        if any(_lets_the_topic_send(s) for s in policy["Properties"]["PolicyDocument"]["Statement"]):
            shape["sns_may_send"] |= {names[q["Ref"]] for q in policy["Properties"]["Queues"]}
    return shape


def _lets_the_topic_send(statement: dict[str, Any]) -> bool:
    return (
        statement["Effect"] == "Allow"
        and statement.get("Principal") == {"Service": "sns.amazonaws.com"}
        and statement["Action"] == "sqs:SendMessage"
        and "aws:SourceArn" in statement.get("Condition", {}).get("ArnEquals", {})
    )


def local_shape(endpoint: str, name: str) -> Shape:
    """What the embedded stack created for deployment `name` (moto's backends are process-wide:
    other stacks of this test session may have resources next to it)."""
    mine = f"{name}-"
    options = {"endpoint_url": endpoint, "region_name": "us-east-1",
               "aws_access_key_id": "testing", "aws_secret_access_key": "testing"}  # fmt: skip
    sqs, sns = boto3.client("sqs", **options), boto3.client("sns", **options)
    dynamodb = boto3.client("dynamodb", **options)
    shape: Shape = {"topic": None, "queues": {}, "subscriptions": {}, "tables": {}, "sns_may_send": set()}
    for table_name in [t for t in dynamodb.list_tables()["TableNames"] if t.startswith(mine)]:
        table = dynamodb.describe_table(TableName=table_name)["Table"]
        ttl = dynamodb.describe_time_to_live(TableName=table_name)["TimeToLiveDescription"]
        shape["tables"][table_name] = {
            "key": table["KeySchema"],
            "billing": table["BillingModeSummary"]["BillingMode"],
            "ttl": ttl["AttributeName"] if ttl["TimeToLiveStatus"] == "ENABLED" else None,
            "encrypted": table.get("SSEDescription", {}).get("Status") == "ENABLED",
        }
    (topic_arn,) = [
        t["TopicArn"] for t in sns.list_topics()["Topics"] if t["TopicArn"].endswith(f":{mine}requests")
    ]
    shape["topic"] = topic_arn.rsplit(":", 1)[1]
    for url in sqs.list_queues(QueueNamePrefix=mine)["QueueUrls"]:
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        redrive = json.loads(attributes["RedrivePolicy"]) if "RedrivePolicy" in attributes else None
        policy = json.loads(attributes["Policy"]) if attributes.get("Policy") else {"Statement": []}
        if any(_lets_the_topic_send(s) for s in policy["Statement"]):
            shape["sns_may_send"].add(url.rsplit("/", 1)[1])
        shape["queues"][url.rsplit("/", 1)[1]] = {
            "visibility": int(attributes["VisibilityTimeout"]),
            "dlq": redrive["deadLetterTargetArn"].rsplit(":", 1)[1] if redrive else None,
            "max_receive_count": int(redrive["maxReceiveCount"]) if redrive else None,
            "fifo": attributes.get("FifoQueue") == "true",
            "encrypted": attributes.get("SqsManagedSseEnabled") == "true",
        }
    for subscription in sns.list_subscriptions_by_topic(TopicArn=topic_arn)["Subscriptions"]:
        attributes = sns.get_subscription_attributes(SubscriptionArn=subscription["SubscriptionArn"])[
            "Attributes"
        ]
        redrive = json.loads(attributes["RedrivePolicy"]) if attributes.get("RedrivePolicy") else None
        shape["subscriptions"][subscription["Endpoint"].rsplit(":", 1)[1]] = {
            "filter": json.loads(attributes["FilterPolicy"]),
            "raw": attributes["RawMessageDelivery"] == "true",
            "dlq": redrive["deadLetterTargetArn"].rsplit(":", 1)[1] if redrive else None,
        }
    return shape


@pytest.mark.parametrize(
    "deployment",
    [
        SAMPLE,
        SAMPLE.model_copy(update={"name": "acmenl", "idempotency": False}),
        Deployment.load(ROOT / "dmcp.json").model_copy(update={"name": "repo"}),
    ],
    ids=["sample", "no-ledger", "dmcp.json"],
)
async def test_local_and_cdk_stacks_agree(deployment: Deployment) -> None:
    expected = cdk_shape(Template.from_stack(build_stack(deployment)))
    async with embedded_stack(deployment, code_root=Path(ROOT), workers=False) as running:
        actual = local_shape(running.endpoint_url, deployment.name)
    assert actual == expected
    assert len(expected["queues"]) == 2 * (len(deployment.servers) + 1) + len(deployment.clients)
    # every subscription redrives to its server's DLQ; the topic may send to both, nowhere else
    assert all(s["dlq"] == q.replace("-requests", "-dlq") for q, s in expected["subscriptions"].items())
    assert expected["sns_may_send"] == {
        q for q in expected["queues"] if not q.startswith(f"{deployment.name}-reply-")
    }
    assert len(expected["tables"]) == 2 * int(deployment.idempotency)  # the ledger and the task store
