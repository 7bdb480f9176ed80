"""Each IAM statement: workers send only under the reply prefix and to their own DLQ; clients
publish and read only their own reply queue and manage only their own per-connection queues; the
sweeper deletes only per-connection queues; nothing gets `*` where a resource can be named."""

from __future__ import annotations

import json
import re
from fnmatch import fnmatchcase
from typing import Any

import pytest
from aws_cdk import aws_iam as iam
from aws_cdk.assertions import Template
from infra.principals import client_principal

from dmcp_aws.deployment import topology
from dmcp_aws.naming import UNROUTED
from tests.infra.conftest import CI_ROLE, LAPTOP_ROLE, SAMPLE, logical_id_of

SHAPE = topology(SAMPLE)
REPLY_PATTERN = {"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, ":sqs:", {"Ref": "AWS::Region"}, ":",
                                   {"Ref": "AWS::AccountId"}, ":acme-reply-*"]]}  # fmt: skip


def _statements(resource: dict[str, Any]) -> list[dict[str, Any]]:
    return list(resource["Properties"]["PolicyDocument"]["Statement"])


def _actions(statement: dict[str, Any]) -> list[str]:
    action = statement["Action"]
    return [action] if isinstance(action, str) else list(action)


def _worker_policy(template: Template, server: str) -> list[dict[str, Any]]:
    function = logical_id_of(template, "AWS::Lambda::Function", FunctionName=f"acme-{server}")
    role = template.find_resources("AWS::Lambda::Function")[function]["Properties"]["Role"]["Fn::GetAtt"][0]
    policies = [
        p
        for p in template.find_resources("AWS::IAM::Policy").values()
        if {"Ref": role} in p["Properties"]["Roles"]
    ]
    assert len(policies) == 1
    return _statements(policies[0])


def _arn_of(template: Template, queue: str) -> dict[str, Any]:
    return {"Fn::GetAtt": [logical_id_of(template, "AWS::SQS::Queue", QueueName=queue), "Arn"]}


XRAY_WRITES = ["xray:PutTraceSegments", "xray:PutTelemetryRecords"]
LIST_QUEUES = "sqs:ListQueues"
WILDCARD_ONLY = (XRAY_WRITES, LIST_QUEUES)
"""The exceptions: X-Ray's write actions and SQS ListQueues (the sweeper's) have no resource-level
permissions."""
READ_ACTIONS = [
    "sqs:ReceiveMessage",
    "sqs:DeleteMessage",
    "sqs:ChangeMessageVisibility",
    "sqs:GetQueueAttributes",
    "sqs:GetQueueUrl",
]
CONNECTION_ACTIONS = {"sqs:CreateQueue", "sqs:DeleteQueue", "sqs:SetQueueAttributes", *READ_ACTIONS}


def test_no_allow_statement_has_a_wildcard_resource(template: Template) -> None:
    for kind in (
        "AWS::IAM::Policy",
        "AWS::IAM::ManagedPolicy",
        "AWS::SQS::QueuePolicy",
        "AWS::SNS::TopicPolicy",
    ):
        for logical_id, resource in template.find_resources(kind).items():
            for statement in _statements(resource):
                if statement["Effect"] == "Allow" and statement["Action"] not in WILDCARD_ONLY:
                    assert statement["Resource"] != "*", (logical_id, statement)
                    assert "*" not in json.dumps(statement.get("Principal", {})), (logical_id, statement)


