"""LocalStack host-mode fixtures: one LocalStack (no Docker) per test session, on a free port.

Tests here carry the `localstack` marker; `pytest -m "not localstack"` leaves them out. They
need a Python 3.13 interpreter (the cached LocalStack venv is built on first use, ~1 minute) and
fail with a clear message where there is none.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest

from dmcp_localstack import HostLocalStack, host_localstack
from dmcp_localstack.runner import still_running
from dmcp_localstack.venv import VenvError, find_python
from tests.localstack.support import ROLE, TIMINGS, settled, wait_for, zip_of


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if TIMINGS:
        terminalreporter.section("LocalStack timings")
        for line in TIMINGS:
            terminalreporter.write_line(line)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "localstack: runs against LocalStack in host mode (no Docker)")


@pytest.fixture(scope="session")
def localstack() -> Iterator[HostLocalStack]:
    try:
        find_python()
    except VenvError as exc:
        pytest.fail(f"the LocalStack layer needs Python 3.13: {exc}")
    with host_localstack(port=0) as stack:
        yield stack
    assert still_running(stack) == [], "LocalStack or function processes outlived the session"


@pytest.fixture(scope="session")
def aws(localstack: HostLocalStack) -> Callable[[str], Any]:
    """`aws("sqs")`: a boto3 client for this LocalStack."""
    return lambda service: boto3.client(service, **localstack.boto_kwargs())


@pytest.fixture(scope="session")
def make_function(aws: Callable[[str], Any]) -> Callable[..., str]:
    """Create a Python function from {file: source}, wait until Active, return its ARN."""

    def create(name: str, files: dict[str, str], handler: str = "app.handler", **config: Any) -> str:
        lam = aws("lambda")
        arn: str = lam.create_function(
            FunctionName=name,
            Runtime=config.pop("Runtime", "python3.13"),
            Handler=handler,
            Role=ROLE,
            Code={"ZipFile": zip_of(files)},
            **config,
        )["FunctionArn"]
        state = wait_for(lambda: settled(lam.get_function_configuration(FunctionName=name)))
        assert state == "Active", lam.get_function_configuration(FunctionName=name).get("StateReason")
        return arn

    return create
