"""How the `dmcp` command explains errors, reads its settings and formats what it prints (issue 8):
pure functions, no stack, no subprocess."""

from __future__ import annotations

import json
import logging
import socket
import sys
from pathlib import Path

import pytest
from botocore.exceptions import (
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
)
from mcp.shared.exceptions import MCPError

from dmcp_aws.cli import _common
from dmcp_aws.cli._common import CliError, explain, parse_assignments, parse_json_object, report
from dmcp_aws.cli._target import read_env_file, resolve, write_env_file
from dmcp_aws.cli.mcp_verbs import content_text, schema_arguments
from dmcp_aws.cli.stack import RequestLines, show_requests
from dmcp_aws.dead_letters import DeadLetter, summarize_body
from dmcp_aws.deployment import Deployment, DeploymentError
from dmcp_aws.lambda_handler import tracing_enabled
from dmcp_aws.local.stack import HandlerError, load_handler

TOPIC = "arn:aws:sns:us-east-1:123456789012:dmcp-requests"


def free_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize(
    ("exc", "says", "hints"),
    [
        (
            MCPError(-32601, "no server named 'nope' is deployed", {"server": "nope"}),
            "no server named 'nope' is deployed (the catch-all answered: JSON-RPC -32601",
            "--server NAME",
        ),
        (
            MCPError(-32001, "no answer to tools/call (id 2) from server 'x'"),
            "(JSON-RPC -32001)",
            "--timeout",
        ),
        (MCPError(-32602, "Unknown resource: x"), "Unknown resource: x (JSON-RPC error -32602)", None),
        (NoCredentialsError(), "no AWS credentials found", ".dmcp/dev.env"),
        (NoRegionError(), "no AWS region is configured", "AWS_REGION"),
        (
            EndpointConnectionError(endpoint_url="http://127.0.0.1:9"),
            "cannot reach http://127.0.0.1:9",
            "start `dmcp dev`",
        ),
        (
            ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "CreateQueue"),
            "AWS CreateQueue failed: AccessDenied: no",
            "permission",
        ),
        (ModuleNotFoundError("No module named 'moto'", name="moto"), "needs moto", "dmcp-aws[local]"),
        (HandlerError("cannot load handler 'a.b'"), "cannot load handler 'a.b'", "module.attribute"),
        (ValueError("something odd\nsecond line"), "ValueError: something odd", "--debug"),
        (KeyError("deployment 'x' has no server 'y'; it has z"), "deployment 'x' has no server 'y'", None),
    ],
)
def test_each_error_is_explained_in_a_line_and_a_hint(
    exc: BaseException, says: str, hints: str | None
) -> None:
    error = explain(exc)
    assert says in error.message and "\n" not in error.message
    assert (error.hint is None) if hints is None else (hints in (error.hint or ""))


def test_task_group_exception_groups_are_unwrapped() -> None:
    import asyncio

    nested = ExceptionGroup("outer", [ExceptionGroup("inner", [NoRegionError()])])
    assert explain(nested).message == "no AWS region is configured"
    cancelled = BaseExceptionGroup("g", [asyncio.CancelledError(), NoCredentialsError()])
    assert explain(cancelled).message == "no AWS credentials found"


def test_rich_markup_never_eats_text(capsys: pytest.CaptureFixture[str]) -> None:
    """A validation error shows the pattern `^[a-z][a-z0-9-]{0,30}$` whole."""
    with pytest.raises(DeploymentError) as raised:
        Deployment.parse({"name": "Bad_Name", "servers": [{"name": "example"}]}, source="mine.json")
    assert report(raised.value) == 2
    printed = capsys.readouterr().err
    assert "^[a-z][a-z0-9-]{0,30}$" in printed and printed.startswith("error: mine.json is invalid:")
    assert "Traceback" not in printed and len(printed.strip().splitlines()) == 2
    assert report(CliError("[bold]x[/bold] [local]", "pip install 'dmcp-aws[local]'")) == 1
    printed = capsys.readouterr().err
    assert "[bold]x[/bold] [local]" in printed and "dmcp-aws[local]" in printed


