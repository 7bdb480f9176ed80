"""CDK fixtures: the stack synthesised in-process (bundling skipped) from a sample deployment."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")
os.environ.setdefault("CDK_DISABLE_VERSION_CHECK", "1")

import aws_cdk as cdk
from aws_cdk.assertions import Template
from infra.bundling import BundleSpec, LambdaBundle, lambda_code
from infra.config import handlers
from infra.stack import DmcpStack, DmcpStackProps

from dmcp_aws.deployment import Deployment

ROOT = Path(__file__).resolve().parents[2]
LAPTOP_ROLE = "arn:aws:iam::111111111111:role/laptop-agent"
CI_ROLE = "arn:aws:iam::222222222222:role/ci-agent"

SAMPLE = Deployment.parse(
    {
        "name": "acme",
        "servers": [
            {"name": "example"},
            {
                "name": "search",
                "handler": "functions.example.handler.handler",
                "memory_mb": 1024,
                "timeout_s": 60,
                "batch_size": 20,
                "batching_window_s": 2,
                "max_concurrency": 3,
                "max_receive_count": 5,
            },
        ],
        "clients": [
            {"name": "laptop", "principal": LAPTOP_ROLE},
            {"name": "ci", "principal": CI_ROLE, "fifo": True},
            {"name": "ops", "principal": "account"},
        ],
    }
)


def build_stack(
    deployment: Deployment, app: cdk.App | None = None, env: cdk.Environment | None = None
) -> DmcpStack:
    """The stack in a fresh app that skips bundling (the `functions/` folder stands in for the asset)."""
    app = app or cdk.App(context={"aws:cdk:bundling-stacks": []})
    code = lambda_code(LambdaBundle(BundleSpec(repo_root=ROOT, handlers=handlers(deployment))))
    return DmcpStack(app, deployment.name, props=DmcpStackProps(deployment=deployment, code=code), env=env)


@pytest.fixture(scope="session")
def stack() -> DmcpStack:
    return build_stack(SAMPLE)


@pytest.fixture(scope="session")
def template(stack: DmcpStack) -> Template:
    return Template.from_stack(stack)


@pytest.fixture(scope="session")
def resources(template: Template) -> Callable[[str], dict[str, Any]]:
    """`resources("AWS::SQS::Queue")` -> {logical id: resource}."""
    return lambda kind: template.find_resources(kind)


def logical_id_of(template: Template, kind: str, **properties: Any) -> str:
    """The one resource of `kind` whose properties include `properties`."""
    found = [
        k for k, r in template.find_resources(kind).items()
        if all(r["Properties"].get(p) == v for p, v in properties.items())
    ]  # fmt: skip
    assert len(found) == 1, (kind, properties, found)
    return found[0]
