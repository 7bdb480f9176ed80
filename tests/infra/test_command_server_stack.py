"""A `command` server's function: the kit's relay handler and its command in the environment."""

from __future__ import annotations

import json

from aws_cdk.assertions import Match, Template

from dmcp_aws.deployment import Deployment
from tests.infra.conftest import build_stack

COMMANDS = Deployment.parse(
    {
        "name": "relay",
        "servers": [
            {"name": "example"},
            {"name": "time", "command": "mcp-server-time", "requirements": ["mcp-server-time==2026.10.19"]},
        ],
    }
)


def test_a_command_server_runs_the_relay_with_its_command() -> None:
    template = Template.from_stack(build_stack(COMMANDS))
    functions = template.find_resources(
        "AWS::Lambda::Function", {"Properties": {"Handler": "dmcp_aws.bridges.stdio_server.serve_time"}}
    )
    (properties,) = (f["Properties"] for f in functions.values())
    variables = properties["Environment"]["Variables"]
    assert json.loads(variables["DMCP_STDIO_TIME"]) == {"command": "mcp-server-time", "args": [], "env": {}}
    template.has_resource_properties(
        "AWS::Lambda::Function",
        {
            "Handler": "functions.example.handler.handler",
            "Environment": {"Variables": Match.not_({"DMCP_STDIO_TIME": Match.any_value()})},
        },
    )
