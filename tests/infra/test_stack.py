"""Every resource of the stack and the properties issue 3 asks for (aws_cdk.assertions)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_cdk.assertions import Match, Template
from infra.bundling import BundleSpec
from infra.server_worker import RUNTIME

from dmcp_aws.deployed import Output
from dmcp_aws.deployment import CATCH_ALL_HANDLER, topology
from dmcp_aws.naming import LAST_WORD_DELIVERIES
from tests.infra.conftest import SAMPLE, build_stack, logical_id_of

SHAPE = topology(SAMPLE)
QUEUES = {q.name: q for q in SHAPE.queues}


def test_resource_counts(template: Template) -> None:
    workers, clients = len(SHAPE.workers), len(SAMPLE.clients)
    template.resource_count_is("AWS::SNS::Topic", 1)
    template.resource_count_is("AWS::SQS::Queue", 2 * workers + clients)
    template.resource_count_is("AWS::SNS::Subscription", workers)
    template.resource_count_is("AWS::Lambda::Function", workers + 1)  # + the orphan sweeper
    template.resource_count_is("AWS::Lambda::EventSourceMapping", workers)
    template.resource_count_is("AWS::CloudWatch::Alarm", 2 * workers)
    template.resource_count_is("AWS::Logs::LogGroup", workers + 1)
    template.resource_count_is("AWS::Events::Rule", 1)
    template.resource_count_is("AWS::IAM::ManagedPolicy", clients)
    template.resource_count_is("AWS::DynamoDB::Table", 2)  # the ledger and the task store


def test_idempotency_ledger(template: Template) -> None:
    template.has_resource_properties(
        "AWS::DynamoDB::Table",
        {
            "TableName": "acme-idempotency",
            "KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}],
            "BillingMode": "PAY_PER_REQUEST",
            "TimeToLiveSpecification": {"AttributeName": "expiration", "Enabled": True},
            "SSESpecification": {"SSEEnabled": True},
        },
    )


def test_no_ledger_when_idempotency_is_off() -> None:
    from tests.infra.conftest import build_stack

    template = Template.from_stack(build_stack(SAMPLE.model_copy(update={"idempotency": False})))
    template.resource_count_is("AWS::DynamoDB::Table", 0)
    for function in template.find_resources("AWS::Lambda::Function").values():
        assert "DMCP_IDEMPOTENCY_TABLE" not in function["Properties"]["Environment"]["Variables"]


def test_request_topic_is_encrypted_and_tls_only(template: Template) -> None:
    topic = template.find_resources("AWS::SNS::Topic", {"Properties": {"TopicName": "acme-requests"}})
    (properties,) = (r["Properties"] for r in topic.values())
    assert json.dumps(properties["KmsMasterKeyId"]).endswith(':alias/aws/sns"]]}')  # the AWS-managed SNS key
    template.has_resource_properties(
        "AWS::SNS::TopicPolicy",
        {
            "PolicyDocument": {
                "Statement": Match.array_with([_deny_insecure("sns:Publish", Match.any_value())])
            }
        },
    )


@pytest.mark.parametrize("queue", sorted(QUEUES))
def test_every_queue_is_encrypted_and_tls_only(template: Template, queue: str) -> None:
    logical_id = logical_id_of(template, "AWS::SQS::Queue", QueueName=queue)
    assert (
        template.find_resources("AWS::SQS::Queue")[logical_id]["Properties"]["SqsManagedSseEnabled"] is True
    )
    template.has_resource_properties(
        "AWS::SQS::QueuePolicy",
        {
            "Queues": [{"Ref": logical_id}],
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [_deny_insecure("sqs:*", {"Fn::GetAtt": [logical_id, "Arn"]}, principal={"AWS": "*"})]
                )
            },
        },
    )


@pytest.mark.parametrize("worker", SHAPE.workers, ids=lambda w: w.server)
def test_request_queue_redrive_and_visibility(template: Template, worker: Any) -> None:
    dlq = logical_id_of(template, "AWS::SQS::Queue", QueueName=worker.dead_letter_queue)
    template.has_resource_properties(
        "AWS::SQS::Queue",
        {
            "QueueName": worker.request_queue,
            "VisibilityTimeout": 6 * worker.spec.timeout_s,
            "RedrivePolicy": {
                "deadLetterTargetArn": {"Fn::GetAtt": [dlq, "Arn"]},
                # one delivery more than the server's: the last word (answer, dead-letter with reason)
                "maxReceiveCount": worker.spec.max_receive_count + LAST_WORD_DELIVERIES,
            },
        },
    )
    template.has_resource_properties(
        "AWS::SQS::Queue", {"QueueName": worker.dead_letter_queue, "MessageRetentionPeriod": 1209600}
    )


@pytest.mark.parametrize("subscription", SHAPE.subscriptions, ids=lambda s: s.queue)
def test_subscriptions_filter_on_server_with_raw_delivery(template: Template, subscription: Any) -> None:
    queue = logical_id_of(template, "AWS::SQS::Queue", QueueName=subscription.queue)
    template.has_resource_properties(
        "AWS::SNS::Subscription",
        {
            "Protocol": "sqs",
            "Endpoint": {"Fn::GetAtt": [queue, "Arn"]},
            "RawMessageDelivery": True,
            "FilterPolicy": subscription.filter_policy,
        },
    )
    _topic_may_send_to(template, queue)


@pytest.mark.parametrize("subscription", SHAPE.subscriptions, ids=lambda s: s.queue)
def test_subscriptions_redrive_to_the_servers_dlq(template: Template, subscription: Any) -> None:
    """What SNS cannot deliver to a request queue is kept in the server's DLQ (issue 7, item 4),
    whose policy lets the topic (and only it) send, and still denies anything without TLS."""
    assert subscription.dead_letter_queue is not None
    queue = logical_id_of(template, "AWS::SQS::Queue", QueueName=subscription.queue)
    dlq = logical_id_of(template, "AWS::SQS::Queue", QueueName=subscription.dead_letter_queue)
    template.has_resource_properties(
        "AWS::SNS::Subscription",
        {
            "Endpoint": {"Fn::GetAtt": [queue, "Arn"]},
            "RedrivePolicy": {"deadLetterTargetArn": {"Fn::GetAtt": [dlq, "Arn"]}},
        },
    )
    _topic_may_send_to(template, dlq)
    template.has_resource_properties(
        "AWS::SQS::QueuePolicy",
        {
            "Queues": [{"Ref": dlq}],
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [_deny_insecure("sqs:*", {"Fn::GetAtt": [dlq, "Arn"]}, principal={"AWS": "*"})]
                )
            },
        },
    )


def test_every_subscription_has_a_dead_letter_queue(template: Template) -> None:
    subscriptions = template.find_resources("AWS::SNS::Subscription")
    assert subscriptions and all("RedrivePolicy" in s["Properties"] for s in subscriptions.values())


def _topic_may_send_to(template: Template, queue: str) -> None:
    """The queue's policy lets SNS send to it, for messages from the request topic only."""
    topic = logical_id_of(template, "AWS::SNS::Topic", TopicName="acme-requests")
    template.has_resource_properties(
        "AWS::SQS::QueuePolicy",
        {
            "Queues": [{"Ref": queue}],
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        {
                            "Effect": "Allow",
                            "Principal": {"Service": "sns.amazonaws.com"},
                            "Action": "sqs:SendMessage",
                            "Resource": {"Fn::GetAtt": [queue, "Arn"]},
                            "Condition": {"ArnEquals": {"aws:SourceArn": {"Ref": topic}}},
                        }
                    ]
                )
            },
        },
    )


