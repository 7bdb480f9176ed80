"""The `dmcp` command against a running `dmcp dev` (issue 8): every verb works, every bad input is
a short error, and `dmcp worker` honours `dmcp dev`'s settings with tracing off.

One `dmcp dev` subprocess serves the whole module (its settings file is written where the verbs
run, `.dmcp/dev.env`, so they find it by default); every command is the real one, in a
subprocess, with an environment cleaned of AWS and dMCP settings.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest

from tests.unit.test_cli_commands import assert_short_error, clean_env, free_port

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Dev:
    home: Path
    """Where the verbs run: `.dmcp/dev.env` is here."""
    settings: dict[str, str]
    log: Path

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of a client that sourced the settings (plus `extra`)."""
        return clean_env(**self.settings) | extra

    def dmcp(
        self, *arguments: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "dmcp_aws", *arguments],
            cwd=cwd or self.home,
            env=env or clean_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )


def read_settings(path: Path) -> dict[str, str]:
    pairs = (line.removeprefix("export ").split("=", 1) for line in path.read_text().splitlines() if line)
    return {key: value for key, value in pairs}


@contextmanager
def running_dev(home: Path) -> Iterator[tuple[Dev, subprocess.Popen[str]]]:
    """`dmcp dev` in a subprocess whose settings file is `home/.dmcp/dev.env` (where the verbs run),
    stopped with Ctrl-C on the way out."""
    env_file = home / ".dmcp" / "dev.env"
    log = home / "dev.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "dmcp_aws", "dev", "--env-file", str(env_file)],
            cwd=ROOT,
            env=clean_env(),
            stdout=output,
            stderr=subprocess.STDOUT,
            text=True,
        )
    try:
        deadline = time.monotonic() + 60
        while not env_file.exists():
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "dmcp dev did not start within 60 s"
            time.sleep(0.1)
        yield Dev(home, read_settings(env_file), log), process
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dev]:
    home = tmp_path_factory.mktemp("dmcp-dev")
    with running_dev(home) as (running, process):
        yield running
    log = running.log.read_text()
    assert process.returncode == 0, log
    assert "stopped." in log
    assert not (home / ".dmcp" / "dev.env").exists(), "dmcp dev removes the settings it wrote when it stops"


def test_the_settings_name_the_endpoint_the_standard_way(dev: Dev) -> None:
    assert dev.settings["AWS_ENDPOINT_URL"].startswith("http://127.0.0.1:")
    assert dev.settings["DMCP_ENDPOINT_URL"] == dev.settings["AWS_ENDPOINT_URL"]  # older clients
    assert dev.settings["DMCP_SERVERS"] == "example"


VERBS: list[tuple[list[str], list[str]]] = [
    (["tools"], ["add", "a*: number, b*: number", "count_slowly", "steps*: integer"]),
    (["call", "add", "--arg", "a=2", "--arg", "b=40"], ['"sum": 42.0']),
    (["call", "add", "--json", '{"a": 1}', "--arg", "b=2", "--server", "example"], ['"sum": 3.0']),
    (["call", "echo", "--arg", "text=[bold]kept[/bold] ^[a-z]$"], ["[bold]kept[/bold] ^[a-z]$"]),
    (
        ["call", "count_slowly", "--arg", "steps=3", "--arg", "delay_s=0.05", "--timeout", "30"],
        ["counted to 3"],
    ),
    (["resources"], ["dmcp://example/about", "dmcp://example/greeting/{name}"]),
    (["read", "dmcp://example/greeting/world"], ["Hello, world!"]),
    (["prompts"], ["review_code", "code*, language"]),
    (["prompt", "review_code", "--arg", "code=x = [1]", "--arg", "language=python"], ["x = [1]", "user"]),
    (["ping"], ["example answered server/discover in"]),
]


