"""Orphaned per-connection reply queues (issue 7, item 12) on the embedded stack: the sweeper
deletes exactly the idle queues under its prefix, by itself, as the Lambda function and as
`dmcp sweep`, and a client killed with SIGKILL leaves a queue the sweeper then removes.

Every test sweeps its own sub-prefix of the deployment's connection prefix (`<reply prefix>conn-`),
so queues of other tests' clients sharing the session's stack are never at risk. Idleness is
reached by sweeping with `now` in the future rather than by waiting.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from dmcp_aws.client import DELETE_DELAY_S
from dmcp_aws.local.stack import RunningStack
from dmcp_aws.sweep import handler, queue_name, sweep_orphaned_queues

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

ROOT = Path(__file__).resolve().parents[2]
IDLE_S = 3600


@pytest.fixture
async def prefix(stack: RunningStack, sqs: Any) -> AsyncIterator[str]:
    """A fresh client-like prefix under the deployment's connection prefix (`...conn-sweepXXXX_`);
    whatever is left under it is deleted afterwards."""
    mine = f"{stack.connection_queue_prefix}sweep{secrets.token_hex(3)}_"
    yield mine
    for url in (await sqs.list_queues(QueueNamePrefix=mine)).get("QueueUrls", []):
        await sqs.delete_queue(QueueUrl=url)


async def _create(sqs: Any, name: str) -> str:
    return str((await sqs.create_queue(QueueName=name))["QueueUrl"])


async def _names(sqs: Any, prefix: str) -> set[str]:
    return {queue_name(u) for u in (await sqs.list_queues(QueueNamePrefix=prefix)).get("QueueUrls", [])}


async def _last_sign_of_life(sqs: Any, url: str) -> float:
    found = (
        await sqs.get_queue_attributes(
            QueueUrl=url, AttributeNames=["CreatedTimestamp", "LastModifiedTimestamp"]
        )
    )["Attributes"]
    return max(float(found["CreatedTimestamp"]), float(found["LastModifiedTimestamp"]))


async def test_only_idle_queues_under_the_prefix_are_deleted(
    stack: RunningStack, sqs: Any, prefix: str
) -> None:
    idle = [await _create(sqs, f"{prefix}{i:016x}") for i in range(3)]
    touched = await _create(sqs, f"{prefix}{10:016x}")
    being_read = await _create(sqs, f"{prefix}{11:016x}")
    # a sibling prefix (another client's queues) and a queue outside the connection prefix
    sibling = await _create(sqs, f"{prefix.rstrip('_')}x_{0:016x}")
    outside = await _create(sqs, f"{stack.deployment.name}-sweeptest-{secrets.token_hex(3)}")
    try:
        await anyio.sleep(1.1)  # the touch below must be a later second than the creations
        # a live client touches its queue (SetQueueAttributes moves LastModifiedTimestamp) ...
        await sqs.set_queue_attributes(QueueUrl=touched, Attributes={"MessageRetentionPeriod": "3600"})
        # ... and a reader holds a message of this one in flight
        await sqs.send_message(QueueUrl=being_read, MessageBody="reply")
        await sqs.receive_message(QueueUrl=being_read, VisibilityTimeout=600, WaitTimeSeconds=1)

        oldest = max([await _last_sign_of_life(sqs, u) for u in [*idle, being_read]])
        assert await _last_sign_of_life(sqs, touched) > oldest
        now = oldest + IDLE_S  # idle for exactly the limit: orphaned; the touched one is not

        assert await sweep_orphaned_queues(sqs, prefix, IDLE_S, now=time.time()) == []  # nothing idle yet
        deleted = await sweep_orphaned_queues(sqs, prefix, IDLE_S, now=now, page_size=2)  # paginated
        assert sorted(deleted) == sorted(idle)
        assert await _names(sqs, prefix) == {queue_name(touched), queue_name(being_read)}
        assert queue_name(sibling) in await _names(sqs, prefix.rstrip("_"))
        assert await _names(sqs, queue_name(outside)) == {queue_name(outside)}
        # the provisioned reply queue and the request queues are untouched
        for name in [q.name for q in stack.topology.queues]:
            assert await _names(sqs, name), name
    finally:
        for url in (sibling, outside):
            await sqs.delete_queue(QueueUrl=url)


class _DeletesFirst:
    """The real SQS client, except that the named queue is deleted just before it is inspected
    (as when its client closes while the sweeper runs)."""

    def __init__(self, sqs: Any, doomed: str) -> None:
        self._sqs, self._doomed = sqs, doomed

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sqs, name)

    async def get_queue_attributes(self, **kwargs: Any) -> Any:
        if kwargs["QueueUrl"] == self._doomed:
            await self._sqs.delete_queue(QueueUrl=self._doomed)
        return await self._sqs.get_queue_attributes(**kwargs)


async def test_a_queue_deleted_meanwhile_is_not_an_error(sqs: Any, prefix: str) -> None:
    gone = await _create(sqs, f"{prefix}{1:016x}")
    orphan = await _create(sqs, f"{prefix}{2:016x}")
    deleted = await sweep_orphaned_queues(
        _DeletesFirst(sqs, gone), prefix, IDLE_S, now=time.time() + 2 * IDLE_S
    )
    assert deleted == [orphan]
    assert await _names(sqs, prefix) == set()


async def test_the_lambda_handler_sweeps_its_prefix(
    stack: RunningStack, sqs: Any, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`dmcp_aws.sweep.handler` as the scheduled function runs it: settings from the environment,
    AWS endpoint and credentials from the environment too (the embedded stack's)."""
    await _create(sqs, f"{prefix}{1:016x}")
    monkeypatch.setenv("DMCP_CONNECTION_PREFIX", prefix)
    monkeypatch.setenv("DMCP_ORPHAN_QUEUE_IDLE_S", "0")
    assert os.environ["AWS_ENDPOINT_URL"] == stack.endpoint_url
    result = await anyio.to_thread.run_sync(handler, {"source": "aws.events"}, None)
    assert result == {"prefix": prefix, "idle_s": 0, "deleted": [f"{prefix}{1:016x}"]}
    assert await _names(sqs, prefix) == set()


