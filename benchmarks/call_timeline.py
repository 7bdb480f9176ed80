"""Where one `tools/call` spends its time on the embedded stack: a median timeline.

    .venv/bin/python benchmarks/call_timeline.py [--calls 200]

Marks are taken by wrapping the kit's own steps (client publish, the event source poller, the
Lambda handler, the worker's serving, the reply's send, the client's receipt), so the figures
show which part of a round trip is the kit's and which is the queues'. Sequential calls with a
pause between them, as `performance.py` measures the round trip.
"""

from __future__ import annotations

import argparse
import functools
import inspect
import logging
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent))

import performance

from dmcp_aws import batching, client, lambda_handler, worker
from dmcp_aws.deployment import Deployment
from dmcp_aws.local import poller
from dmcp_aws.local.stack import embedded_stack

MARKS: defaultdict[str, list[float]] = defaultdict(list)


def mark(name: str) -> None:
    MARKS[name].append(time.perf_counter())


def around(owner: Any, method: str, before: str, after: str | None = None) -> None:
    """Mark `before` when `owner.method` starts and `after` when it returns (sync or async)."""
    original: Callable[..., Any] = getattr(owner, method)
    if inspect.iscoroutinefunction(original):

        @functools.wraps(original)
        async def timed_async(*args: Any, **kwargs: Any) -> Any:
            mark(before)
            try:
                return await original(*args, **kwargs)
            finally:
                if after:
                    mark(after)

        setattr(owner, method, timed_async)
    else:

        @functools.wraps(original)
        def timed(*args: Any, **kwargs: Any) -> Any:
            mark(before)
            try:
                return original(*args, **kwargs)
            finally:
                if after:
                    mark(after)

        setattr(owner, method, timed)


def instrument() -> None:
    around(client._Connection, "_send_all", "client: publish starts", "client: publish returns")
    around(poller.EventSourceMapping, "_invoke", "poller: batch received")
    around(lambda_handler.LambdaHandler, "_handle_batch", "handler: starts", "handler: returns")
    around(worker.Worker, "_serve", "worker: serving starts", "worker: serving ends")
    around(batching.ReplyBatcher, "_deliver", "worker: reply send starts", "worker: reply sent")
    around(client._Connection, "_accept", "client: reply received")


async def main(calls: int) -> None:
    instrument()
    deployment = Deployment.parse(performance.BENCH)
    async with (
        embedded_stack(deployment, code_root=performance.ROOT) as stack,
        performance.dmcp_callers(stack, 1, "echo") as callers,
    ):
        await performance.sequential(callers[0], 20)
        MARKS.clear()
        for _ in range(calls):
            await anyio.sleep(performance.SETTLE_SECONDS)
            mark("call starts")
            await callers[0]()
            mark("call returns")
    starts = MARKS["call starts"]
    offsets = {
        name: statistics.median(t - s for t, s in zip(times, starts, strict=True)) * 1000
        for name, times in MARKS.items()
        if len(times) == calls  # a step every call takes once
    }
    print(f"median of {calls} sequential echo calls, ms after the call starts")
    for name, offset in sorted(offsets.items(), key=lambda item: item[1]):
        print(f"  {offset:7.2f}  {name}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200)
    logging.basicConfig(level=logging.ERROR)
    anyio.run(main, parser.parse_args().calls)
