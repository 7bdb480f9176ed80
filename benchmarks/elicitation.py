"""What one elicitation round trip costs over the queue (handshake era, the back channel).

    .venv/bin/python benchmarks/elicitation.py [--calls 30]

On the embedded stack, a handshake-era `mcp.Client` calls the example's `sign_guestbook` (the
tool asks the client for a name: worker → reply queue → client → request topic → a worker →
answer slot → the waiting worker resumes) and `echo` (no question), alternately. The round trip
is the difference of the medians; the answer leg is the time from the client's answer to the
call's result, less an `echo`'s result leg (half its round trip).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

import anyio
from mcp import Client
from mcp_types import ElicitResult

from dmcp_aws.client import sqs_client_transport
from dmcp_aws.deployment import Deployment
from dmcp_aws.local.stack import embedded_stack

ROOT = Path(__file__).resolve().parents[1]


async def measure(calls: int) -> dict[str, list[float]]:
    answered_at: list[float] = []

    async def elicit(context: Any, params: Any) -> ElicitResult:
        answered_at.append(time.perf_counter())
        return ElicitResult(action="accept", content={"name": "Ada"})

    figures: dict[str, list[float]] = {"echo": [], "sign_guestbook": [], "answer_leg": []}
    async with embedded_stack(Deployment.load(ROOT / "dmcp.json"), code_root=ROOT) as stack:
        transport = sqs_client_transport(stack.topic_target("example"), **stack.client_options())
        async with Client(transport, mode="legacy", elicitation_callback=elicit) as client:  # type: ignore[arg-type]
            for _ in range(3):  # warm the workers and the answer path
                await client.call_tool("sign_guestbook", {})
                await client.call_tool("echo", {"text": "warm"})
            for _ in range(calls):
                started = time.perf_counter()
                await client.call_tool("echo", {"text": "hi"})
                figures["echo"].append((time.perf_counter() - started) * 1000)
                started = time.perf_counter()
                await client.call_tool("sign_guestbook", {})
                done = time.perf_counter()
                figures["sign_guestbook"].append((done - started) * 1000)
                figures["answer_leg"].append((done - answered_at[-1]) * 1000)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=30)
    arguments = parser.parse_args()
    figures = anyio.run(measure, arguments.calls)
    echo = statistics.median(figures["echo"])
    elicited = statistics.median(figures["sign_guestbook"])
    answer_leg = statistics.median(figures["answer_leg"]) - echo / 2
    print(f"tools/call echo (no question), median:      {echo:7.1f} ms")
    print(f"tools/call sign_guestbook (one elicitation): {elicited:7.1f} ms  ({elicited / echo:.2f}x echo)")
    print(f"one elicitation round trip (difference):     {elicited - echo:7.1f} ms")
    print(f"  of which client answer -> tool resumes:    {answer_leg:7.1f} ms")


if __name__ == "__main__":
    main()
