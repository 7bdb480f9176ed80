"""The latency `dmcp stdio` adds: a tools/call through the relay vs straight through the transport.

    .venv/bin/python benchmarks/stdio_relay.py [--calls 50]

One `dmcp dev` subprocess serves both clients in the same run: an `mcp.Client` over
`sqs_client_transport` (direct), and an `mcp.Client` over the SDK's stdio client running
`dmcp stdio` (relay: one more process, two more pipe hops and a JSON re-encoding each way).
Calls alternate between the two so that both see the same stack; the figure is the ratio of
the medians (and their difference in ms).
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio
from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client

from dmcp_aws.cli._target import read_env_file
from dmcp_aws.client import TopicTarget, sqs_client_transport

ROOT = Path(__file__).resolve().parents[1]


async def measure(home: Path, settings: dict[str, str], calls: int) -> tuple[list[float], list[float]]:
    os.environ.update(settings)
    target = TopicTarget(settings["DMCP_TOPIC_ARN"], "example")
    direct_transport = sqs_client_transport(
        target,
        reply_prefix=settings["DMCP_REPLY_PREFIX"],
        endpoint_url=settings["AWS_ENDPOINT_URL"],
        region_name="us-east-1",
    )
    relay_transport = stdio_client(
        StdioServerParameters(
            command=sys.executable, args=["-m", "dmcp_aws", "stdio"], cwd=home, env=dict(os.environ)
        )
    )
    direct_ms: list[float] = []
    relay_ms: list[float] = []
    async with Client(direct_transport) as direct, Client(relay_transport) as relay:
        for _ in range(5):  # warm both paths (connections, the worker)
            await direct.call_tool("echo", {"text": "warm"})
            await relay.call_tool("echo", {"text": "warm"})
        for i in range(calls):
            for client, latencies in ((direct, direct_ms), (relay, relay_ms)):
                started = time.perf_counter()
                result = await client.call_tool("echo", {"text": f"call {i}"})
                latencies.append((time.perf_counter() - started) * 1000)
                assert not result.is_error
    return direct_ms, relay_ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=50, help="tools/call per path (default 50)")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        env_file = home / ".dmcp" / "dev.env"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "DMCP_"))}
        dev = subprocess.Popen(
            [sys.executable, "-m", "dmcp_aws", "dev", "--env-file", str(env_file)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 60
            while not env_file.exists():
                if dev.poll() is not None or time.monotonic() > deadline:
                    sys.exit("dmcp dev did not start")
                time.sleep(0.1)
            direct, relay = anyio.run(measure, home, read_env_file(env_file), options.calls)
        finally:
            dev.send_signal(signal.SIGINT)
            dev.wait(timeout=60)
    d, r = statistics.median(direct), statistics.median(relay)
    print(f"tools/call echo, {options.calls} calls each, median latency on `dmcp dev`:")
    print(f"  direct (sqs_client_transport):  {d:7.1f} ms")
    print(f"  through `dmcp stdio`:           {r:7.1f} ms")
    print(f"  relay / direct: {r / d:.2f}x  (+{r - d:.1f} ms per call)")


if __name__ == "__main__":
    main()
