"""The dmcp-host executor through Lambda's Invoke API: results, errors, timeouts, environment."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import pytest

from tests.localstack.support import ROLE, processes_with, wait_for, zip_of

pytestmark = pytest.mark.localstack

APP = """
import os, sys, time, json, subprocess
INIT_PID = os.getpid()
NAMES = ("GREETING", "AWS_LAMBDA_FUNCTION_NAME", "AWS_REGION", "LAMBDA_TASK_ROOT")
print("init done", flush=True)

def handler(event, context):
    print("event", json.dumps(event))
    action = event.get("action")
    if action == "raise":
        raise ValueError("bad input: " + str(event.get("detail")))
    if action == "sleep":
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)  # orphan-probe"])
        time.sleep(event["seconds"])
    if action == "exit":
        os._exit(3)
    if action == "unserialisable":
        return {"value": object()}
    return {
        "env": {k: os.environ.get(k) for k in NAMES},
        "endpoint": os.environ.get("AWS_ENDPOINT_URL"),
        "request_id": context.aws_request_id,
        "remaining_ms": context.get_remaining_time_in_millis(),
        "memory": context.memory_limit_in_mb,
        "pid": os.getpid(), "init_pid": INIT_PID,
        "cwd": os.getcwd(),
        "sys_path_head": sys.path[:2],
    }
"""


def invoke(aws: Callable[[str], Any], name: str, event: dict[str, Any]) -> tuple[str | None, Any, str]:
    response = aws("lambda").invoke(FunctionName=name, Payload=json.dumps(event), LogType="Tail")
    logs = base64.b64decode(response.get("LogResult", "")).decode()
    return response.get("FunctionError"), json.loads(response["Payload"].read()), logs


@pytest.fixture(scope="module")
def function(make_function: Callable[..., str]) -> str:
    make_function(
        "executor-probe",
        {"app.py": APP},
        Timeout=2,
        MemorySize=256,
        Environment={"Variables": {"GREETING": "hello"}},
    )
    return "executor-probe"


def test_result_context_and_environment(aws: Callable[[str], Any], function: str, localstack: Any) -> None:
    error, payload, logs = invoke(aws, function, {})
    assert error is None
    assert payload["env"]["GREETING"] == "hello"
    assert payload["env"]["AWS_LAMBDA_FUNCTION_NAME"] == function
    assert payload["env"]["AWS_REGION"] == "us-east-1"
    assert payload["endpoint"] == localstack.endpoint
    assert payload["cwd"] == payload["env"]["LAMBDA_TASK_ROOT"] == payload["sys_path_head"][0]
    assert 0 < payload["remaining_ms"] <= 2000
    assert payload["memory"] == "256"
    assert f"START RequestId: {payload['request_id']}" in logs and "REPORT RequestId" in logs
    assert "event {}" in logs


def test_warm_environment_is_reused(aws: Callable[[str], Any], function: str) -> None:
    _, first, _ = invoke(aws, function, {})
    _, second, _ = invoke(aws, function, {})
    assert first["init_pid"] == second["init_pid"]


def test_handler_exception_is_a_function_error(aws: Callable[[str], Any], function: str) -> None:
    error, payload, logs = invoke(aws, function, {"action": "raise", "detail": 42})
    assert error == "Unhandled"
    assert payload["errorType"] == "ValueError"
    assert payload["errorMessage"] == "bad input: 42"
    assert any("app.py" in frame for frame in payload["stackTrace"])
    assert not any("lambda_bootstrap" in frame for frame in payload["stackTrace"])
    assert "[ERROR] ValueError: bad input: 42" in logs


def test_timeout_kills_the_process_group_and_next_call_starts_fresh(
    aws: Callable[[str], Any], function: str
) -> None:
    _, before, _ = invoke(aws, function, {})
    error, payload, logs = invoke(aws, function, {"action": "sleep", "seconds": 10})
    assert error == "Unhandled"
    assert payload["errorType"] == "Sandbox.Timedout"
    assert "Task timed out after 2.00 seconds" in payload["errorMessage"]
    assert "Task timed out" in logs
    assert processes_with("orphan-probe") == [], "the handler's child outlived the timeout"
    error, after, _ = invoke(aws, function, {})
    assert error is None
    assert after["init_pid"] != before["init_pid"]


def test_runtime_exit_is_reported(aws: Callable[[str], Any], function: str) -> None:
    error, payload, _ = invoke(aws, function, {"action": "exit"})
    assert error == "Unhandled"
    assert payload["errorType"] == "Runtime.ExitError"
    assert "exit status 3" in payload["errorMessage"]
    assert invoke(aws, function, {})[0] is None


def test_unserialisable_result(aws: Callable[[str], Any], function: str) -> None:
    error, payload, _ = invoke(aws, function, {"action": "unserialisable"})
    assert error == "Unhandled"
    assert payload["errorType"] == "Runtime.MarshalError"


def test_import_error_at_init(aws: Callable[[str], Any], make_function: Callable[..., str]) -> None:
    make_function(
        "executor-broken", {"app.py": "import not_a_module_anywhere\ndef handler(e, c): return 1\n"}
    )
    error, payload, _ = invoke(aws, "executor-broken", {})
    assert error == "Unhandled"
    assert payload["errorType"] == "Runtime.ImportModuleError"
    assert "not_a_module_anywhere" in payload["errorMessage"]


def test_runtime_without_host_interpreter_fails_the_function(aws: Callable[[str], Any]) -> None:
    lam = aws("lambda")
    lam.create_function(
        FunctionName="executor-nodejs",
        Runtime="nodejs20.x",
        Handler="index.handler",
        Role=ROLE,
        Code={"ZipFile": zip_of({"index.js": "exports.handler = async () => 1;"})},
    )
    state = wait_for(
        lambda: lam.get_function_configuration(FunctionName="executor-nodejs")["State"] != "Pending"
    )
    configuration = lam.get_function_configuration(FunctionName="executor-nodejs")
    assert state and configuration["State"] == "Failed"
    assert "Python runtimes only" in configuration["StateReason"]


def test_foreign_compiled_modules_are_flagged(
    make_function: Callable[..., str], aws: Callable[[str], Any], localstack: Any
) -> None:
    aarch64_elf = b"\x7fELF\x02\x01\x01" + bytes(11) + (0xB7).to_bytes(2, "little") + bytes(44)
    files = {
        "app.py": "def handler(e, c):\n    return 'pure python still works'\n",
        "fastlib/_speed.cpython-313-aarch64-linux-gnu.so": aarch64_elf,
    }
    make_function("executor-arm64-bundle", files, Architectures=["arm64"])
    assert invoke(aws, "executor-arm64-bundle", {})[1] == "pure python still works"
    log = localstack.log_path.read_text()
    assert "fastlib/_speed.cpython-313-aarch64-linux-gnu.so: aarch64" in log
