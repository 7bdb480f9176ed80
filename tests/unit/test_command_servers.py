"""`command` servers in the deployment description: validation, the kit handler, their settings."""

from __future__ import annotations

import json

import pytest

from dmcp_aws.bridges import stdio_server
from dmcp_aws.deployment import Deployment, DeploymentError, topology
from dmcp_aws.local.stack import worker_environment

TWO = {
    "servers": [
        {"name": "time", "command": "mcp-server-time", "args": ["--local-timezone", "UTC"]},
        {"name": "every-thing", "command": "node", "args": ["index.js"], "env": {"A": "1"}},
        {"name": "example"},
    ]
}


def test_command_servers_run_the_kit_handler_keyed_by_name() -> None:
    workers = {w.server: w for w in topology(Deployment.parse(TWO)).workers}
    assert workers["time"].handler == "dmcp_aws.bridges.stdio_server.serve_time"
    assert workers["every-thing"].handler == "dmcp_aws.bridges.stdio_server.serve_every_thing"
    assert workers["example"].handler == "functions.example.handler.handler"
    assert workers["example"].environment == {}
    assert json.loads(workers["every-thing"].environment["DMCP_STDIO_EVERY_THING"]) == {
        "command": "node",
        "args": ["index.js"],
        "env": {"A": "1"},
    }


@pytest.mark.parametrize(
    ("server", "problem"),
    [
        ({"name": "x", "handler": "a.b", "command": "c"}, "either handler or command, not both"),
        ({"name": "x", "args": ["a"]}, "args and env belong to a command server"),
        ({"name": "x", "command": ""}, "at least 1 character"),
    ],
)
def test_exactly_one_entry_point(server: dict[str, object], problem: str) -> None:
    with pytest.raises(DeploymentError, match=problem):
        Deployment.parse({"servers": [server]})


def test_a_python_command_server_may_list_requirements() -> None:
    spec = Deployment.parse(
        {
            "servers": [
                {"name": "t", "command": "mcp-server-time", "requirements": ["mcp-server-time==2026.10.19"]}
            ]
        }
    )
    assert spec.servers[0].requirements == ["mcp-server-time==2026.10.19"]


def test_one_process_holds_every_servers_settings_apart() -> None:
    with worker_environment(Deployment.parse(TWO), "."):
        assert stdio_server.StdioCommand.from_env("time").args == ("--local-timezone", "UTC")
        assert stdio_server.StdioCommand.from_env("every-thing").env == {"A": "1"}
    assert stdio_server.serve_every_thing is stdio_server.handler_for("every-thing")
    assert stdio_server.serve_time.server.name == "time"
    with pytest.raises(AttributeError):
        stdio_server.serve_Not_A_Name  # noqa: B018
    with pytest.raises(RuntimeError, match="DMCP_STDIO_NOPE is not set"):
        stdio_server.StdioCommand.from_env("nope", {})
