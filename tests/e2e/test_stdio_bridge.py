"""`dmcp stdio` (issue 9, host side): a stdio MCP server relaying to a dMCP server.

One `dmcp dev` subprocess serves the module. The real MCP Inspector CLI (pinned in package.json)
and the SDK's own stdio client run `dmcp stdio` as any host would: a child process speaking
newline-delimited JSON-RPC on its stdin and stdout, finding the stack from `.dmcp/dev.env`.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from mcp import Client
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp_types import ElicitRequestParams, ElicitResult

from dmcp_aws.client import DELETE_DELAY_S
from tests.e2e.test_cli import ROOT, Dev, running_dev
from tests.unit.test_cli_commands import assert_short_error, clean_env

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]

NODE = ROOT / "node_modules" / ".bin" / "node"
INSPECTOR = ROOT / "node_modules" / ".bin" / "mcp-inspector"
DMCP = [sys.executable, "-m", "dmcp_aws"]


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dev]:
    with running_dev(tmp_path_factory.mktemp("dmcp-stdio")) as (running, _):
        yield running


def connection_queues(dev: Dev) -> set[str]:
    """The per-connection queues of `dmcp dev`'s stack (every client's)."""
    sqs = boto3.client(
        "sqs",
        endpoint_url=dev.settings["AWS_ENDPOINT_URL"],
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    found = sqs.list_queues(QueueNamePrefix=dev.settings["DMCP_CONNECTION_PREFIX"]).get("QueueUrls", [])
    return {url.rsplit("/", 1)[-1] for url in found}


def inspector(dev: Dev, *method: str) -> Any:
    """Run the Inspector CLI against `dmcp stdio` (started in `dev.home`, where .dmcp/dev.env is):
    the Inspector's options, then `--`, then the command (its `--server` is the Inspector's own)."""
    if not INSPECTOR.exists():
        pytest.fail("the MCP Inspector is not installed: run `npm ci` (make test does)")
    done = subprocess.run(
        [
            str(NODE),
            str(INSPECTOR),
            "--cli",
            "--cwd",
            str(dev.home),
            *method,
            "--",
            *DMCP,
            "stdio",
            "-s",
            "example",
        ],
        cwd=dev.home,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)


def test_the_inspector_cli_through_dmcp_stdio(dev: Dev) -> None:
    from concurrent.futures import ThreadPoolExecutor

    calls = [
        ["--method", "tools/list"],
        ["--method", "tools/call", "--tool-name", "add", "--tool-arg", "a=2", "--tool-arg", "b=3"],
        ["--method", "resources/list"],
        ["--method", "resources/read", "--uri", "dmcp://example/greeting/world"],
        ["--method", "prompts/list"],
        ["--method", "prompts/get", "--prompt-name", "review_code", "--prompt-args", "code=x = [1]"],
    ]
    with ThreadPoolExecutor(3) as pool:
        listed, added, resources, read, prompts, prompt = pool.map(lambda m: inspector(dev, *m), calls)
    names = {tool["name"] for tool in listed["tools"]}
    assert {"add", "echo", "divide", "count_slowly"} <= names
    assert added["structuredContent"] == {"a": 2, "b": 3, "sum": 5}
    assert added["isError"] is False
    assert "dmcp://example/about" in {r["uri"] for r in resources["resources"]}
    assert read["contents"][0]["text"] == "Hello, world!"
    assert [p["name"] for p in prompts["prompts"]] == ["review_code"]
    text = prompt["messages"][0]["content"]["text"]
    assert "x = [1]" in text and "python code" in text
    assert connection_queues(dev) == set(), "every `dmcp stdio` deleted its queue when stdin ended"


def stdio_params(dev: Dev, *extra: str) -> StdioServerParameters:
    return StdioServerParameters(
        command=sys.executable, args=["-m", "dmcp_aws", "stdio", *extra], env=clean_env(), cwd=dev.home
    )


async def test_the_sdk_stdio_client_discovers(dev: Dev) -> None:
    """The default `mcp.Client`: 2026-07-28, `server/discover` answered by the worker."""
    seen: list[float] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(progress)

    async with Client(stdio_client(stdio_params(dev)), read_timeout_seconds=30) as client:
        assert client.session.protocol_version == "2026-07-28"
        added = await client.call_tool("add", {"a": 20, "b": 22})
        assert added.structured_content == {"a": 20, "b": 22, "sum": 42}
        counted = await client.call_tool("count_slowly", {"steps": 3}, progress_callback=on_progress)
        assert counted.content[0].text == "counted to 3"  # type: ignore[union-attr]
        failed = await client.call_tool("divide", {"a": 1, "b": 0})
        assert failed.is_error and "cannot divide by zero" in failed.content[0].text  # type: ignore[union-attr]
    assert sorted(seen) == [1.0, 2.0, 3.0]


async def test_the_sdk_stdio_client_with_the_handshake(dev: Dev) -> None:
    """`ClientSession.initialize()`: the handshake generation, relayed unchanged."""
    seen: list[float] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(progress)

    async with (
        stdio_client(stdio_params(dev, "--timeout", "30")) as (read, write),
        ClientSession(read, write) as session,
    ):
        init = await session.initialize()
        assert init.protocol_version == "2025-11-25"
        assert init.server_info.name
        tools = await session.list_tools()
        assert "count_slowly" in {tool.name for tool in tools.tools}
        counted = await session.call_tool("count_slowly", {"steps": 4}, progress_callback=on_progress)
        assert counted.content[0].text == "counted to 4"  # type: ignore[union-attr]
        failed = await session.call_tool("divide", {"a": 1, "b": 0})
        assert failed.is_error and "cannot divide by zero" in failed.content[0].text  # type: ignore[union-attr]
        read_back = await session.read_resource("dmcp://example/about")
        assert "dMCP example server" in read_back.contents[0].text  # type: ignore[union-attr]
    assert sorted(seen) == [1.0, 2.0, 3.0, 4.0]


async def test_a_handshake_host_answers_an_elicitation_through_dmcp_stdio(dev: Dev) -> None:
    """A tool elicits; the handshake-era host behind `dmcp stdio` answers; the tool gets it."""
    asked: list[str] = []

    async def elicit(context: Any, params: ElicitRequestParams) -> ElicitResult:
        asked.append(params.message)
        return ElicitResult(action="accept", content={"name": "Ada"})

    async with (
        stdio_client(stdio_params(dev, "--timeout", "30")) as (read, write),
        ClientSession(read, write, elicitation_callback=elicit) as session,
    ):
        assert (await session.initialize()).protocol_version == "2025-11-25"
        signed = await session.call_tool("sign_guestbook", {})
    assert signed.content[0].text == "Thank you for signing, Ada!"  # type: ignore[union-attr]
    assert asked == ["Who is signing the guestbook?"]


DISCOVER = {"jsonrpc": "2.0", "id": 1, "method": "ping"}


def started_relay(dev: Dev) -> tuple[subprocess.Popen[str], str]:
    """A `dmcp stdio` that has answered a ping (so its queue exists), and that queue's name."""
    before = connection_queues(dev)
    process = subprocess.Popen(
        [*DMCP, "stdio", "--timeout", "20"],
        cwd=dev.home,
        env=clean_env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdin is not None and process.stdout is not None
    process.stdin.write(json.dumps(DISCOVER) + "\n")
    process.stdin.flush()
    answer = json.loads(process.stdout.readline())
    assert answer["id"] == 1 and "result" in answer, answer
    (queue,) = connection_queues(dev) - before
    return process, queue


def test_sigterm_deletes_the_queue_and_stdin_eof_too(dev: Dev) -> None:
    process, queue = started_relay(dev)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=20)
    assert process.returncode == 0, stderr
    assert queue not in connection_queues(dev)

    process, queue = started_relay(dev)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=20)
    assert process.returncode == 0, stderr
    assert "Traceback" not in stderr
    assert queue not in connection_queues(dev)


