"""Find a deployed dMCP stack by its CloudFormation stack name.

The CDK stack publishes what a client or the `dmcp` command needs as stack outputs; this
module reads them back:

    >>> stack = await resolve_stack("dmcp")                   # aioboto3; or resolve_stack_sync
    >>> transport = sqs_client_transport(stack.topic_target("example"), **stack.client_options("laptop"))
    >>> async with Client(transport):
    ...     ...

`endpoint_url` points at LocalStack (`http://127.0.0.1:4566`) instead of AWS.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from dmcp_aws.client import QueueTarget, TopicTarget
from dmcp_aws.naming import CONNECTION_QUEUE_PREFIX, CONNECTION_QUEUE_SEPARATOR


class Output:
    """The stack output keys (the CDK stack writes them; `DeployedStack.from_outputs` reads them)."""

    TOPIC_ARN: Final = "TopicArn"
    REPLY_PREFIX: Final = "ReplyPrefix"
    REQUEST_QUEUE_URLS: Final = "RequestQueueUrls"
    """JSON object: server name -> request queue URL (includes the catch-all, `unrouted`)."""
    DEAD_LETTER_QUEUE_URLS: Final = "DeadLetterQueueUrls"
    """JSON object: server name -> dead-letter queue URL."""
    REPLY_QUEUE_URLS: Final = "ReplyQueueUrls"
    """JSON object: provisioned client name -> reply queue URL."""
    CLIENT_POLICY_ARNS: Final = "ClientPolicyArns"
    """JSON object: provisioned client name -> ARN of the managed policy its identities attach."""
    CONNECTION_QUEUE_PREFIXES: Final = "ConnectionQueuePrefixes"
    """JSON object: provisioned client name -> the prefix its per-connection reply queues are
    created under (`<reply prefix>conn-<client>_`; its policy allows no other)."""


class StackNotFound(LookupError):
    """No stack of that name, or it is not a dMCP stack (outputs missing)."""


@dataclass(frozen=True)
class DeployedStack:
    """Where a deployed dMCP stack's requests go and replies come from."""

    name: str
    topic_arn: str
    reply_prefix: str
    request_queue_urls: dict[str, str] = field(default_factory=dict)
    dead_letter_queue_urls: dict[str, str] = field(default_factory=dict)
    reply_queue_urls: dict[str, str] = field(default_factory=dict)
    client_policy_arns: dict[str, str] = field(default_factory=dict)
    connection_queue_prefixes: dict[str, str] = field(default_factory=dict)
    region: str | None = None
    endpoint_url: str | None = None

    @classmethod
    def from_outputs(
        cls,
        name: str,
        outputs: Mapping[str, str],
        *,
        region: str | None = None,
        endpoint_url: str | None = None,
    ) -> DeployedStack:
        """Build from a stack's outputs (`OutputKey` -> `OutputValue`)."""
        missing = [
            k for k in (Output.TOPIC_ARN, Output.REPLY_PREFIX, Output.REQUEST_QUEUE_URLS) if k not in outputs
        ]
        if missing:
            raise StackNotFound(
                f"stack {name!r} is not a dMCP stack: outputs {', '.join(missing)} are missing"
            )

        def mapping(key: str) -> dict[str, str]:
            return {str(k): str(v) for k, v in json.loads(outputs.get(key) or "{}").items()}

        return cls(
            name=name,
            topic_arn=outputs[Output.TOPIC_ARN],
            reply_prefix=outputs[Output.REPLY_PREFIX],
            request_queue_urls=mapping(Output.REQUEST_QUEUE_URLS),
            dead_letter_queue_urls=mapping(Output.DEAD_LETTER_QUEUE_URLS),
            reply_queue_urls=mapping(Output.REPLY_QUEUE_URLS),
            client_policy_arns=mapping(Output.CLIENT_POLICY_ARNS),
            connection_queue_prefixes=mapping(Output.CONNECTION_QUEUE_PREFIXES),
            region=region,
            endpoint_url=endpoint_url,
        )

    @property
    def servers(self) -> list[str]:
        return sorted(self.request_queue_urls)

    def topic_target(self, server: str) -> TopicTarget:
        """Publish requests for `server` to the request topic."""
        return TopicTarget(topic_arn=self.topic_arn, server=server)

    def queue_target(self, server: str) -> QueueTarget:
        """Send requests straight to `server`'s request queue."""
        try:
            return QueueTarget(queue_url=self.request_queue_urls[server], server=server)
        except KeyError:
            raise KeyError(
                f"stack {self.name!r} serves no {server!r}; it serves {', '.join(self.servers)}"
            ) from None

    @property
    def connection_queue_prefix(self) -> str:
        """Every client's per-connection reply queues are named under this (`<reply prefix>conn-`);
        the stack's sweeper deletes the idle ones."""
        return f"{self.reply_prefix}{CONNECTION_QUEUE_PREFIX}"

    def client_connection_prefix(self, client: str) -> str:
        """The prefix provisioned client `client` creates its per-connection reply queues under."""
        if client not in self.reply_queue_urls and client not in self.connection_queue_prefixes:
            known = ", ".join(sorted(set(self.reply_queue_urls) | set(self.connection_queue_prefixes)))
            raise KeyError(f"stack {self.name!r} has no client {client!r}; provisioned: {known or 'none'}")
        return self.connection_queue_prefixes.get(
            client, f"{self.connection_queue_prefix}{client}{CONNECTION_QUEUE_SEPARATOR}"
        )

    def client_options(self, client: str | None = None, **overrides: Any) -> dict[str, Any]:
        """Keyword arguments for `sqs_client_transport`: for provisioned client `client`, its reply
        queue and its own per-connection prefix (`<reply prefix>conn-<client>_`, the only one its
        policy lets it create queues under); with no client, the deployment-wide prefix
        `<reply prefix>conn-` (for identities with their own rights on it)."""
        options: dict[str, Any] = {"reply_prefix": self.connection_queue_prefix}
        if client is not None:
            try:
                options["reply_queue_url"] = self.reply_queue_urls[client]
            except KeyError:
                known = ", ".join(sorted(self.reply_queue_urls)) or "none"
                raise KeyError(
                    f"stack {self.name!r} has no client {client!r}; provisioned: {known}"
                ) from None
            options["reply_prefix"] = self.client_connection_prefix(client)
        if self.endpoint_url:
            options["endpoint_url"] = self.endpoint_url
        if self.region:
            options["region_name"] = self.region
        return options | overrides


