"""The function process on its own, without LocalStack: init, invoke, errors, timeout, logs."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from dmcp_localstack.plugin.host_process import HostProcess, InitError
from dmcp_localstack.plugin.interpreters import Interpreter
from tests.localstack.support import processes_with

APP = """
import subprocess, sys, time
print("importing app")

def handler(event, context):
    print("handling", event["n"])
    if event.get("child"):
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)  # host-process-probe"])
    time.sleep(event.get("sleep", 0))
    return {"n": event["n"], "request_id": context.aws_request_id}
"""


def make_process(tmp_path: Path, source: str) -> HostProcess:
    code = tmp_path / "code"
    code.mkdir()
    (code / "app.py").write_text(source)
    runtime = tmp_path / "runtime"
    runtime.mkdir()
    interpreter = Interpreter(sys.executable, sys.version_info[:2], isolated=True)
    return HostProcess(interpreter, code, runtime, {"_HANDLER": "app.handler", "PATH": "/usr/bin:/bin"})


def message(request_id: str, event: dict[str, object], deadline_ms: int = 2**41) -> dict[str, object]:
    return {
        "type": "invoke",
        "request_id": request_id,
        "function_arn": "arn:fn",
        "payload": json.dumps(event),
        "deadline_ms": deadline_ms,
        "trace_id": None,
    }


def test_invocations_and_their_logs(tmp_path: Path) -> None:
    process = make_process(tmp_path, APP)
    process.start(timeout=10)
    try:
        first = process.invoke(message("r1", {"n": 1}), timeout=5)
        second = process.invoke(message("r2", {"n": 2}), timeout=5)
    finally:
        process.kill()
    assert first.reply == {
        "type": "result",
        "request_id": "r1",
        "payload": json.dumps({"n": 1, "request_id": "r1"}),
    }
    assert first.logs == "importing app\nhandling 1\n"
    assert second.logs == "handling 2\n"


def test_import_error_is_an_init_error(tmp_path: Path) -> None:
    process = make_process(tmp_path, "import missing_module_xyz\n")
    with pytest.raises(InitError) as caught:
        process.start(timeout=10)
    assert caught.value.error["errorType"] == "Runtime.ImportModuleError"
    assert "missing_module_xyz" in caught.value.logs
    assert not process.alive


def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    process = make_process(tmp_path, APP)
    process.start(timeout=10)
    outcome = process.invoke(message("r1", {"n": 1, "sleep": 30, "child": True}), timeout=1)
    assert outcome.timed_out and outcome.reply is None
    assert "handling 1" in outcome.logs
    assert not process.alive
    assert processes_with("host-process-probe") == []