def test_catch_all_answers_every_unserved_name(template: Template) -> None:
    template.has_resource_properties(
        "AWS::SNS::Subscription",
        {"FilterPolicy": {"mcp.server": [{"exists": False}, {"anything-but": ["example", "search"]}]}},
    )
    function = _function(template, "acme-unrouted")
    assert function["Handler"] == CATCH_ALL_HANDLER


@pytest.mark.parametrize("worker", SHAPE.workers, ids=lambda w: w.server)
def test_worker_function(template: Template, worker: Any) -> None:
    function = _function(template, f"acme-{worker.server}")
    assert (
        function["Runtime"]
        == "python3.13"
        == f"python{BundleSpec(repo_root=None, handlers=()).python_version}"
    )  # type: ignore[arg-type]
    assert RUNTIME.name == "python3.13"
    assert function["Architectures"] == ["arm64"]
    assert function["Handler"] == worker.handler
    assert function["MemorySize"] == worker.spec.memory_mb
    assert function["Timeout"] == worker.spec.timeout_s
    assert function["Environment"]["Variables"]["DMCP_REPLY_PREFIX"] == "acme-reply-"
    assert function["Environment"]["Variables"]["POWERTOOLS_SERVICE_NAME"] == f"dmcp-{worker.server}"
    table = logical_id_of(template, "AWS::DynamoDB::Table", TableName="acme-idempotency")
    assert function["Environment"]["Variables"]["DMCP_IDEMPOTENCY_TABLE"] == {"Ref": table}
    log_group = function["LoggingConfig"]["LogGroup"]["Ref"]
    assert template.find_resources("AWS::Logs::LogGroup")[log_group]["Properties"]["RetentionInDays"] == 30