def test_stdin_eof_waits_for_owed_answers_and_stdout_is_only_json_rpc(dev: Dev) -> None:
    lines = [
        "this is not JSON-RPC",
        json.dumps(DISCOVER),
        json.dumps(
            {
                "jsonrpc": "2.0",
                "id": "two",
                "method": "tools/call",
                "params": {"name": "add", "arguments": {"a": 1, "b": 2}},
            }
        ),
    ]
    done = subprocess.run(
        [*DMCP, "stdio"],
        cwd=dev.home,
        env=clean_env(),
        input="\n".join(lines) + "\n",
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    answers = {m["id"]: m for m in map(json.loads, done.stdout.splitlines())}
    assert set(answers) == {1, "two"}, done.stdout + done.stderr
    assert "not JSON-RPC" in done.stderr and "Traceback" not in done.stderr


def test_sigkill_leaves_a_queue_the_sweeper_removes(dev: Dev) -> None:
    process, queue = started_relay(dev)
    # (its answer is deleted DELETE_DELAY_S after hand-off: till then it is in flight, the queue
    # looks read and the sweeper keeps it)
    time.sleep(DELETE_DELAY_S + 0.5)
    process.kill()
    process.communicate(timeout=10)
    assert queue in connection_queues(dev), "SIGKILL: nothing could delete it"
    swept = dev.dmcp("sweep", "--idle-seconds", "0", env=clean_env())
    assert swept.returncode == 0, swept.stderr
    assert f"deleted {queue}" in swept.stdout
    assert queue not in connection_queues(dev)


def test_bad_inputs_are_one_line_errors(dev: Dev, tmp_path: Path) -> None:
    settings = dev.env()
    topic = dev.settings["DMCP_TOPIC_ARN"]
    endpoint = dev.settings["AWS_ENDPOINT_URL"]
    missing_topic = topic.replace("dmcp-requests", "nobody-requests")
    cases = [
        (["--topic-arn", missing_topic, "--server", "example"], settings, tmp_path, ["NotFound"]),
        (
            ["--queue-url", f"{endpoint}/123456789012/no-such-queue", "--server", "example"],
            settings,
            tmp_path,
            ["NonExistentQueue"],
        ),
        (["--topic-arn", topic], settings, tmp_path, ["needs --server"]),
        (["--server", "nobody"], None, dev.home, ["no server 'nobody'"]),
        (["--stack", "no-such-stack"], settings, tmp_path, ["no-such-stack"]),
        (
            ["--reply-queue-url", f"{endpoint}/123456789012/no-such-reply-queue"],
            None,
            dev.home,
            ["NonExistentQueue"],
        ),
        ([], None, tmp_path, ["start `dmcp dev`"]),
        (
            ["--topic-arn", topic, "--server", "example"],
            clean_env(AWS_ENDPOINT_URL=endpoint, AWS_DEFAULT_REGION="us-east-1"),
            tmp_path,
            ["no AWS credentials found"],
        ),
    ]
    from concurrent.futures import ThreadPoolExecutor

    def run(case: tuple[list[str], dict[str, str] | None, Path, list[str]]) -> None:
        arguments, env, cwd, expected = case
        process = subprocess.Popen(
            [*DMCP, "stdio", *arguments],
            cwd=cwd,
            env=env or clean_env(),
            stdin=subprocess.PIPE,  # left open: the check must come before serving, or this hangs
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            process.wait(timeout=30)
        finally:
            process.kill()
        assert process.stdout is not None and process.stderr is not None
        done = subprocess.CompletedProcess(
            process.args, process.returncode, process.stdout.read(), process.stderr.read()
        )
        assert done.stdout == "", (arguments, done.stdout)
        assert_short_error(done, *expected)

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(run, cases))