def test_debug_prints_the_traceback_too(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_common.state, "debug", True)
    try:
        raise NoRegionError()
    except NoRegionError as exc:
        assert report(exc) == 1
    printed = capsys.readouterr().err
    assert "Traceback (most recent call last)" in printed and "error: no AWS region" in printed


def test_arguments_from_the_command_line() -> None:
    assert parse_assignments(["a=2", "b=4.5", "t=text", 'j={"k": [1]}', "e=", "eq=x=y", "f=true"]) == {
        "a": 2,
        "b": 4.5,
        "t": "text",
        "j": {"k": [1]},
        "e": "",
        "eq": "x=y",
        "f": True,
    }
    assert parse_assignments(["n=3"], as_json=False) == {"n": "3"}
    with pytest.raises(CliError, match="KEY=VALUE"):
        parse_assignments(["novalue"])
    assert parse_json_object('{"a": 1}') == {"a": 1} and parse_json_object(None) == {}
    with pytest.raises(CliError, match="--json is not valid JSON"):
        parse_json_object("{bad")
    with pytest.raises(CliError, match="must be a JSON object, not list"):
        parse_json_object("[1]")


def test_the_settings_file_round_trips(tmp_path: Path) -> None:
    settings = {"AWS_ENDPOINT_URL": "http://127.0.0.1:5000", "DMCP_TOPIC_ARN": TOPIC, "ODD": "a b'c"}
    path = tmp_path / ".dmcp" / "dev.env"
    write_env_file(path, settings)
    assert read_env_file(path) == settings
    assert path.read_text().splitlines()[0] == "export AWS_ENDPOINT_URL=http://127.0.0.1:5000"


def _clear(monkeypatch: pytest.MonkeyPatch) -> None:
    """No AWS or dMCP settings; and what `resolve` applies from a settings file (as `source`
    would) goes into a copy of the environment that is dropped after the test."""
    import os

    monkeypatch.setattr(os, "environ", dict(os.environ))
    for name in [n for n in os.environ if n.startswith(("AWS_", "DMCP_"))]:
        monkeypatch.delenv(name)


def test_resolve_reads_the_environment_first_then_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _clear(monkeypatch)
    with pytest.raises(CliError, match="no stack to talk to") as raised:
        resolve(None, env_file=tmp_path / "missing.env")
    assert "start `dmcp dev`" in (raised.value.hint or "")

    monkeypatch.setenv("DMCP_TOPIC_ARN", TOPIC)
    monkeypatch.setenv("DMCP_REPLY_PREFIX", "dmcp-reply-conn-laptop_")
    monkeypatch.setenv("DMCP_ENDPOINT_URL", "http://127.0.0.1:4566")  # the older name still works
    found = resolve(None, env_file=tmp_path / "missing.env")
    assert found.source == "the environment" and found.endpoint_url == "http://127.0.0.1:4566"
    assert found.deployment_name == "dmcp" and found.pick_server(None) == "example"
    assert found.dead_letter_queue_name("example") == "dmcp-example-dlq"
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:4567")  # the standard name wins
    assert resolve(None).endpoint_url == "http://127.0.0.1:4567"
    options = resolve(None).client_options(None, 5)
    assert options["request_timeout"] == 5 and options["reply_prefix"] == "dmcp-reply-conn-laptop_"
    with pytest.raises(CliError, match="--client needs --stack"):
        resolve(None).client_options("laptop", None)

    _clear(monkeypatch)
    file = tmp_path / "dev.env"
    write_env_file(
        file,
        {
            "AWS_ENDPOINT_URL": "http://127.0.0.1:4568",
            "DMCP_TOPIC_ARN": TOPIC,
            "DMCP_REPLY_PREFIX": "p-",
            "DMCP_SERVERS": "search,example",
        },
    )
    found = resolve(None, env_file=file)
    assert found.source == str(file) and found.endpoint_url == "http://127.0.0.1:4568"
    assert found.pick_server(None) == "search" and found.pick_server("example") == "example"