@pytest.mark.parametrize("worker", SHAPE.workers, ids=lambda w: w.server)
def test_event_source_mapping(template: Template, worker: Any) -> None:
    queue = logical_id_of(template, "AWS::SQS::Queue", QueueName=worker.request_queue)
    expected: dict[str, Any] = {
        "EventSourceArn": {"Fn::GetAtt": [queue, "Arn"]},
        "BatchSize": worker.spec.batch_size,
        "FunctionResponseTypes": ["ReportBatchItemFailures"],
        "ScalingConfig": {"MaximumConcurrency": worker.spec.max_concurrency},
        "MaximumBatchingWindowInSeconds": worker.spec.batching_window_s or Match.absent(),
    }
    template.has_resource_properties("AWS::Lambda::EventSourceMapping", expected)


@pytest.mark.parametrize("worker", SHAPE.workers, ids=lambda w: w.server)
def test_alarms_on_dead_letters_and_oldest_message(template: Template, worker: Any) -> None:
    for queue, metric in (
        (worker.dead_letter_queue, "ApproximateNumberOfMessagesVisible"),
        (worker.request_queue, "ApproximateAgeOfOldestMessage"),
    ):
        template.has_resource_properties(
            "AWS::CloudWatch::Alarm",
            {
                "Namespace": "AWS/SQS",
                "MetricName": metric,
                "Dimensions": [
                    {"Name": "QueueName", "Value": {"Fn::GetAtt": [_queue(template, queue), "QueueName"]}}
                ],
            },
        )


@pytest.mark.parametrize("client", SAMPLE.clients, ids=lambda c: c.name)
def test_client_reply_queue_under_prefix(template: Template, client: Any) -> None:
    name = f"acme-reply-{client.name}{'.fifo' if client.fifo else ''}"
    properties = template.find_resources("AWS::SQS::Queue")[_queue(template, name)]["Properties"]
    assert name.startswith(SHAPE.reply_prefix)
    assert properties.get("FifoQueue", False) is client.fifo
    assert "RedrivePolicy" not in properties


def test_outputs_for_clients_and_the_command(template: Template) -> None:
    outputs = template.to_json()["Outputs"]
    assert set(outputs) == {
        Output.TOPIC_ARN, Output.REPLY_PREFIX, Output.REQUEST_QUEUE_URLS, Output.DEAD_LETTER_QUEUE_URLS,
        Output.REPLY_QUEUE_URLS, Output.CLIENT_POLICY_ARNS, Output.CONNECTION_QUEUE_PREFIXES,
    }  # fmt: skip
    assert outputs[Output.REPLY_PREFIX]["Value"] == "acme-reply-"
    assert outputs[Output.TOPIC_ARN]["Value"] == {
        "Ref": logical_id_of(template, "AWS::SNS::Topic", TopicName="acme-requests")
    }
    joined = json.dumps(outputs[Output.REQUEST_QUEUE_URLS]["Value"])
    for worker in SHAPE.workers:
        assert f'\\"{worker.server}\\":' in joined and _queue(template, worker.request_queue) in joined
    assert json.loads(outputs[Output.CONNECTION_QUEUE_PREFIXES]["Value"]) == {
        "laptop": "acme-reply-conn-laptop_", "ci": "acme-reply-conn-ci_", "ops": "acme-reply-conn-ops_",
    }  # fmt: skip


def _deny_insecure(action: str, resource: Any, principal: Any = "*") -> Any:
    return Match.object_like(
        {
            "Effect": "Deny",
            "Action": action,
            "Principal": principal,
            "Resource": resource,
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        }
    )


def _function(template: Template, name: str) -> dict[str, Any]:
    return template.find_resources("AWS::Lambda::Function")[
        logical_id_of(template, "AWS::Lambda::Function", FunctionName=name)
    ]["Properties"]


def _queue(template: Template, name: str) -> str:
    return logical_id_of(template, "AWS::SQS::Queue", QueueName=name)


def test_snap_start_publishes_a_version_and_feeds_its_alias() -> None:
    """SnapStart (issue 12): the function snapshots published versions, and the queue's event
    source invokes the alias `live` of the current version (a restored snapshot)."""
    snapping = SAMPLE.model_copy(
        update={"servers": [SAMPLE.servers[0].model_copy(update={"snap_start": True}), SAMPLE.servers[1]]}
    )
    template = Template.from_stack(build_stack(snapping))
    function = _function(template, "acme-example")
    assert function["SnapStart"] == {"ApplyOn": "PublishedVersions"}
    assert "SnapStart" not in _function(template, "acme-search")
    alias = template.find_resources("AWS::Lambda::Alias")
    assert [a["Properties"]["Name"] for a in alias.values()] == ["live"]
    queue = _queue(template, "acme-example-requests")
    [mapping] = [
        m["Properties"]
        for m in template.find_resources("AWS::Lambda::EventSourceMapping").values()
        if m["Properties"]["EventSourceArn"] == {"Fn::GetAtt": [queue, "Arn"]}
    ]
    assert ":live" in json.dumps(mapping["FunctionName"])  # the alias, not the unpublished function