def _outputs(response: Mapping[str, Any], name: str) -> dict[str, str]:
    stacks = response.get("Stacks") or []
    if not stacks:
        raise StackNotFound(f"no stack named {name!r}")
    return {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}


async def resolve_stack(
    name: str, *, session: Any = None, region_name: str | None = None, endpoint_url: str | None = None
) -> DeployedStack:
    """Read the outputs of the CloudFormation stack `name` (aioboto3)."""
    import aioboto3
    from botocore.exceptions import ClientError

    session = session or aioboto3.Session()
    async with session.client("cloudformation", region_name=region_name, endpoint_url=endpoint_url) as cfn:
        try:
            response = await cfn.describe_stacks(StackName=name)
        except ClientError as exc:
            raise StackNotFound(f"no stack named {name!r}: {exc}") from None
        region = region_name or cfn.meta.region_name
    return DeployedStack.from_outputs(
        name, _outputs(response, name), region=region, endpoint_url=endpoint_url
    )


def resolve_stack_sync(
    name: str, *, session: Any = None, region_name: str | None = None, endpoint_url: str | None = None
) -> DeployedStack:
    """`resolve_stack` with boto3, for synchronous callers such as the `dmcp` command."""
    import boto3
    from botocore.exceptions import ClientError

    cfn = (session or boto3.Session()).client(
        "cloudformation", region_name=region_name, endpoint_url=endpoint_url
    )
    try:
        response = cfn.describe_stacks(StackName=name)
    except ClientError as exc:
        raise StackNotFound(f"no stack named {name!r}: {exc}") from None
    region = region_name or cfn.meta.region_name
    return DeployedStack.from_outputs(
        name, _outputs(response, name), region=region, endpoint_url=endpoint_url
    )