def _cli_env(stack: RunningStack) -> dict[str, str]:
    from dmcp_aws.cli import client_settings

    kept = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "DMCP_", "POWERTOOLS_"))}
    return kept | client_settings(stack)


async def test_dmcp_sweep_command(stack: RunningStack, sqs: Any, prefix: str) -> None:
    """`dmcp sweep` with the environment `dmcp dev` writes: the default idle limit keeps fresh
    queues; `--idle-seconds 0` takes every queue under the prefix."""
    url = await _create(sqs, f"{prefix}{1:016x}")
    env = _cli_env(stack)
    assert env["DMCP_CONNECTION_PREFIX"] == stack.connection_queue_prefix

    def dmcp(*arguments: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "dmcp_aws", "sweep", "--prefix", prefix, *arguments]
        return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)

    kept = await anyio.to_thread.run_sync(dmcp)
    assert kept.returncode == 0, kept.stderr
    assert "swept 0 orphaned queue(s)" in kept.stdout
    assert await _names(sqs, prefix) == {queue_name(url)}
    swept = await anyio.to_thread.run_sync(dmcp, "--idle-seconds", "0")
    assert swept.returncode == 0, swept.stderr
    assert f"deleted {queue_name(url)}" in swept.stdout and "swept 1 orphaned queue(s)" in swept.stdout
    assert await _names(sqs, prefix) == set()


KILLED_CLIENT = textwrap.dedent(
    """
    import os, sys, anyio, aioboto3
    from mcp import Client
    from dmcp_aws.client import TopicTarget, sqs_client_transport

    async def main() -> None:
        session = aioboto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing",
                                   region_name="us-east-1")
        transport = sqs_client_transport(
            TopicTarget(os.environ["DMCP_TOPIC_ARN"], "example"),
            reply_prefix=os.environ["DMCP_REPLY_PREFIX"],
            endpoint_url=os.environ["DMCP_ENDPOINT_URL"],
            session=session,
        )
        async with Client(transport) as client:
            await client.list_tools()
            print("connected", flush=True)
            await anyio.sleep_forever()

    anyio.run(main)
    """
)


