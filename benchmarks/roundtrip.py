"""Round-trip benchmark on the embedded stack: dMCP tool calls against the raw-SQS floor.

    .venv/bin/python benchmarks/roundtrip.py [--calls 200] [--concurrency 20]

All figures come from one run on one machine, so they are reported as ratios to a baseline
measured in the same run:

- floor: a bare request/response over two SQS queues (client SendMessage → echo poller
  ReceiveMessage + SendMessage → client ReceiveMessage), no MCP, no Lambda emulation;
- dMCP via queue: `mcp.Client.call_tool("echo")` straight to the server's request queue;
- dMCP via topic: the same through the SNS request topic and its filter policy;
- each of those with the idempotency ledger (DynamoDB, the default) and without it.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
from mcp import Client

from dmcp_aws.client import sqs_client_transport
from dmcp_aws.deployment import Deployment
from dmcp_aws.local.stack import RunningStack, embedded_stack

ROOT = Path(__file__).resolve().parents[1]


async def sequential(call: Callable[[], Awaitable[Any]], count: int) -> list[float]:
    """Latencies (ms) of `count` calls made one after another."""
    latencies = []
    for _ in range(count):
        started = time.perf_counter()
        await call()
        latencies.append((time.perf_counter() - started) * 1000)
    return latencies


async def throughput(call: Callable[[], Awaitable[Any]], count: int, concurrency: int) -> float:
    """Calls per second with `concurrency` calls in flight."""
    remaining = iter(range(count))

    async def lane() -> None:
        for _ in remaining:
            await call()

    started = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(concurrency):
            tg.start_soon(lane)
    return count / (time.perf_counter() - started)


Call = Callable[[], Awaitable[Any]]


async def raw_floor(stack: RunningStack, sqs: Any) -> tuple[Call, Callable[[], Awaitable[None]]]:
    """A bare SQS request/response pair with an echo poller; returns (call, stop)."""
    requests = (await sqs.create_queue(QueueName="bench-floor-requests"))["QueueUrl"]
    replies = (await sqs.create_queue(QueueName=f"{stack.reply_prefix}bench-floor"))["QueueUrl"]
    pending: dict[str, anyio.Event] = {}
    stop = anyio.Event()

    async def echo_worker() -> None:
        while not stop.is_set():
            got = await sqs.receive_message(QueueUrl=requests, MaxNumberOfMessages=10, WaitTimeSeconds=1)
            for message in got.get("Messages", []):
                await sqs.send_message(QueueUrl=replies, MessageBody=message["Body"])
                await sqs.delete_message(QueueUrl=requests, ReceiptHandle=message["ReceiptHandle"])

    async def reply_reader() -> None:
        while not stop.is_set():
            got = await sqs.receive_message(QueueUrl=replies, MaxNumberOfMessages=10, WaitTimeSeconds=1)
            for message in got.get("Messages", []):
                await sqs.delete_message(QueueUrl=replies, ReceiptHandle=message["ReceiptHandle"])
                if (event := pending.pop(message["Body"], None)) is not None:
                    event.set()

    counter = iter(range(10**9))

    async def call() -> None:
        key = str(next(counter))
        pending[key] = event = anyio.Event()
        await sqs.send_message(QueueUrl=requests, MessageBody=key)
        await event.wait()

    tg = anyio.create_task_group()
    await tg.__aenter__()
    for _ in range(2):
        tg.start_soon(echo_worker)
    tg.start_soon(reply_reader)

    async def shutdown() -> None:
        stop.set()
        await tg.__aexit__(None, None, None)

    return call, shutdown


def summary(name: str, latencies: list[float], floor_median: float, rate: float, floor_rate: float) -> str:
    median = statistics.median(latencies)
    p95 = statistics.quantiles(latencies, n=20)[18]
    return (
        f"{name:<22} median {median:7.1f} ms  p95 {p95:7.1f} ms  "
        f"({median / floor_median:4.2f}x floor)   {rate:6.1f} calls/s ({rate / floor_rate:4.2f}x floor)"
    )


async def floor_figures(calls: int, concurrency: int) -> tuple[list[float], float]:
    deployment = Deployment.load(ROOT / "dmcp.json")
    async with (
        embedded_stack(deployment, code_root=ROOT, workers=False) as stack,
        stack.session().client("sqs", endpoint_url=stack.endpoint_url) as sqs,
    ):
        floor_call, stop_floor = await raw_floor(stack, sqs)
        await sequential(floor_call, 10)
        floor = await sequential(floor_call, calls)
        floor_rate = await throughput(floor_call, calls, concurrency)
        await stop_floor()
    return floor, floor_rate


async def dmcp_figures(
    deployment: Deployment, calls: int, concurrency: int
) -> dict[str, tuple[list[float], float]]:
    results = {}
    ledger = "ledger" if deployment.idempotency else "no ledger"
    async with embedded_stack(deployment, code_root=ROOT) as stack:
        for name, target in (
            ("queue", stack.queue_target("example")),
            ("topic", stack.topic_target("example")),
        ):
            async with Client(sqs_client_transport(target, **stack.client_options())) as client:

                async def echo(client: Client = client) -> None:
                    await client.call_tool("echo", {"text": "ping"})

                await sequential(echo, 10)
                results[f"via {name}, {ledger}"] = (
                    await sequential(echo, calls),
                    await throughput(echo, calls, concurrency),
                )
    return results


async def main(calls: int, concurrency: int) -> None:
    floor, floor_rate = await floor_figures(calls, concurrency)
    deployment = Deployment.load(ROOT / "dmcp.json")
    results = await dmcp_figures(deployment, calls, concurrency)
    results |= await dmcp_figures(deployment.model_copy(update={"idempotency": False}), calls, concurrency)
    floor_median = statistics.median(floor)
    print(f"embedded stack, {calls} sequential calls, then {calls} calls {concurrency} at a time")
    print(summary("raw SQS floor", floor, floor_median, floor_rate, floor_rate))
    for name, (latencies, rate) in results.items():
        print(summary(name, latencies, floor_median, rate, floor_rate))


if __name__ == "__main__":
    logging.basicConfig(level=logging.ERROR)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=20)
    arguments = parser.parse_args()
    anyio.run(main, arguments.calls, arguments.concurrency)