def test_each_verb_against_dmcp_dev(dev: Dev) -> None:
    """Every MCP verb, several at a time (each is its own client connection)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(4) as pool:
        runs = list(pool.map(lambda verb: dev.dmcp(*verb[0]), VERBS))
    for (arguments, expected), done in zip(VERBS, runs, strict=True):
        assert done.returncode == 0, (arguments, done.stderr)
        for text in expected:
            assert text in done.stdout, (arguments, done.stdout)


def test_structured_content_is_json_on_a_pipe(dev: Dev) -> None:
    done = dev.dmcp("call", "add", "--arg", "a=0.5", "--arg", "b=1", env=dev.env())  # sourced settings
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"a": 0.5, "b": 1.0, "sum": 1.5}


def test_a_tool_error_exits_with_1(dev: Dev) -> None:
    done = dev.dmcp("call", "divide", "--arg", "a=1", "--arg", "b=0")
    assert done.returncode == 1 and "cannot divide by zero" in done.stdout


def test_a_live_progress_bar_on_a_terminal(dev: Dev) -> None:
    """With a terminal on stderr (forced), the progress the tool reports is drawn as it comes."""
    env = clean_env(FORCE_COLOR="1", TTY_INTERACTIVE="1", TTY_COMPATIBLE="1")
    done = dev.dmcp("call", "count_slowly", "--arg", "steps=4", "--arg", "delay_s=0.3", env=env)
    assert done.returncode == 0, done.stderr
    assert "step 4 of 4" in done.stderr or "step 3 of 4" in done.stderr, done.stderr
    assert "counted to 4" in done.stdout


def test_dmcp_dev_prints_a_line_per_request(dev: Dev) -> None:
    done = dev.dmcp("call", "add", "--arg", "a=7", "--arg", "b=7")
    assert done.returncode == 0, done.stderr
    deadline = time.monotonic() + 10
    while "tools/call add → example Answered" not in dev.log.read_text():
        assert time.monotonic() < deadline, dev.log.read_text()
        time.sleep(0.1)
    line = next(x for x in dev.log.read_text().splitlines() if "tools/call add → example Answered" in x)
    assert line.endswith(" ms") and "Traceback" not in dev.log.read_text()


def test_an_unknown_server_is_the_catch_alls_answer(dev: Dev) -> None:
    done = dev.dmcp("tools", "--server", "nope")
    assert_short_error(done, "no server named 'nope' is deployed", "catch-all", "-32601")


def test_a_deadline_then_the_dead_letters_and_their_redrive(dev: Dev) -> None:
    """A client whose reply queue the worker refuses: its request is dead-lettered with the reason,
    the call fails at its deadline (-32001, naming method, server and reply queue); `dmcp dlq`
    shows the dead letters without consuming them; `--redrive` sends them back."""
    refused = dev.env(DMCP_REPLY_PREFIX="dmcp-elsewhere-conn-")
    started = time.monotonic()
    done = dev.dmcp("ping", "--timeout", "1", env=refused)
    assert_short_error(done, "-32001", "from server 'example'", "dmcp-elsewhere-conn-", "within 1 s")
    assert "not under the deployment's reply prefix (dmcp-reply-conn-)" in done.stderr, done.stderr
    assert time.monotonic() - started < 20

    for _ in range(2):  # looking consumes nothing
        shown = dev.dmcp("dlq", "example")
        assert shown.returncode == 0, shown.stderr
        assert "server/discover" in shown.stdout and "forbidden-reply-address" in shown.stdout, shown.stdout
    moved = dev.dmcp("dlq", "example", "--redrive")
    assert moved.returncode == 0, moved.stderr
    # The two requests, and the cancellations the transport sent when they timed out (best
    # effort: the command may exit before they are sent), all refused for their reply address.
    count = re.search(r"moved (\d+) dead letter\(s\) of example back to its request queue", moved.stdout)
    assert count is not None and 2 <= int(count.group(1)) <= 4, moved.stdout
    assert "no message move tasks" in moved.stdout  # moto has none: receive, send, delete


def test_no_credentials_and_no_region(dev: Dev) -> None:
    endpoint = dev.settings["AWS_ENDPOINT_URL"]
    keys = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    no_keys = clean_env(AWS_ENDPOINT_URL=endpoint, AWS_DEFAULT_REGION="us-east-1")
    assert_short_error(dev.dmcp("tools", "--stack", "dmcp", env=no_keys), "no AWS credentials found")
    sourced_no_keys = {k: v for k, v in dev.env().items() if k not in keys}
    assert_short_error(dev.dmcp("call", "add", env=sourced_no_keys), "no AWS credentials found")
    no_region = clean_env(AWS_ENDPOINT_URL=endpoint, **keys)
    assert_short_error(dev.dmcp("tools", "--stack", "dmcp", env=no_region), "no AWS region", "AWS_REGION")
    missing = clean_env(AWS_ENDPOINT_URL=endpoint, AWS_DEFAULT_REGION="us-east-1", **keys)
    assert_short_error(dev.dmcp("tools", "--stack", "nope", env=missing), "no stack named 'nope'")


def test_stale_settings_after_dmcp_dev_stopped(dev: Dev, tmp_path: Path) -> None:
    stale = tmp_path / ".dmcp" / "dev.env"
    stale.parent.mkdir()
    stale.write_text(
        (dev.home / ".dmcp" / "dev.env")
        .read_text()
        .replace(dev.settings["AWS_ENDPOINT_URL"], f"http://127.0.0.1:{free_port()}")
    )
    assert_short_error(dev.dmcp("call", "add", cwd=tmp_path), ".dmcp/dev.env is stale", "start `dmcp dev`")


def test_debug_shows_the_traceback(dev: Dev) -> None:
    done = dev.dmcp("--debug", "tools", "--server", "nope")
    assert done.returncode != 0 and "Traceback (most recent call last)" in done.stderr
    assert "error: no server named 'nope' is deployed" in done.stderr


BOXED = {"name": "boxed", "servers": [{"name": "example", "max_concurrency": 2}], "idempotency": False}


def test_dmcp_worker_uses_dmcp_devs_settings_and_traces_nothing(dev: Dev, tmp_path: Path) -> None:
    """`dmcp worker` run where `dmcp dev`'s settings are (no endpoint given) serves a deployment of
    its own on that stack, prints a line per request, and no X-Ray warnings (no daemon here)."""
    anyio.run(provision_on, dev.settings, BOXED)
    (dev.home / "boxed.json").write_text(json.dumps(BOXED))
    env = clean_env(PYTHONPATH=str(ROOT))
    log = tmp_path / "worker.log"
    with log.open("w") as output:
        worker = subprocess.Popen(
            [sys.executable, "-m", "dmcp_aws", "worker", "-d", "boxed.json"],
            cwd=dev.home,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            text=True,
        )
    try:
        deadline = time.monotonic() + 30
        while "serving example of deployment 'boxed'" not in log.read_text():
            assert worker.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        assert f"at {dev.settings['AWS_ENDPOINT_URL']} (from .dmcp/dev.env)" in log.read_text()
        boxed_client = dev.env(
            DMCP_TOPIC_ARN=dev.settings["DMCP_TOPIC_ARN"].replace("dmcp-requests", "boxed-requests"),
            DMCP_REPLY_PREFIX="boxed-reply-conn-",
        )
        for a in range(3):
            done = dev.dmcp(
                "call", "add", "--arg", f"a={a}", "--arg", "b=1", "--timeout", "30", env=boxed_client
            )
            assert done.returncode == 0, done.stderr
            assert json.loads(done.stdout)["sum"] == a + 1
    finally:
        worker.send_signal(signal.SIGTERM)  # how a container is stopped: like Ctrl-C
        worker.wait(timeout=60)
    output = log.read_text()
    assert worker.returncode == 0, output
    assert "tools/call add → example Answered" in output and "stopped." in output
    for noise in ("discarded", "segment", "X-Ray", "xray", "Traceback", '"_aws"'):
        assert noise not in output, output


async def provision_on(settings: dict[str, str], description: dict[str, object]) -> None:
    import aioboto3

    from dmcp_aws.deployment import Deployment, topology
    from dmcp_aws.local.provision import provision

    session = aioboto3.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    )
    endpoint = settings["AWS_ENDPOINT_URL"]
    async with (
        session.client("sqs", endpoint_url=endpoint) as sqs,
        session.client("sns", endpoint_url=endpoint) as sns,
        session.client("dynamodb", endpoint_url=endpoint) as dynamodb,
    ):
        await provision(topology(Deployment.parse(description)), sqs, sns, dynamodb)


def test_dmcp_worker_bad_handlers(dev: Dev) -> None:
    (dev.home / "boom_at_import.py").write_text("raise RuntimeError('boom at import')\n")
    for handler, says in [
        ("no_such_package.handler.handler", "No module named 'no_such_package'"),
        ("boom_at_import.handler", "RuntimeError: boom at import"),
    ]:
        (dev.home / "h.json").write_text(
            json.dumps({"name": "h", "servers": [{"name": "s", "handler": handler}]})
        )
        done = dev.dmcp("worker", "-d", "h.json")
        assert_short_error(done, f"cannot load handler {handler!r}", says)


def test_dmcp_dev_with_bad_handlers(tmp_path: Path) -> None:
    (tmp_path / "boom_at_import.py").write_text("raise RuntimeError('boom at import')\n")
    for handler, says in [
        ("no_such_package.handler.handler", "No module named 'no_such_package'"),
        ("boom_at_import.handler", "RuntimeError: boom at import"),
    ]:
        (tmp_path / "h.json").write_text(
            json.dumps({"name": "h", "servers": [{"name": "s", "handler": handler}]})
        )
        done = subprocess.run(
            [sys.executable, "-m", "dmcp_aws", "dev", "-d", "h.json", "--env-file", "x.env"],
            cwd=tmp_path,
            env=clean_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert_short_error(done, f"cannot load handler {handler!r}", says)
        assert not (tmp_path / "x.env").exists()


TINY_SERVER = '''
from mcp.server.mcpserver import MCPServer
from dmcp_aws.lambda_handler import make_lambda_handler

mcp = MCPServer("notes")

@mcp.tool()
def remember(text: str) -> str:
    """Remember a note."""
    return "ok"

@mcp.resource("notes://all", mime_type="text/plain")
def all_notes() -> str:
    """Every note."""
    return "nothing yet"

handler = make_lambda_handler(mcp)
'''


def test_demo_for_a_server_that_is_not_the_example(tmp_path: Path) -> None:
    (tmp_path / "notes_server.py").write_text(TINY_SERVER)
    description = {"name": "mine", "servers": [{"name": "notes", "handler": "notes_server.handler"}]}
    (tmp_path / "mine.json").write_text(json.dumps(description))
    done = subprocess.run(
        [sys.executable, "-m", "dmcp_aws", "demo", "-d", "mine.json"],
        cwd=tmp_path,
        env=clean_env(PYTHONPATH=os.pathsep.join([str(tmp_path), str(ROOT)])),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    for text in (
        "What notes offers",
        "remember",
        "notes://all",
        "nothing yet",
        "written for the `example` server",
    ):
        assert text in done.stdout, done.stdout
    assert "Traceback" not in done.stderr, done.stderr


def test_verbs_against_a_deployed_stack_found_by_name(dev: Dev, tmp_path: Path) -> None:
    """`--stack NAME` reads the stack's CloudFormation outputs (here a stack on `dmcp dev`'s moto
    whose outputs name its queues); `--client` uses that client's provisioned reply queue."""
    import boto3

    from dmcp_aws.deployed import Output

    endpoint = dev.settings["AWS_ENDPOINT_URL"]
    aws = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    session = boto3.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    )
    sqs = session.client("sqs", endpoint_url=endpoint)
    url = {name: sqs.get_queue_url(QueueName=name)["QueueUrl"] for name in ("dmcp-example-requests",
           "dmcp-example-dlq", "dmcp-unrouted-requests", "dmcp-reply-laptop")}  # fmt: skip
    outputs = {
        Output.TOPIC_ARN: dev.settings["DMCP_TOPIC_ARN"],
        Output.REPLY_PREFIX: "dmcp-reply-",
        Output.REQUEST_QUEUE_URLS: json.dumps(
            {"example": url["dmcp-example-requests"], "unrouted": url["dmcp-unrouted-requests"]}
        ),
        Output.DEAD_LETTER_QUEUE_URLS: json.dumps({"example": url["dmcp-example-dlq"]}),
        Output.REPLY_QUEUE_URLS: json.dumps({"laptop": url["dmcp-reply-laptop"]}),
    }
    template = {
        "Resources": {"Nothing": {"Type": "AWS::SNS::Topic"}},
        "Outputs": {key: {"Value": value} for key, value in outputs.items()},
    }
    session.client("cloudformation", endpoint_url=endpoint).create_stack(
        StackName="deployed-cli", TemplateBody=json.dumps(template)
    )
    env = clean_env(AWS_ENDPOINT_URL=endpoint, **aws)
    done = dev.dmcp("tools", "--stack", "deployed-cli", env=env, cwd=tmp_path)
    assert done.returncode == 0 and "tools of example" in done.stdout, done.stderr
    done = dev.dmcp("call", "add", "-a", "a=1", "-a", "b=1", "--stack", "deployed-cli", "--client", "laptop",
                    env=env, cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0 and json.loads(done.stdout)["sum"] == 2, done.stderr
    done = dev.dmcp("dlq", "--stack", "deployed-cli", env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "dead letters of example" in done.stdout or "dead-letter queue of example is empty" in done.stdout
    done = dev.dmcp("call", "add", "--stack", "deployed-cli", "--client", "bot", env=env, cwd=tmp_path)
    assert_short_error(done, "has no client 'bot'")
