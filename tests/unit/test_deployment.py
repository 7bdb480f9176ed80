"""The deployment description and the topology both stacks are built from."""

from __future__ import annotations

from pathlib import Path

import pytest

from dmcp_aws.deployment import CATCH_ALL_HANDLER, Deployment, DeploymentError, topology

ROOT = Path(__file__).resolve().parents[2]


def test_repository_deployment_loads() -> None:
    deployment = Deployment.load(ROOT / "dmcp.json")
    assert [s.name for s in deployment.servers] == ["example"]
    assert deployment.reply_prefix == "dmcp-reply-"


def test_topology_per_server_and_catch_all() -> None:
    deployment = Deployment.parse(
        {
            "name": "acme",
            "servers": [{"name": "search", "timeout_s": 20, "max_receive_count": 4}, {"name": "files"}],
            "clients": [{"name": "bot", "principal": "arn:aws:iam::123456789012:role/bot", "fifo": True}],
        }
    )
    shape = topology(deployment)
    assert shape.topic == "acme-requests"
    queues = {q.name: q for q in shape.queues}
    assert queues["acme-search-requests"].dead_letter_queue == "acme-search-dlq"
    assert queues["acme-search-requests"].max_receive_count == 4 + 3, "three last-word deliveries"
    assert queues["acme-search-requests"].visibility_timeout_s == 120
    assert queues["acme-reply-bot.fifo"].fifo
    policies = {s.queue: s.filter_policy for s in shape.subscriptions}
    assert policies["acme-search-requests"] == {"mcp.server": ["search"]}
    assert policies["acme-unrouted-requests"] == {
        "mcp.server": [{"exists": False}, {"anything-but": ["search", "files"]}]
    }
    assert {w.server: w.handler for w in shape.workers}["unrouted"] == CATCH_ALL_HANDLER


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ({"servers": []}, "servers: List should have at least 1 item"),
        ({"servers": [{"name": "Bad Name"}]}, "servers.0.name: String should match pattern"),
        ({"servers": [{"name": "a"}, {"name": "a"}]}, "server names must be unique; repeated: a"),
        ({"servers": [{"name": "unrouted"}]}, "reserved for the catch-all"),
        (
            {"servers": [{"name": "a", "timeout_s": 0}]},
            "servers.0.timeout_s: Input should be greater than or equal to 1",
        ),
        (
            {"servers": [{"name": "a", "max_concurrency": 1}]},
            "max_concurrency: Input should be greater than or equal to 2",
        ),
        ({"servers": [{"name": "a", "colour": "red"}]}, "servers.0.colour: Extra inputs are not permitted"),
        (
            {"servers": [{"name": "a", "batch_size": 50}]},
            "batch_size above 10 needs a batching_window_s above 0",
        ),
        (
            {"servers": [{"name": "a"}], "clients": [{"name": "conn-x", "principal": "account"}]},
            "client names starting with 'conn-' are reserved",
        ),
        ({"servers": [{"name": "a"}], "clients": [{"name": "b", "principal": "*"}]}, "clients.0.principal"),
        (
            {"servers": [{"name": "a", "requirements": ["-r requirements.txt"]}]},
            "servers.0.requirements: Value error, '-r requirements.txt' is not a pip requirement string",
        ),
        ({"servers": [{"name": "a", "requirements": ["./my-lib"]}]}, "is not a pip requirement string"),
        ({"servers": [{"name": "a", "requirements": ["numpy>>2"]}]}, "is not a pip requirement string"),
        (
            {"servers": [{"name": "a", "requirements": "PyYAML"}]},
            "servers.0.requirements: Input should be a valid list",
        ),
        ({"servers": [{"name": "a", "requirements": ["dmcp_aws"]}]}, "is always bundled from source"),
    ],
)
def test_invalid_descriptions_say_what_is_wrong(data: dict, problem: str) -> None:
    with pytest.raises(DeploymentError) as caught:
        Deployment.parse(data, source="dmcp.json")
    assert str(caught.value).startswith("dmcp.json is invalid:")
    assert problem in str(caught.value)


def test_load_reports_missing_and_broken_files(tmp_path: Path) -> None:
    with pytest.raises(DeploymentError, match="does not exist"):
        Deployment.load(tmp_path / "missing.json")
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    with pytest.raises(DeploymentError, match="is not valid JSON"):
        Deployment.load(broken)


def test_the_transports_default_prefix_is_the_default_deployments_connection_prefix() -> None:
    from dmcp_aws.client import DEFAULT_REPLY_PREFIX
    from dmcp_aws.deployment import DEFAULT_DEPLOYMENT

    assert DEFAULT_REPLY_PREFIX == DEFAULT_DEPLOYMENT.connection_queue_prefix == "dmcp-reply-conn-"


def test_a_servers_requirements_are_pip_requirement_strings() -> None:
    requirements = [
        "PyYAML",
        " httpx>=0.27,<1 ",
        "pandas[excel,performance]==2.2.3; python_version >= '3.12'",
        "zope.interface (~=6.0)",
        "tool @ https://example.com/tool-1.0-py3-none-any.whl",
    ]
    spec = Deployment.parse({"servers": [{"name": "a", "requirements": requirements}]}).servers[0]
    assert spec.requirements == [r.strip() for r in requirements]
    assert Deployment.parse({"servers": [{"name": "a"}]}).servers[0].requirements == []