async def test_a_client_killed_with_sigkill_leaves_a_queue_the_sweeper_removes(
    stack: RunningStack, sqs: Any, prefix: str
) -> None:
    env = _cli_env(stack) | {"DMCP_REPLY_PREFIX": prefix}
    client = subprocess.Popen(
        [sys.executable, "-c", KILLED_CLIENT],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert client.stdout is not None
        line = await anyio.to_thread.run_sync(client.stdout.readline)
        assert line.strip() == "connected", client.stderr.read() if client.stderr else ""
        (left,) = await _names(sqs, prefix)  # the live connection's queue
        assert await sweep_orphaned_queues(sqs, prefix, IDLE_S) == []  # alive: kept
        # (its answers are deleted DELETE_DELAY_S after hand-off: till then they are in flight,
        # the queue looks read and the sweeper keeps it)
        await anyio.sleep(DELETE_DELAY_S + 0.5)
    finally:
        client.send_signal(signal.SIGKILL)
        await anyio.to_thread.run_sync(client.wait)
    assert await _names(sqs, prefix) == {left}  # SIGKILL: nobody deleted it
    deleted = await sweep_orphaned_queues(sqs, prefix, IDLE_S, now=time.time() + IDLE_S + 1)
    assert [queue_name(u) for u in deleted] == [left]
    assert await _names(sqs, prefix) == set()


async def test_dmcp_dev_sweeps_in_the_background(stack: RunningStack, sqs: Any, prefix: str) -> None:
    """`dmcp dev` runs `sweep_periodically` for as long as the stack runs (every few minutes;
    here every 50 ms, and with no idle time)."""
    from dmcp_aws.cli import DEV_SWEEP_INTERVAL_S, sweep_periodically

    assert 60 <= DEV_SWEEP_INTERVAL_S <= stack.deployment.orphan_queue_idle_s
    await _create(sqs, f"{prefix}{1:016x}")
    async with anyio.create_task_group() as tg:
        tg.start_soon(sweep_periodically, stack, 0.05, 0, prefix)
        with anyio.fail_after(10):
            while await _names(sqs, prefix):
                await anyio.sleep(0.05)
        await _create(sqs, f"{prefix}{2:016x}")  # a later orphan goes too: it keeps sweeping
        with anyio.fail_after(10):
            while await _names(sqs, prefix):
                await anyio.sleep(0.05)
        tg.cancel_scope.cancel()


async def test_embedded_stack_connection_prefixes_and_served_names(stack: RunningStack) -> None:
    """Clients of the embedded stack create their queues under the first provisioned client's
    prefix (what its policy would allow in a deployed stack), workers know every served name, and
    `dmcp dev` writes both prefixes."""
    from dmcp_aws.cli import client_settings
    from dmcp_aws.deployment import Deployment, ServerSpec, topology
    from dmcp_aws.local.provision import Provisioned

    assert [c.name for c in stack.deployment.clients] == ["laptop"]
    assert stack.client_options()["reply_prefix"] == "dmcp-reply-conn-laptop_"
    assert stack.client_options("laptop")["reply_prefix"] == "dmcp-reply-conn-laptop_"
    with pytest.raises(KeyError, match="no client 'bot'"):
        stack.client_options("bot")
    settings = client_settings(stack)
    assert settings["DMCP_REPLY_PREFIX"] == "dmcp-reply-conn-laptop_"
    assert settings["DMCP_CONNECTION_PREFIX"] == "dmcp-reply-conn-"

    no_clients = Deployment(name="solo", servers=[ServerSpec(name="a"), ServerSpec(name="b")])
    bare = RunningStack(
        "http://127.0.0.1:9", "us-east-1", no_clients, topology(no_clients), Provisioned("arn")
    )
    assert bare.client_options()["reply_prefix"] == "solo-reply-conn-"


async def test_dmcp_sweep_finds_a_deployed_stack_by_name(stack: RunningStack, sqs: Any, prefix: str) -> None:
    """`dmcp sweep --stack NAME` reads the stack's outputs (CloudFormation; here moto's) and
    sweeps `<ReplyPrefix>conn-` with the default idle limit, which keeps every fresh queue."""
    import json

    from dmcp_aws.deployed import Output

    url = await _create(sqs, f"{prefix}{1:016x}")
    name = f"sweep-{secrets.token_hex(3)}"
    outputs = {
        Output.TOPIC_ARN: stack.topic_arn,
        Output.REPLY_PREFIX: stack.reply_prefix,
        Output.REQUEST_QUEUE_URLS: json.dumps(
            {"example": stack.queue_url(stack.worker("example").request_queue)}
        ),
    }
    template = {
        "Resources": {"Nothing": {"Type": "AWS::SNS::Topic"}},
        "Outputs": {key: {"Value": value} for key, value in outputs.items()},
    }
    async with stack.session().client("cloudformation", endpoint_url=stack.endpoint_url) as cfn:
        await cfn.create_stack(StackName=name, TemplateBody=json.dumps(template))
    env = {
        k: v for k, v in _cli_env(stack).items() if k not in ("DMCP_CONNECTION_PREFIX", "DMCP_ENDPOINT_URL")
    }
    command = [
        sys.executable,
        "-m",
        "dmcp_aws",
        "sweep",
        "--stack",
        name,
        "--endpoint-url",
        stack.endpoint_url,
    ]
    done = await anyio.to_thread.run_sync(
        lambda: subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    )
    assert done.returncode == 0, done.stderr + done.stdout
    assert f"under {stack.connection_queue_prefix} (idle for at least 3600 s)" in done.stdout
    assert await _names(sqs, prefix) == {queue_name(url)}
