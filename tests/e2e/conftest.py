"""End-to-end fixtures: one embedded stack (moto on 127.0.0.1 + real workers) per test session."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from dmcp_aws.deployment import Deployment
from dmcp_aws.local.stack import RunningStack, embedded_stack

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
async def stack() -> AsyncIterator[RunningStack]:
    async with embedded_stack(Deployment.load(ROOT / "dmcp.json"), code_root=ROOT) as running:
        yield running


@pytest.fixture
async def sqs(stack: RunningStack):  # type: ignore[no-untyped-def]
    async with stack.session().client("sqs", endpoint_url=stack.endpoint_url) as client:
        yield client
