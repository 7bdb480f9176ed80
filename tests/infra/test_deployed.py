"""Pointing a client or the `dmcp` command at a deployed stack by its name."""

from __future__ import annotations

import json

import boto3
import pytest
from aws_cdk.assertions import Template
from moto import mock_aws

from dmcp_aws.client import QueueTarget, TopicTarget
from dmcp_aws.deployed import DeployedStack, Output, StackNotFound, resolve_stack, resolve_stack_sync

pytestmark = pytest.mark.anyio

TOPIC = "arn:aws:sns:eu-west-1:123456789012:acme-requests"
REQUESTS = "https://sqs.eu-west-1.amazonaws.com/123456789012/acme-example-requests"
REPLIES = "https://sqs.eu-west-1.amazonaws.com/123456789012/acme-reply-laptop"
OUTPUTS = {
    Output.TOPIC_ARN: TOPIC,
    Output.REPLY_PREFIX: "acme-reply-",
    Output.REQUEST_QUEUE_URLS: json.dumps({"example": REQUESTS}),
    Output.REPLY_QUEUE_URLS: json.dumps({"laptop": REPLIES}),
    Output.CONNECTION_QUEUE_PREFIXES: json.dumps({"laptop": "acme-reply-conn-laptop_"}),
}


def test_from_outputs_and_targets() -> None:
    stack = DeployedStack.from_outputs("acme", OUTPUTS, region="eu-west-1")
    assert stack.topic_target("example") == TopicTarget(topic_arn=TOPIC, server="example")
    assert stack.queue_target("example") == QueueTarget(queue_url=REQUESTS, server="example")
    assert stack.client_options("laptop") == {
        "reply_prefix": "acme-reply-conn-laptop_", "reply_queue_url": REPLIES, "region_name": "eu-west-1",
    }  # fmt: skip
    assert stack.client_options()["reply_prefix"] == "acme-reply-conn-"
    assert stack.connection_queue_prefix == "acme-reply-conn-"
    with pytest.raises(KeyError, match="no client 'bot'"):
        stack.client_options("bot")
    with pytest.raises(KeyError, match="serves no 'nope'"):
        stack.queue_target("nope")


def test_connection_prefix_per_client() -> None:
    """A client's per-connection queues go under its own prefix, the only one its policy allows
    (the `ConnectionQueuePrefixes` output; computed the same way for a stack without it)."""
    stack = DeployedStack.from_outputs("acme", OUTPUTS)
    assert stack.connection_queue_prefixes == {"laptop": "acme-reply-conn-laptop_"}
    assert stack.client_connection_prefix("laptop") == "acme-reply-conn-laptop_"
    older = DeployedStack.from_outputs(
        "acme", {k: v for k, v in OUTPUTS.items() if k != Output.CONNECTION_QUEUE_PREFIXES}
    )
    assert older.client_options("laptop")["reply_prefix"] == "acme-reply-conn-laptop_"
    with pytest.raises(KeyError, match="no client 'bot'"):
        stack.client_connection_prefix("bot")


def test_outputs_the_stack_writes_are_read(template: Template) -> None:
    """Every output key `DeployedStack` reads is one the CDK stack writes."""
    written = set(template.to_json()["Outputs"])
    read = {v for k, v in vars(Output).items() if k.isupper()}
    assert read <= written, read - written


def test_not_a_dmcp_stack() -> None:
    with pytest.raises(StackNotFound, match="TopicArn"):
        DeployedStack.from_outputs("other", {"Something": "x"})


def _create_stack() -> None:
    template = {
        "Resources": {"Nothing": {"Type": "AWS::SNS::Topic"}},
        "Outputs": {key: {"Value": value} for key, value in OUTPUTS.items()},
    }
    boto3.client("cloudformation", region_name="eu-west-1").create_stack(
        StackName="acme", TemplateBody=json.dumps(template)
    )


@mock_aws
def test_resolve_stack_sync_reads_outputs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    _create_stack()
    stack = resolve_stack_sync("acme", region_name="eu-west-1")
    assert stack.request_queue_urls == {"example": REQUESTS} and stack.region == "eu-west-1"
    with pytest.raises(StackNotFound):
        resolve_stack_sync("missing", region_name="eu-west-1")


async def test_resolve_stack_over_the_embedded_endpoint() -> None:
    """The aioboto3 path, against moto's server on 127.0.0.1 (as for LocalStack's endpoint)."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        import aioboto3

        session = aioboto3.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name="eu-west-1"
        )
        template = {"Resources": {"Nothing": {"Type": "AWS::SNS::Topic"}},
                    "Outputs": {k: {"Value": v} for k, v in OUTPUTS.items()}}  # fmt: skip
        async with session.client("cloudformation", endpoint_url=endpoint) as cfn:
            await cfn.create_stack(StackName="acme", TemplateBody=json.dumps(template))
        stack = await resolve_stack("acme", session=session, endpoint_url=endpoint)
        assert stack.topic_arn == TOPIC and stack.endpoint_url == endpoint
        assert stack.client_options("laptop")["endpoint_url"] == endpoint
    finally:
        server.stop()
