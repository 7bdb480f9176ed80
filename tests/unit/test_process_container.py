"""A process execution environment (`ProcessContainer` + `python -m dmcp_aws.local.runtime`): warm
between invocations, its line protocol safe from the handler's prints, a handler error reported,
a timed-out invocation really ended (its process is gone; the next one cold-starts), an import
error reported as such, and nothing left behind on retire."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from dmcp_aws.local.container import InvocationFailed, InvocationTimeout, ProcessContainer
from dmcp_aws.local.lambda_event import LocalLambdaContext
from dmcp_aws.local.stack import HandlerError

pytestmark = pytest.mark.anyio

HANDLERS = """
import logging
import os
import sys
import time

print("printed at import")


def echo(event, context):
    print("a print on stdout", event)
    os.write(1, b"raw bytes on descriptor 1, not JSON\\n")
    sys.stdout.flush()
    logging.getLogger("dmcp_aws.worker").warning("served %s", "it", extra={"duration_ms": 5})
    return {
        "event": event,
        "pid": os.getpid(),
        "function": context.function_name,
        "request": context.aws_request_id,
        "remaining_ms": context.get_remaining_time_in_millis(),
    }


def boom(event, context):
    raise ValueError("boom")


def hang(event, context):
    time.sleep(3600)
"""


def context(timeout_s: int = 30) -> LocalLambdaContext:
    return LocalLambdaContext("fn", 128, timeout_s, "us-east-1", "123456789012")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie nobody reaped yet is dead too
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


@pytest.fixture
def code_root(tmp_path: Path) -> Path:
    (tmp_path / "handlers_for_test.py").write_text(HANDLERS)
    return tmp_path


async def test_a_warm_process_answers_over_its_line_protocol(
    code_root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    container = ProcessContainer("fn-0", "handlers_for_test.echo", code_root=code_root)
    try:
        with caplog.at_level(logging.INFO, logger="dmcp_aws.worker"):
            first = await container.invoke({"Records": [1]}, context(), 30)
            second = await container.invoke({"Records": [2]}, context(), 30)
    finally:
        await container.retire()
    assert first["event"] == {"Records": [1]} and second["event"] == {"Records": [2]}
    assert first["pid"] == second["pid"] != os.getpid()  # one warm process, not this one
    assert first["function"] == "fn" and 25_000 < first["remaining_ms"] <= 30_000
    served = [r for r in caplog.records if r.name == "dmcp_aws.worker"]
    assert [r.getMessage() for r in served] == ["served it", "served it"]
    assert getattr(served[0], "duration_ms", None) == 5  # extras survive the trip
    assert not alive(first["pid"]) and container.pid is None


async def test_a_handler_error_fails_the_invocation_not_the_process(code_root: Path) -> None:
    container = ProcessContainer("fn-0", "handlers_for_test.boom", code_root=code_root)
    try:
        with pytest.raises(InvocationFailed, match="ValueError: boom"):
            await container.invoke({}, context(), 30)
        pid = container.pid
        with pytest.raises(InvocationFailed, match="ValueError: boom"):
            await container.invoke({}, context(), 30)
        assert pid is not None and container.pid == pid
    finally:
        await container.retire()


async def test_a_timed_out_invocation_is_killed_and_the_next_one_starts_anew(code_root: Path) -> None:
    container = ProcessContainer("fn-0", "handlers_for_test.hang", code_root=code_root)
    try:
        await container.start()
        pid = container.pid
        assert pid is not None
        with pytest.raises(InvocationTimeout):
            await container.invoke({}, context(1), 1)
        assert not alive(pid) and container.pid is None
        with pytest.raises(InvocationTimeout):
            await container.invoke({}, context(1), 1)  # a cold start, in a new process
    finally:
        await container.retire()


async def test_a_handler_that_cannot_be_imported_is_a_handler_error(code_root: Path) -> None:
    (code_root / "boom_at_import.py").write_text("raise RuntimeError('boom at import')\n")
    container = ProcessContainer("fn-0", "boom_at_import.handler", code_root=code_root)
    with pytest.raises(
        HandlerError, match=r"importing boom_at_import failed \(RuntimeError: boom at import\)"
    ):
        await container.start()
    assert container.pid is None