def test_worker_roles_trust_only_lambda(template: Template) -> None:
    for role in template.find_resources("AWS::IAM::Role").values():
        (statement,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        assert statement["Principal"] == {"Service": "lambda.amazonaws.com"}
        assert (
            "ManagedPolicyArns" not in role["Properties"]
        )  # no AWS-managed policy: logs are granted per group


@pytest.mark.parametrize("worker", SHAPE.workers, ids=lambda w: w.server)
def test_worker_sends_only_under_the_reply_prefix_and_to_its_own_dlq(template: Template, worker: Any) -> None:
    statements = _worker_policy(template, worker.server)
    send_targets = [s["Resource"] for s in statements if "sqs:SendMessage" in _actions(s)]
    own = [_arn_of(template, worker.request_queue)] if worker.server != UNROUTED else []  # task work
    assert sorted(map(json.dumps, send_targets)) == sorted(
        map(json.dumps, [REPLY_PATTERN, _arn_of(template, worker.dead_letter_queue), *own])
    )
    others = [q.name for q in SHAPE.queues if q.name not in (worker.dead_letter_queue,) and q.role != "reply"]
    for statement in statements:
        for other in others:
            if other != worker.request_queue:
                assert _arn_of(template, other) != statement["Resource"], (other, statement)


@pytest.mark.parametrize("worker", SHAPE.workers, ids=lambda w: w.server)
def test_worker_reads_its_own_request_queue(template: Template, worker: Any) -> None:
    statements = _worker_policy(template, worker.server)
    own = [s for s in statements if s["Resource"] == _arn_of(template, worker.request_queue)]
    # A server's worker also sends its tasks' work to its own queue (the catch-all has no tasks).
    task_work = {"sqs:SendMessage"} if worker.server != UNROUTED else set()
    assert {a for s in own for a in _actions(s)} == {
        "sqs:ReceiveMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueUrl", "sqs:DeleteMessage",
        "sqs:GetQueueAttributes", *task_work,
    }  # fmt: skip
    dlq = [s for s in statements if s["Resource"] == _arn_of(template, worker.dead_letter_queue)]
    assert {a for s in dlq for a in _actions(s)} == {"sqs:SendMessage", "sqs:GetQueueUrl"}


@pytest.mark.parametrize("worker", SHAPE.workers, ids=lambda w: w.server)
def test_worker_uses_only_items_of_the_ledger(template: Template, worker: Any) -> None:
    table = {
        "Fn::GetAtt": [logical_id_of(template, "AWS::DynamoDB::Table", TableName="acme-idempotency"), "Arn"]
    }
    dynamo = [
        s
        for s in _worker_policy(template, worker.server)
        if any(a.startswith("dynamodb:") for a in _actions(s))
    ]
    actions = ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"]
    expected = [{"Sid": "RequestLedger", "Effect": "Allow", "Resource": table, "Action": actions}]
    if worker.server != UNROUTED:  # and the task store's items: read, create, change; never delete
        tasks = {
            "Fn::GetAtt": [logical_id_of(template, "AWS::DynamoDB::Table", TableName="acme-tasks"), "Arn"]
        }
        task_actions = ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"]
        expected.append({"Sid": "TaskStore", "Effect": "Allow", "Resource": tasks, "Action": task_actions})
    assert dynamo == expected


@pytest.mark.parametrize("worker", SHAPE.workers, ids=lambda w: w.server)
def test_worker_writes_only_its_own_log_group(template: Template, worker: Any) -> None:
    function = logical_id_of(template, "AWS::Lambda::Function", FunctionName=f"acme-{worker.server}")
    log_group = template.find_resources("AWS::Lambda::Function")[function]["Properties"]["LoggingConfig"][
        "LogGroup"
    ]["Ref"]
    logs = [
        s for s in _worker_policy(template, worker.server) if any(a.startswith("logs:") for a in _actions(s))
    ]
    assert logs == [{"Action": ["logs:CreateLogStream", "logs:PutLogEvents"], "Effect": "Allow",
                     "Resource": {"Fn::GetAtt": [log_group, "Arn"]}}]  # fmt: skip


def _queue_policy(template: Template, queue: str) -> list[dict[str, Any]]:
    ref = {"Ref": logical_id_of(template, "AWS::SQS::Queue", QueueName=queue)}
    (policy,) = [
        p
        for p in template.find_resources("AWS::SQS::QueuePolicy").values()
        if p["Properties"]["Queues"] == [ref]
    ]
    return _statements(policy)


@pytest.mark.parametrize(
    ("client", "principal", "queue", "other_queue"),
    [
        ("laptop", LAPTOP_ROLE, "acme-reply-laptop", "acme-reply-ci.fifo"),
        ("ci", CI_ROLE, "acme-reply-ci.fifo", "acme-reply-laptop"),
    ],
)
def test_client_reads_only_its_own_reply_queue(
    template: Template, client: str, principal: str, queue: str, other_queue: str
) -> None:
    allows = [s for s in _queue_policy(template, queue) if s["Effect"] == "Allow"]
    assert allows == [
        {
            "Sid": "ClientReadsOwnReplies",
            "Effect": "Allow",
            "Principal": {"AWS": principal},
            "Action": READ_ACTIONS,  # with ChangeMessageVisibility, which the transport uses
            "Resource": _arn_of(template, queue),
        }
    ]
    other = json.dumps(_queue_policy(template, other_queue))
    assert principal not in other
    for worker in SHAPE.workers:  # nor any request queue or DLQ
        assert principal not in json.dumps(_queue_policy(template, worker.request_queue))
        assert principal not in json.dumps(_queue_policy(template, worker.dead_letter_queue))


def test_clients_may_publish_to_the_topic(template: Template) -> None:
    (policy,) = template.find_resources("AWS::SNS::TopicPolicy").values()
    allows = {s["Sid"]: s for s in _statements(policy) if s["Effect"] == "Allow"}
    assert set(allows) == {"ClientPublishesLaptop", "ClientPublishesCi", "ClientPublishesOps"}
    assert allows["ClientPublishesLaptop"]["Principal"] == {"AWS": LAPTOP_ROLE}
    assert all(s["Action"] == "sns:Publish" for s in allows.values())


def _client_policy(template: Template, client: str) -> dict[str, dict[str, Any]]:
    policies = template.find_resources("AWS::IAM::ManagedPolicy")
    (policy,) = [p for p in policies.values() if f"client {client}:" in p["Properties"]["Description"]]
    return {s["Sid"]: s for s in _statements(policy)}


def _queue_name_pattern(resource: Any) -> str:
    """The queue-name part of an `arn:...:sqs:<region>:<account>:<name pattern>` Fn::Join."""
    parts = resource["Fn::Join"][1]
    assert len(parts) == 7, parts
    assert parts[:6] == ["arn:", {"Ref": "AWS::Partition"}, ":sqs:", {"Ref": "AWS::Region"}, ":",
                         {"Ref": "AWS::AccountId"}], parts  # fmt: skip
    return str(parts[6]).removeprefix(":")


def test_client_identity_policy(template: Template) -> None:
    statements = _client_policy(template, "laptop")
    assert statements["PublishRequests"]["Action"] == "sns:Publish"
    assert statements["ClientReadsOwnReplies"]["Resource"] == _arn_of(template, "acme-reply-laptop")
    assert statements["ClientReadsOwnReplies"]["Action"] == READ_ACTIONS
    connection = statements["OwnPerConnectionReplyQueues"]
    assert _queue_name_pattern(connection["Resource"]) == SAMPLE.client_connection_prefix("laptop") + "*"
    assert _queue_name_pattern(connection["Resource"]) == "acme-reply-conn-laptop_*"
    assert set(_actions(connection)) == CONNECTION_ACTIONS
    assert "sqs:SendMessage" not in _actions(connection)
    assert set(statements) == {"PublishRequests", "ClientReadsOwnReplies", "OwnPerConnectionReplyQueues"}


CLIENTS = [c.name for c in SAMPLE.clients]


@pytest.mark.parametrize("client", CLIENTS)
def test_client_manages_only_its_own_connection_queues(template: Template, client: str) -> None:
    """Issue 7, item 2: no client's policy covers another client's per-connection queues, nor a
    provisioned reply queue, a request queue or a DLQ."""
    patterns = [
        _queue_name_pattern(s["Resource"])
        for s in _client_policy(template, client).values()
        if isinstance(s["Resource"], dict) and "Fn::Join" in s["Resource"]
    ]
    assert patterns == [f"acme-reply-conn-{client}_*"]
    (pattern,) = patterns
    random = "0123456789abcdef"
    assert fnmatchcase(f"{SAMPLE.client_connection_prefix(client)}{random}", pattern)
    others = [f"{SAMPLE.client_connection_prefix(o)}{random}" for o in CLIENTS if o != client]
    # names another client could never create but that look close to this client's
    others += [
        f"acme-reply-conn-{client}x_{random}",
        f"acme-reply-conn-{client}",
        f"acme-reply-conn-_{random}",
    ]
    others += [q.name for q in SHAPE.queues]
    for name in others:
        assert not fnmatchcase(name, pattern), (client, name)


@pytest.mark.parametrize("client", CLIENTS)
def test_no_client_prefix_is_a_prefix_of_another(client: str) -> None:
    """Client names have no `_`, so `conn-<a>_` never starts `conn-<b>_` for another client b."""
    mine = SAMPLE.client_connection_prefix(client)
    assert re.fullmatch(r"acme-reply-conn-[a-z0-9-]+_", mine)
    for other in CLIENTS:
        if other != client:
            assert not SAMPLE.client_connection_prefix(other).startswith(mine)


def test_sweeper_deletes_only_connection_queues(template: Template) -> None:
    function = logical_id_of(template, "AWS::Lambda::Function", FunctionName="acme-orphan_sweeper")
    properties = template.find_resources("AWS::Lambda::Function")[function]["Properties"]
    role = properties["Role"]["Fn::GetAtt"][0]
    (policy,) = [
        p
        for p in template.find_resources("AWS::IAM::Policy").values()
        if {"Ref": role} in p["Properties"]["Roles"]
    ]
    statements = _statements(policy)
    log_group = properties["LoggingConfig"]["LogGroup"]["Ref"]
    assert statements == [
        {"Action": ["logs:CreateLogStream", "logs:PutLogEvents"], "Effect": "Allow",
         "Resource": {"Fn::GetAtt": [log_group, "Arn"]}},
        {"Sid": "ListQueues", "Action": "sqs:ListQueues", "Effect": "Allow", "Resource": "*"},
        {"Sid": "SweepConnectionQueues", "Action": ["sqs:GetQueueAttributes", "sqs:DeleteQueue"],
         "Effect": "Allow", "Resource": statements[2]["Resource"]},
    ]  # fmt: skip
    pattern = _queue_name_pattern(statements[2]["Resource"])
    assert pattern == "acme-reply-conn-*" == SAMPLE.connection_queue_prefix + "*"
    for queue in SHAPE.queues:  # request queues, DLQs, provisioned reply queues
        assert not fnmatchcase(queue.name, pattern), queue.name
    roles = template.find_resources("AWS::IAM::Role")
    assert "ManagedPolicyArns" not in roles[role]["Properties"]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("account", iam.AccountRootPrincipal),
        ("123456789012", iam.AccountPrincipal),
        ("arn:aws:iam::123456789012:root", iam.AccountPrincipal),
        ("arn:aws:iam::123456789012:role/agent", iam.ArnPrincipal),
        ("arn:aws:iam::123456789012:user/alice", iam.ArnPrincipal),
    ],
)
def test_principal_spellings(spec: str, expected: type) -> None:
    assert isinstance(client_principal(spec), expected)
