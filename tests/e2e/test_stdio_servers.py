"""Existing stdio MCP servers served as dMCP workers (`command` servers, `dmcp_aws.bridges.stdio_server`).

Two real third-party servers, pinned: `mcp-server-time` (PyPI, in its own virtualenv, see
`stdio_venv.py`) and `@modelcontextprotocol/server-everything` (npm, `package.json`), each behind a
`dmcp worker` process of a second deployment in the session's moto server, reached by a real
`mcp.Client` through the topic.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from dmcp_aws.client import TopicTarget, sqs_client_transport
from dmcp_aws.deployment import Deployment
from dmcp_aws.local.stack import RunningStack

from .second_deployment import provision_deployment, start_worker
from .stdio_venv import time_server_command

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parents[2]
NODE = ROOT / "node_modules" / ".bin" / "node"
EVERYTHING = ROOT / "node_modules" / ".bin" / "mcp-server-everything"


def description() -> dict[str, Any]:
    common = {"timeout_s": 5, "max_concurrency": 3, "max_receive_count": 3}
    return {
        "name": "stdio",
        "servers": [
            {"name": "time", "command": str(time_server_command()), "args": ["--local-timezone", "UTC"]}
            | common,
            {"name": "everything", "command": str(NODE), "args": [str(EVERYTHING), "stdio"]} | common,
        ],
    }


@pytest.fixture(scope="module")
async def workers(
    stack: RunningStack, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[dict[str, Any]]:
    spec = description()
    created = await provision_deployment(stack, spec)
    directory = tmp_path_factory.mktemp("stdio")
    processes = {name: start_worker(stack, spec, directory, name) for name in ("time", "everything")}
    try:
        yield {"topic": created.topic_arn, "processes": processes, "deployment": Deployment.parse(spec)}
    finally:
        for process in processes.values():
            process.send_signal(signal.SIGINT)
        for name, process in processes.items():
            output, _ = process.communicate(timeout=60)
            assert process.returncode == 0, f"{name}: {output}"


@asynccontextmanager
async def client_of(
    stack: RunningStack, workers: dict[str, Any], server: str, mode: str
) -> AsyncIterator[Client]:
    options = stack.client_options() | {"reply_prefix": workers["deployment"].connection_queue_prefix}
    transport = sqs_client_transport(TopicTarget(workers["topic"], server), **options)
    async with Client(transport, mode=mode, read_timeout_seconds=60) as client:
        yield client


def text(result: Any) -> str:
    return "".join(getattr(block, "text", "") for block in result.content)


async def test_time_server_lists_and_calls_its_tools(stack: RunningStack, workers: dict[str, Any]) -> None:
    async with client_of(stack, workers, "time", "legacy") as client:
        assert client.server_info is not None and client.server_info.name == "mcp-time"
        assert client.server_capabilities.tools is not None
        tools = {tool.name for tool in (await client.list_tools()).tools}
        assert {"get_current_time", "convert_time"} <= tools
        now = json.loads(text(await client.call_tool("get_current_time", {"timezone": "Europe/Paris"})))
        assert now["timezone"] == "Europe/Paris"
        converted = await client.call_tool(
            "convert_time", {"source_timezone": "UTC", "time": "12:00", "target_timezone": "Asia/Tokyo"}
        )
        assert json.loads(text(converted))["target"]["datetime"].endswith("21:00:00+09:00")
        bad = await client.call_tool("get_current_time", {"timezone": "Not/AZone"})
        assert bad.is_error


async def test_everything_server_with_live_progress(stack: RunningStack, workers: dict[str, Any]) -> None:
    seen: list[tuple[float, float | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total))

    async with client_of(stack, workers, "everything", "auto") as client:  # server/discover first
        assert client.protocol_version == "2026-07-28"
        assert client.instructions is not None and "Everything Server" in client.instructions
        assert client.server_capabilities.completions is not None
        tools = {tool.name for tool in (await client.list_tools()).tools}
        assert {"echo", "get-sum", "trigger-long-running-operation"} <= tools
        assert text(await client.call_tool("echo", {"message": "hi"})) == "Echo: hi"
        assert "42" in text(await client.call_tool("get-sum", {"a": 20, "b": 22}))
        result = await client.call_tool(
            "trigger-long-running-operation", {"duration": 1, "steps": 4}, progress_callback=on_progress
        )
    assert "Long running operation completed" in text(result)
    assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)]


async def test_concurrent_clients_with_colliding_ids(stack: RunningStack, workers: dict[str, Any]) -> None:
    answers: dict[tuple[int, int], str] = {}

    async def one_client(index: int) -> None:
        async with client_of(stack, workers, "everything", "legacy") as client:

            async def call(n: int) -> None:
                answers[(index, n)] = text(await client.call_tool("echo", {"message": f"c{index}-{n}"}))

            async with anyio.create_task_group() as tg:
                for n in range(10):
                    tg.start_soon(call, n)

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            for index in range(3):
                tg.start_soon(one_client, index)
    assert answers == {(i, n): f"Echo: c{i}-{n}" for i in range(3) for n in range(10)}


def _descendants(pid: int) -> list[int]:
    """Processes under `pid` (from /proc), children first."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found, stack = [], [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def _everything_children(worker: subprocess.Popen[str]) -> list[int]:
    pids = []
    for pid in _descendants(worker.pid):
        try:
            if str(EVERYTHING).encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                pids.append(pid)
        except OSError:
            continue
    return pids


async def test_a_killed_child_is_restarted_and_the_request_retried(
    stack: RunningStack, workers: dict[str, Any]
) -> None:
    worker = workers["processes"]["everything"]
    async with client_of(stack, workers, "everything", "2026-07-28") as client:
        assert text(await client.call_tool("echo", {"message": "warm"})) == "Echo: warm"
        before = _everything_children(worker)
        assert before, "the worker runs the server as its child"

        async def kill_soon() -> None:
            await anyio.sleep(1.0)
            for pid in _everything_children(worker):
                os.kill(pid, signal.SIGKILL)

        with anyio.fail_after(75):
            async with anyio.create_task_group() as tg:
                tg.start_soon(kill_soon)
                result = await client.call_tool("trigger-long-running-operation", {"duration": 2, "steps": 2})
        assert "Long running operation completed" in text(result)
        after = _everything_children(worker)
        assert after and not set(after) & set(before)
