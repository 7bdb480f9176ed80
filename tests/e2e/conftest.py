"""End-to-end fixtures: one embedded stack (moto on 127.0.0.1 + real workers) per test session."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from dmcp_aws.deployment import Deployment
from dmcp_aws.local.stack import RunningStack, embedded_stack

ROOT = Path(__file__).resolve().parents[2]


PROTOCOL_SERVER = {
    "name": "protocol",
    "handler": "tests.e2e.protocol_server.handler",
    "timeout_s": 30,
    "max_concurrency": 4,
}
"""A test-only server beside the example (`tests/e2e/protocol_server.py`)."""


def deployment_for_tests() -> Deployment:
    """The project's deployment (`dmcp.json`) plus the protocol tests' server."""
    description = json.loads((ROOT / "dmcp.json").read_text())
    description["servers"].append(PROTOCOL_SERVER)
    return Deployment.parse(description)


@pytest.fixture(scope="session")
async def stack() -> AsyncIterator[RunningStack]:
    async with embedded_stack(deployment_for_tests(), code_root=ROOT) as running:
        yield running


@pytest.fixture
async def sqs(stack: RunningStack):  # type: ignore[no-untyped-def]
    async with stack.session().client("sqs", endpoint_url=stack.endpoint_url) as client:
        yield client
