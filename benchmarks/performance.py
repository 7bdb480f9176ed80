"""Performance against the floor, all measured in one run on one moto process (`make bench`).

    .venv/bin/python benchmarks/performance.py [--calls 200] [--rounds 2] [--no-peer] [--only connect]

The floor is a bare aioboto3 SNS → SQS → SQS ping-pong (publish to a topic, an echo poller
receives from the subscribed queue, sends the body to the caller's reply queue and deletes the
request; the caller long-polls its reply queue): what any MCP-free request/response over these
services costs. Against it, on the embedded stack (the real Lambda handler behind the event
source mapping emulation), a `mcp.Client` calls:
- `echo`, annotated read-only: how the kit is deployed by default (it skips the request ledger);
- `echo_once`, the same tool not annotated: it runs once, through the ledger (two DynamoDB writes);
- `echo` on a deployment without a ledger.
Latency is the median of sequential calls, interleaved so that every variant sees the same
machine, each after a short pause (so none pays for the work the previous one left behind);
throughput is calls per second with 10 calls in flight on one client, and with 10 clients making
calls one after another. AWS calls are counted by a hook on botocore's (and aiobotocore's)
`_make_api_call`, over everything in the process (client, workers, pollers).
Then: what connecting costs, and the cold import of the Lambda handler. Every figure is a ratio
to a baseline measured in the same run; the machines are noisy, the absolute numbers are not the
point. The nearest peer library, asyncmcp (SNS+SQS transport, `echo` on one server process), runs
in a venv of its own as a subprocess on the same moto and is interleaved like the rest
(benchmarks/asyncmcp_row.py; `--no-peer` leaves it out, and it is skipped if its venv cannot be built).
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from asyncmcp_row import KEY as PEER
from asyncmcp_row import Peer
from botocore.config import Config
from mcp import Client

from dmcp_aws.client import sqs_client_transport
from dmcp_aws.connect import connect, forget_discovered
from dmcp_aws.deployment import Deployment
from dmcp_aws.local.stack import RunningStack, embedded_stack

ROOT = Path(__file__).resolve().parents[1]
BENCH = {
    "name": "bench",
    "servers": [{"name": "bench", "handler": "benchmarks.bench_server.handler", "max_concurrency": 5}],
    "clients": [{"name": "bencher", "principal": "account"}],
}
IN_FLIGHT = 10
CLIENTS = 10
SETTLE_SECONDS = 0.025
"""Pause before each sequential call: a call leaves work behind (deletes, the next polls) that would
otherwise slow whichever variant comes next in the interleaving (by about 5 ms here)."""

Call = Callable[[], Awaitable[Any]]


class AwsCalls:
    """Counts the AWS API calls this process makes (a hook on `_make_api_call`), and lists those
    made in a context that asked for it (`mine`: a connection's, not the stack's workers')."""

    def __init__(self) -> None:
        self.count = 0
        self.by_operation: Counter[str] = Counter()
        self.mine: ContextVar[list[str] | None] = ContextVar("aws_calls_mine", default=None)

    def install(self) -> None:
        from aiobotocore.client import AioBaseClient
        from botocore.client import BaseClient

        sync_call, async_call = BaseClient._make_api_call, AioBaseClient._make_api_call
        counter = self

        def counted_sync(client: Any, operation: str, params: Any) -> Any:
            counter.count += 1
            counter.by_operation[operation] += 1
            return sync_call(client, operation, params)

        async def counted_async(client: Any, operation: str, params: Any) -> Any:
            counter.count += 1
            counter.by_operation[operation] += 1
            if (mine := counter.mine.get()) is not None:
                mine.append(operation)
            return await async_call(client, operation, params)

        BaseClient._make_api_call = counted_sync  # type: ignore[method-assign]
        AioBaseClient._make_api_call = counted_async  # type: ignore[method-assign]

    def add(self, operations: Counter[str]) -> None:
        """Calls another process made (the peer's), counted as this one's."""
        self.count += sum(operations.values())
        self.by_operation += operations


CALLS = AwsCalls()


def note(message: str) -> None:
    """Progress on stderr (the figures go to stdout)."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


async def sequential(call: Call, count: int) -> list[float]:
    latencies = []
    for _ in range(count):
        started = time.perf_counter()
        await call()
        latencies.append((time.perf_counter() - started) * 1000)
    return latencies


async def in_flight(calls: list[Call], count: int) -> tuple[float, float]:
    """Calls/s with one lane per entry of `calls` (each lane one call at a time), and AWS calls
    per call made meanwhile."""
    remaining = iter(range(count))

    async def lane(call: Call) -> None:
        for _ in remaining:
            await call()

    before = CALLS.count
    started = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for call in calls:
            tg.start_soon(lane, call)
    elapsed = time.perf_counter() - started
    return count / elapsed, (CALLS.count - before) / count


@dataclass
class Figures:
    latencies: list[float] = field(default_factory=list)
    one_client: list[tuple[float, float]] = field(default_factory=list)
    many_clients: list[tuple[float, float]] = field(default_factory=list)
    operations: Counter[str] = field(default_factory=Counter)
    """AWS calls by operation over the 10-in-flight runs."""
    invocations: int = 0
    """Worker invocations over the 10-in-flight runs."""
    calls_made: int = 0

    def median_ms(self) -> float:
        return statistics.median(self.latencies)

    def rate(self, runs: list[tuple[float, float]]) -> float:
        return statistics.median(r for r, _ in runs)

    def calls_per_call(self) -> float:
        return statistics.median(c for _, c in self.one_client)


@asynccontextmanager
async def floor(stack: RunningStack, lanes: int) -> AsyncIterator[list[Call]]:
    """`lanes` callers of a bare SNS → SQS → SQS ping-pong (one reply queue each)."""
    session = stack.session()
    pool = Config(max_pool_connections=2 * lanes + 16)  # every long poll holds a connection
    async with (
        session.client("sqs", endpoint_url=stack.endpoint_url, config=pool) as sqs,
        session.client("sns", endpoint_url=stack.endpoint_url, config=pool) as sns,
    ):
        topic = (await sns.create_topic(Name="bench-floor"))["TopicArn"]
        requests = (await sqs.create_queue(QueueName="bench-floor-requests"))["QueueUrl"]
        arn = (await sqs.get_queue_attributes(QueueUrl=requests, AttributeNames=["QueueArn"]))["Attributes"]
        await sns.subscribe(
            TopicArn=topic,
            Protocol="sqs",
            Endpoint=arn["QueueArn"],
            Attributes={"RawMessageDelivery": "true"},
        )
        replies = [
            (await sqs.create_queue(QueueName=f"{stack.reply_prefix}floor-{i}"))["QueueUrl"]
            for i in range(lanes)
        ]
        waiting: dict[str, anyio.Event] = {}
        counter = iter(range(10**9))

        async def echo_worker() -> None:
            while True:
                got = await sqs.receive_message(
                    QueueUrl=requests,
                    MaxNumberOfMessages=10,
                    WaitTimeSeconds=20,
                    MessageAttributeNames=["All"],
                )
                for message in got.get("Messages", []):
                    reply = message["MessageAttributes"]["reply"]["StringValue"]
                    await sqs.send_message(QueueUrl=reply, MessageBody=message["Body"])
                    await sqs.delete_message(QueueUrl=requests, ReceiptHandle=message["ReceiptHandle"])

        async def reader(reply: str) -> None:
            while True:
                got = await sqs.receive_message(QueueUrl=reply, MaxNumberOfMessages=10, WaitTimeSeconds=20)
                messages = got.get("Messages", [])
                for message in messages:  # hand over first, then delete (as the client transport does)
                    if (done := waiting.pop(message["Body"], None)) is not None:
                        done.set()  # (moto may hand one message to two receivers at once)
                if messages:
                    entries = [
                        {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)
                    ]
                    await sqs.delete_message_batch(QueueUrl=reply, Entries=entries)

        def caller(reply: str) -> Call:
            async def call() -> None:
                key = str(next(counter))
                waiting[key] = done = anyio.Event()
                attributes = {"reply": {"DataType": "String", "StringValue": reply}}
                await sns.publish(TopicArn=topic, Message=key, MessageAttributes=attributes)
                await done.wait()

            return call

        async with anyio.create_task_group() as tg:
            for _ in range(2):
                tg.start_soon(echo_worker)
            for reply in replies:
                tg.start_soon(reader, reply)
            yield [caller(reply) for reply in replies]
            tg.cancel_scope.cancel()


@asynccontextmanager
async def dmcp_callers(stack: RunningStack, lanes: int, tool: str) -> AsyncIterator[list[Call]]:
    """`lanes` connected `mcp.Client`s calling `tool` through the request topic."""
    async with anyio.create_task_group() as tg, _clients(stack, lanes) as clients:

        def caller(client: Client) -> Call:
            async def call() -> None:
                await client.call_tool(tool, {"text": "ping"})

            return call

        yield [caller(client) for client in clients]
        tg.cancel_scope.cancel()


@asynccontextmanager
async def _clients(stack: RunningStack, count: int) -> AsyncIterator[list[Client]]:
    async with AsyncExitStack() as exits:
        clients = []
        for _ in range(count):
            transport = sqs_client_transport(
                stack.topic_target("bench"),
                endpoint_url=stack.endpoint_url,
                reply_prefix=stack.client_connection_prefix(),
            )
            clients.append(await exits.enter_async_context(Client(transport)))
        yield clients


async def measure_stack(
    deployment: Deployment, variants: list[str], calls: int, rounds: int, peer: Peer | None = None
) -> dict[str, Figures]:
    """Figures for the floor, each dMCP variant (a tool name) and the peer, interleaved, on one stack."""
    note(f"stack {deployment.name} (ledger: {deployment.idempotency}): {', '.join(variants)}")
    async with embedded_stack(deployment, code_root=ROOT) as stack, floor(stack, CLIENTS) as floor_calls:
        opened: dict[str, list[Call]] = {"floor": floor_calls}
        async with (
            _all_callers(stack, variants) as dmcp_calls,
            (peer or Peer()).callers(stack, CLIENTS, CALLS.add) as peer_calls,
        ):
            opened |= dmcp_calls | peer_calls
            figures = {name: Figures() for name in opened}
            for lanes in opened.values():  # warm every path
                await sequential(lanes[0], 10)
            for _ in range(calls):
                for name, lanes in opened.items():
                    await anyio.sleep(SETTLE_SECONDS)
                    figures[name].latencies += await sequential(lanes[0], 1)
            for _ in range(rounds):
                for name, lanes in opened.items():
                    before, invoked = Counter(CALLS.by_operation), _invocations(stack)
                    figures[name].one_client.append(await in_flight([lanes[0]] * IN_FLIGHT, calls))
                    figures[name].operations += CALLS.by_operation - before
                    figures[name].invocations += _invocations(stack) - invoked
                    figures[name].calls_made += calls
                    figures[name].many_clients.append(await in_flight(lanes, calls))
    return figures


def _invocations(stack: RunningStack) -> int:
    return sum(mapping.invocations for mapping in stack.mappings)


@asynccontextmanager
async def _all_callers(stack: RunningStack, variants: list[str]) -> AsyncIterator[dict[str, list[Call]]]:
    async with AsyncExitStack() as exits:
        yield {tool: await exits.enter_async_context(dmcp_callers(stack, CLIENTS, tool)) for tool in variants}


@dataclass
class Connects:
    """How connecting went, one way, `count` times."""

    times: list[float] = field(default_factory=list)
    """ms from entering the client until it is connected."""
    calls: list[list[str]] = field(default_factory=list)
    """The AWS calls the connection made (tasks it started included) until it was connected."""
    closing: list[list[str]] = field(default_factory=list)
    """Those it made from then until it was closed."""

    def first_ms(self) -> float:
        return self.times[0]

    def median_ms(self) -> float:
        return statistics.median(self.times[1:])

    def median_calls(self) -> float:
        return statistics.median(len(c) for c in self.calls[1:])

    def typical(self, calls: list[list[str]]) -> str:
        """The most frequent list of calls after the first connection, e.g. `Publish, ReceiveMessage`."""
        common = Counter(", ".join(c) or "none" for c in calls[1:]).most_common(1)
        return common[0][0] if common else "none"


async def measure_connect(count: int) -> dict[str, Connects]:
    """Connecting to a provisioned reply queue and to a per-connection queue, probing the server
    each time (`mcp.Client`) and remembering its discover result (`dmcp_aws.connect`); plus a bare
    ping-pong (`baseline`, its round trips in `times`). Only the connection's own AWS calls are
    counted (the stack's workers and pollers run in this process too)."""
    results: dict[str, Connects] = {}
    deployment = Deployment.parse(BENCH)
    async with embedded_stack(deployment, code_root=ROOT) as stack:
        provisioned = stack.queue_url(f"{deployment.reply_prefix}bencher")
        target = stack.topic_target("bench")
        for name, options in (
            ("provisioned reply queue", {"reply_queue_url": provisioned}),
            ("per-connection queue", {"reply_prefix": stack.client_connection_prefix()}),
        ):
            for how in ("probing", "remembered"):
                figures = results[f"{name}, {how}"] = Connects()
                forget_discovered()
                for _ in range(count):
                    connecting: Any = (
                        Client(sqs_client_transport(target, endpoint_url=stack.endpoint_url, **options))
                        if how == "probing"
                        else connect(target, endpoint_url=stack.endpoint_url, **options)
                    )
                    mine: list[str] = []
                    token = CALLS.mine.set(mine)
                    try:
                        started = time.perf_counter()
                        async with connecting:
                            figures.times.append((time.perf_counter() - started) * 1000)
                            figures.calls.append(list(mine))
                        figures.closing.append(mine[len(figures.calls[-1]) :])
                    finally:
                        CALLS.mine.reset(token)
        async with floor(stack, 1) as floor_calls:
            await sequential(floor_calls[0], 10)
            results["baseline"] = Connects(times=[0.0, *await sequential(floor_calls[0], count)])
    return results


def connect_lines(connects: dict[str, Connects]) -> list[str]:
    """What each way of connecting called, against the baseline round trip."""
    lines = [f"bare SNS→SQS→SQS round trip (baseline): {connects['baseline'].median_ms():.1f} ms"]
    for name, figures in connects.items():
        if name != "baseline":
            lines.append(
                f"{name}: first {figures.first_ms():.0f} ms, then {figures.median_ms():.1f} ms;"
                f" calls {figures.typical(figures.calls)}; on close {figures.typical(figures.closing)}"
            )
    return lines


IMPORT_TIMER = (
    "import time; started = time.perf_counter(); {statement}; print((time.perf_counter() - started) * 1000)"
)


def cold_import_ms(statement: str, runs: int, lambda_env: bool) -> float:
    """Median wall time of `statement` in a fresh interpreter (the Lambda environment set or not)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    if lambda_env:
        env |= {
            "AWS_LAMBDA_FUNCTION_NAME": "dmcp-example",
            "DMCP_REPLY_PREFIX": "dmcp-reply-",
            "DMCP_IDEMPOTENCY_TABLE": "dmcp-idempotency",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
    times = []
    for _ in range(runs):
        done = subprocess.run(
            [sys.executable, "-c", IMPORT_TIMER.format(statement=statement)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
        )
        times.append(float(done.stdout.strip().splitlines()[-1]))
    return statistics.median(times)


def goal_line(label: str, value: str, ratio: float, goal: str, met: bool) -> str:
    return f"{label:<48} {value:>18} {ratio:6.2f}x   goal {goal:<9} {'met' if met else 'NOT met'}"


def table(figures: dict[str, Figures], no_ledger: dict[str, Figures], peer: Peer) -> list[str]:
    """The issue's table: each row's figures and their ratio to its stack's floor."""
    base = figures["floor"]
    rows = [
        ("floor (SNS→SQS→SQS)", base, base),
        ("dMCP as deployed (echo, read-only)", figures["echo"], base),
        ("dMCP, a run-once tool (echo_once)", figures["echo_once"], base),
        ("dMCP, no ledger deployed (echo)", no_ledger["echo"], no_ledger["floor"]),
    ]
    if PEER in figures:
        rows.append((f"{peer.label} (own process)", figures[PEER], base))
    lines = [
        f"{'':<36}{'median RTT':>17}{'calls/s, 10 in flight':>22}{'calls/s, 10 clients':>22}{'AWS calls':>11}"
    ]
    for label, row, floor_row in rows:
        one, floor_one = row.rate(row.one_client), floor_row.rate(floor_row.one_client)
        many, floor_many = row.rate(row.many_clients), floor_row.rate(floor_row.many_clients)
        lines.append(
            f"{label:<36}{row.median_ms():7.1f} ms {row.median_ms() / floor_row.median_ms():5.2f}x"
            f"{one:12.1f} {one / floor_one:5.2f}x{many:14.1f} {many / floor_many:5.2f}x"
            f"{row.calls_per_call():9.2f}"
        )
    return lines


def goals(figures: dict[str, Figures], connects: dict[str, Connects], imports: dict[str, float]) -> list[str]:
    """One line per goal of issue 12: the figure, its ratio and whether the goal is met."""
    base, echo = figures["floor"], figures["echo"]
    rtt, floor_rtt = echo.median_ms(), base.median_ms()
    one, floor_one = echo.rate(echo.one_client), base.rate(base.one_client)
    many, floor_many = echo.rate(echo.many_clients), base.rate(base.many_clients)
    per_call, floor_per_call = echo.calls_per_call(), base.calls_per_call()
    lines = [
        goal_line(
            "tools/call median RTT, as deployed",
            f"{rtt:.1f} ms",
            rtt / floor_rtt,
            "<= 1.10x",
            rtt <= 1.1 * floor_rtt,
        ),
        goal_line(
            "calls/s, 10 in flight on one client",
            f"{one:.1f}/s",
            one / floor_one,
            ">= 1.0x",
            one >= floor_one,
        ),
        goal_line(
            "calls/s, 10 clients", f"{many:.1f}/s", many / floor_many, ">= 0.9x", many >= 0.9 * floor_many
        ),
        goal_line(
            "AWS calls per call, 10 in flight",
            f"{per_call:.2f}",
            per_call / floor_per_call,
            "<= 3.0",
            per_call <= 3.0,
        ),
    ]
    baseline_ms = connects["baseline"].median_ms()
    for name in [k for k in connects if k != "baseline"]:
        way = connects[name]
        first, later, aws = way.first_ms(), way.median_ms(), way.median_calls()
        allowed = (0 if name.startswith("provisioned") else 1) + (2 if name.endswith("probing") else 0)
        lines.append(
            goal_line(
                f"connect, {name} (first {first:.0f} ms)",
                f"{later:.1f} ms, {aws:.0f} calls",
                later / baseline_ms,
                f"<= 30 ms, <= {allowed} calls",
                later <= 30 and aws <= allowed,
            )
        )
    bare = imports["bare"]
    for name in ("handler", "handler, Lambda environment"):
        lines.append(
            goal_line(
                f"cold import: {name}",
                f"{imports[name]:.0f} ms",
                imports[name] / bare,
                "<= 1.15x",
                imports[name] <= 1.15 * bare,
            )
        )
    return lines


PRICES = {
    "sns": 0.50,  # per million publishes (64 KiB chunks); deliveries to SQS are free
    "sqs": 0.40,  # per million standard-queue requests
    "dynamodb_write": 0.625,  # per million on-demand write request units
    "dynamodb_read": 0.125,  # per million on-demand read request units
    "lambda_request": 0.20,  # per million invocations
    "lambda_gb_s": 0.0000133334,  # per GB-second, arm64
}
"""us-east-1 list prices (USD) used for the cost lines; free tiers left out."""
LAMBDA_MS_PER_CALL = 10
LAMBDA_GB = 0.5
_DYNAMODB_WRITES = ("PutItem", "UpdateItem", "DeleteItem")


def operations(figures: Figures) -> str:
    """The AWS calls per call at 10 in flight, by operation, most first."""
    per_call = {op: n / figures.calls_made for op, n in figures.operations.items()}
    return ", ".join(f"{op} {n:.2f}" for op, n in sorted(per_call.items(), key=lambda kv: -kv[1]))


def costs(figures: Figures) -> list[str]:
    """The cost of a million calls at list prices, from the AWS calls counted per call."""
    per_call = {op: n / figures.calls_made for op, n in figures.operations.items()}
    writes = sum(per_call.get(op, 0.0) for op in _DYNAMODB_WRITES)
    reads = per_call.get("GetItem", 0.0)
    sns = per_call.get("Publish", 0.0) + per_call.get("PublishBatch", 0.0)  # a batch ≤ 64 KiB: one request
    sqs = sum(
        n for op, n in per_call.items() if op not in (*_DYNAMODB_WRITES, "GetItem", "Publish", "PublishBatch")
    )
    invocations = figures.invocations / figures.calls_made
    dollars = {
        "SNS": sns * PRICES["sns"],
        "SQS": sqs * PRICES["sqs"],
        "DynamoDB": writes * PRICES["dynamodb_write"] + reads * PRICES["dynamodb_read"],
        "Lambda requests": invocations * PRICES["lambda_request"],
        "Lambda duration": LAMBDA_MS_PER_CALL / 1000 * LAMBDA_GB * PRICES["lambda_gb_s"] * 1e6,
    }
    total = sum(dollars.values())
    return [
        f"  AWS calls per call: {operations(figures)}; worker invocations per call {invocations:.2f}",
        "  per million calls: " + ", ".join(f"{k} ${v:.2f}" for k, v in dollars.items()) + f" = ${total:.2f}",
    ]


async def main(calls: int, rounds: int, peer_wanted: bool, only: str | None) -> None:
    CALLS.install()
    if only == "connect":
        print("\n".join(connect_lines(await measure_connect(calls))))
        return
    if peer_wanted:
        note("the asyncmcp venv (built on first use)")
    peer = Peer.prepare(peer_wanted)
    deployed = Deployment.parse(BENCH)
    figures = await measure_stack(deployed, ["echo", "echo_once"], calls, rounds, peer)
    no_ledger = await measure_stack(
        deployed.model_copy(update={"idempotency": False}), ["echo"], calls, rounds
    )
    note("connecting")
    connects = await measure_connect(11)
    note("cold imports")
    imports = {
        "bare": cold_import_ms(
            "import boto3; from mcp.server.mcpserver import MCPServer", 7, lambda_env=False
        ),
        "handler": cold_import_ms("import functions.example.handler", 7, lambda_env=False),
        "handler, Lambda environment": cold_import_ms("import functions.example.handler", 7, lambda_env=True),
    }
    print(
        f"{calls} sequential calls per variant (interleaved); {calls} calls {IN_FLIGHT} in flight on one"
        " client"
    )
    print(
        f"and over {CLIENTS} clients, {rounds} rounds; every ratio is to the floor measured on the same stack"
    )
    print("\n".join(table(figures, no_ledger, peer)))
    if peer.skipped:
        print(f"{peer.label}: left out ({peer.skipped})")
    print()
    print("goals (issue 12); connect is against a bare ping-pong's round trip; imports against a bare")
    print("`import boto3; from mcp.server.mcpserver import MCPServer`")
    print("\n".join(goals(figures, connects, imports)))
    print("\n".join(connect_lines(connects)))
    print()
    print(f"cost at us-east-1 list prices from the calls counted at {IN_FLIGHT} in flight (Lambda duration")
    print(
        f"assumed {LAMBDA_MS_PER_CALL} ms per call at {LAMBDA_GB * 1024:.0f} MB arm64; free tiers left out)"
    )
    for label, name in (
        ("as deployed (echo, read-only)", "echo"),
        ("a run-once tool (echo_once)", "echo_once"),
    ):
        print(label)
        print("\n".join(costs(figures[name])))
    if PEER in figures:
        print(f"{peer.label}, AWS calls per call: {operations(figures[PEER])}")


if __name__ == "__main__":
    logging.basicConfig(level=logging.ERROR)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--no-peer", action="store_true", help="leave out the asyncmcp row")
    parser.add_argument("--only", choices=["connect"], help="only connecting (--calls times each way)")
    arguments = parser.parse_args()
    anyio.run(main, arguments.calls, arguments.rounds, not arguments.no_peer, arguments.only)