def test_a_stale_settings_file_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dmcp_aws.cli._target import check

    _clear(monkeypatch)
    file = tmp_path / "dev.env"
    endpoint = f"http://127.0.0.1:{free_port()}"
    write_env_file(file, {"AWS_ENDPOINT_URL": endpoint, "DMCP_TOPIC_ARN": TOPIC, "DMCP_REPLY_PREFIX": "p-"})
    with pytest.raises(CliError, match="is stale: nothing answers at") as raised:
        check(resolve(None, env_file=file))
    assert "start `dmcp dev`" in (raised.value.hint or "")
    monkeypatch.setenv("DMCP_TOPIC_ARN", TOPIC)  # sourced settings of a stopped stack
    with pytest.raises(CliError, match="no stack answers at"):
        check(resolve(None, env_file=file))


def test_dead_letter_summaries() -> None:
    request = {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "add", "arguments": {}}}
    assert summarize_body(json.dumps(request)) == "tools/call add (id 7)"
    read = {"jsonrpc": "2.0", "id": "a", "method": "resources/read", "params": {"uri": "x://y"}}
    assert summarize_body(json.dumps(read)) == 'resources/read x://y (id "a")'
    envelope = {"Type": "Notification", "Message": json.dumps({"jsonrpc": "2.0", "method": "ping", "id": 1})}
    assert summarize_body(json.dumps(envelope)) == "SNS notification: ping (id 1)"
    assert summarize_body("") == "(empty body)"
    assert summarize_body("x" * 200, width=10) == "xxxxxxxxx…"
    letter = DeadLetter.from_message(
        {
            "MessageId": "m1",
            "Body": json.dumps(request),
            "Attributes": {"SentTimestamp": "1000000", "ApproximateReceiveCount": "3"},
            "MessageAttributes": {"dmcp.dlq-reason": {"DataType": "String", "StringValue": "undecodable: x"}},
        },
        now=1100.0,
    )
    assert (letter.reason, letter.receive_count, letter.age_s) == ("undecodable: x", 3, 100.0)


def test_request_lines(capsys: pytest.CaptureFixture[str]) -> None:
    log = logging.getLogger("dmcp_aws.worker")
    level = log.level  # show_requests lowers it to INFO: put it back after
    show_requests(True)
    try:
        served = {"mcp_method": "tools/call", "mcp_name": "add", "mcp_server": "example"}
        log.info("answered tools/call", extra=served | {"outcome": "Answered", "duration_ms": 12})
        log.info("another worker answers this copy")  # not a served request: no line
    finally:
        show_requests(False)
        log.setLevel(level)
    printed = capsys.readouterr().out.strip().splitlines()
    assert len(printed) == 1 and printed[0].endswith("tools/call add → example Answered 12 ms")
    assert not [h for h in logging.getLogger("dmcp_aws.worker").handlers if isinstance(h, RequestLines)]


def test_what_the_verbs_print() -> None:
    schema = {"properties": {"a": {"type": "number"}, "n": {"type": ["integer", "null"]}}, "required": ["a"]}
    assert schema_arguments(schema) == "a*: number, n: integer|null"
    from mcp_types import ImageContent, TextContent

    assert content_text(TextContent(type="text", text="[red]x[/red]")) == "[red]x[/red]"
    assert (
        content_text(ImageContent(type="image", data="AAAA", mime_type="image/png"))
        == "[image image/png, 3 bytes]"
    )


def test_tracing_only_where_an_xray_daemon_listens() -> None:
    assert not tracing_enabled({})
    assert not tracing_enabled({"LAMBDA_TASK_ROOT": "/var/task"})
    assert tracing_enabled({"AWS_XRAY_DAEMON_ADDRESS": "169.254.79.129:2000"})


def test_a_handler_that_cannot_load_is_a_handler_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "boom_on_import.py").write_text("raise RuntimeError('boom')\n")
    (tmp_path / "no_handler_here.py").write_text("x = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(HandlerError, match=r"importing no_such_module failed \(ModuleNotFoundError"):
        load_handler("no_such_module.handler")
    with pytest.raises(HandlerError, match=r"importing boom_on_import failed \(RuntimeError: boom\)"):
        load_handler("boom_on_import.handler")
    with pytest.raises(HandlerError, match="no_handler_here has no 'handler'"):
        load_handler("no_handler_here.handler")
    sys.modules.pop("no_handler_here", None)
