"""The `dmcp-host` Lambda runtime executor: LocalStack runs a function's handler as a host process.

Select it with `LAMBDA_RUNTIME_EXECUTOR=dmcp-host`. It stands in for LocalStack's Docker executor:
`prepare_version` unzips the code, `start` spawns a `HostProcess` and waits for the handler's
init, `invoke` hands it one event and returns an `InvocationResult` the way the Docker runtime's
init reports it — the handler's JSON result, or an error object with `is_error=True` (so the
invoke API answers `FunctionError: Unhandled` and an SQS event source mapping retries the batch).
The function's timeout is enforced here: the process group is killed and the next invocation
starts a fresh one, as Lambda does.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from localstack.aws.api.lambda_ import PackageType
from localstack.services.lambda_.invocation.executor_endpoint import StatusErrorException
from localstack.services.lambda_.invocation.lambda_models import FunctionVersion, InvocationResult
from localstack.services.lambda_.invocation.plugins import RuntimeExecutorPlugin
from localstack.services.lambda_.invocation.runtime_executor import LambdaRuntimeException, RuntimeExecutor

# mypy sees the repository's own `localstack/` folder (compose file) here, not the package
from localstack import config  # type: ignore[attr-defined]

from .host_process import HostProcess, InitError, Outcome
from .interpreters import InterpreterNotFound, resolve_interpreter, runtime_dir
from .native_check import foreign_native_modules

LOG = logging.getLogger(__name__)
NAME = "dmcp-host"
PASSED_THROUGH = ("PATH", "LANG", "LC_ALL", "DMCP_LOCALSTACK_RUN")
"""Variables of LocalStack's own environment a function process inherits."""


class HostRuntimeExecutor(RuntimeExecutor):  # type: ignore[misc]
    """Runs one execution environment of a Python function as a host process."""

    def __init__(self, id: str, function_version: FunctionVersion) -> None:
        super().__init__(id=id, function_version=function_version)
        self.process: HostProcess | None = None
        self.env: dict[str, str] = {}
        self.tmp_dir: Path | None = None
        self.stopped = False

    # lifecycle

    def start(self, env_vars: dict[str, str]) -> None:
        self.tmp_dir = Path(tempfile.mkdtemp(prefix=f"dmcp-host-{self.id[:8]}-"))
        self.env = self._environment(env_vars)
        try:
            self.process = self._spawn()
        except InitError as exc:
            raise StatusErrorException(
                exc.error.get("errorMessage", "init failed"), payload=_json(exc.error)
            ) from exc

    def stop(self) -> None:
        self.stopped = True
        if self.process is not None:
            self.process.kill()
        if self.tmp_dir is not None:
            shutil.rmtree(self.tmp_dir, ignore_errors=True)

    def invoke(self, payload: dict[str, str]) -> InvocationResult:
        request_id = payload["invoke-id"]
        timeout = float(self.function_version.config.timeout)
        if self.process is None or not self.process.alive:
            if self.stopped:
                raise LambdaRuntimeException(f"execution environment {self.id} is stopped")
            try:
                self.process = self._spawn()
            except InitError as exc:
                return InvocationResult(request_id, _json(exc.error), is_error=True, logs=exc.logs)
        message = {
            "type": "invoke",
            "request_id": request_id,
            "function_arn": payload["invoked-function-arn"],
            "payload": payload["payload"],
            "trace_id": payload.get("trace-id"),
            "deadline_ms": _now_ms() + int(timeout * 1000),
        }
        outcome = self.process.invoke(message, timeout)
        return self._result(request_id, timeout, outcome)

    # addresses: everything is on this host's loopback

    def get_address(self) -> str:
        return "127.0.0.1"

    def get_endpoint_from_executor(self) -> str:
        host = config.GATEWAY_LISTEN[0].host
        return "127.0.0.1" if host in ("0.0.0.0", "", "::") else host

    def get_runtime_endpoint(self) -> str:
        port = config.GATEWAY_LISTEN[0].port
        return f"http://{self.get_endpoint_from_executor()}:{port}/_localstack_lambda/{self.id}"

    def get_logs(self) -> str:
        return self.process.all_logs() if self.process else ""

    # versions

    @classmethod
    def prepare_version(cls, function_version: FunctionVersion) -> None:
        cfg = function_version.config
        if cfg.package_type != PackageType.Zip or not cfg.code:
            raise LambdaRuntimeException("the dmcp-host executor runs zip-packaged functions only")
        try:
            interpreter = resolve_interpreter(cfg.runtime)
        except InterpreterNotFound as exc:
            raise LambdaRuntimeException(str(exc)) from exc
        cfg.code.prepare_for_execution()
        if cfg.code.is_hot_reloading():
            return  # a folder on this host, run as it is
        foreign = foreign_native_modules(
            Path(cfg.code.get_unzipped_code_location()), python_tag=interpreter.abi_tag
        )
        if foreign:
            LOG.warning(
                "Function %s bundles compiled modules this host (%s) cannot load, e.g. %s. Bundle its "
                "dependencies for the host platform when deploying to LocalStack (docs/localstack.md).",
                function_version.qualified_arn,
                interpreter.path,
                "; ".join(foreign[:3]),
            )

    @classmethod
    def cleanup_version(cls, function_version: FunctionVersion) -> None:
        """Nothing to undo: unzipped code belongs to LocalStack's code store."""

    @classmethod
    def validate_environment(cls) -> bool:
        return True

    # helpers

    def _spawn(self) -> HostProcess:
        cfg = self.function_version.config
        interpreter = resolve_interpreter(cfg.runtime)
        code_dir = Path(cfg.code.get_unzipped_code_location())
        process = HostProcess(interpreter, code_dir, runtime_dir(), self.env)
        process.start(timeout=float(config.LAMBDA_RUNTIME_ENVIRONMENT_TIMEOUT))
        return process

    def _environment(self, env_vars: dict[str, Any]) -> dict[str, str]:
        env = {key: os.environ[key] for key in PASSED_THROUGH if key in os.environ}
        env.update({key: str(value) for key, value in env_vars.items() if value is not None})
        code_dir = str(self.function_version.config.code.get_unzipped_code_location())
        env.update(
            LAMBDA_TASK_ROOT=code_dir,
            LAMBDA_RUNTIME_DIR=str(runtime_dir()),
            TMPDIR=str(self.tmp_dir),
            AWS_EXECUTION_ENV=f"AWS_Lambda_{self.function_version.config.runtime}",
        )
        return env

    def _result(self, request_id: str, timeout: float, outcome: Outcome) -> InvocationResult:
        logs = outcome.logs
        reply = outcome.reply
        if outcome.timed_out:
            message = f"RequestId: {request_id} Error: Task timed out after {timeout:.2f} seconds"
            logs += f"{message}\n"
            error: dict[str, Any] = {"errorType": "Sandbox.Timedout", "errorMessage": message}
            return InvocationResult(
                request_id, _json(error), is_error=True, logs=self._frame(request_id, logs, outcome)
            )
        if reply is None:
            message = (
                f"RequestId: {request_id} Error: Runtime exited with error: exit status {outcome.exit_code}"
            )
            logs += f"{message}\n"
            error = {"errorType": "Runtime.ExitError", "errorMessage": message}
            return InvocationResult(
                request_id, _json(error), is_error=True, logs=self._frame(request_id, logs, outcome)
            )
        if reply["type"] == "error":
            return InvocationResult(
                request_id, _json(reply["error"]), is_error=True, logs=self._frame(request_id, logs, outcome)
            )
        return InvocationResult(
            request_id, reply["payload"].encode(), is_error=False, logs=self._frame(request_id, logs, outcome)
        )

    def _frame(self, request_id: str, logs: str, outcome: Outcome) -> str:
        """Wrap an invocation's logs in the START / END / REPORT lines Lambda writes."""
        version = self.function_version.id.qualifier
        memory = self.function_version.config.memory_size
        used = f"\tMax Memory Used: {outcome.max_memory_mb} MB" if outcome.max_memory_mb is not None else ""
        report = (
            f"REPORT RequestId: {request_id}\tDuration: {outcome.duration_ms:.2f} ms"
            f"\tBilled Duration: {math.ceil(outcome.duration_ms)} ms\tMemory Size: {memory} MB{used}"
        )
        return (
            f"START RequestId: {request_id} Version: {version}\n{logs}END RequestId: {request_id}\n{report}\n"
        )


class HostExecutorPlugin(RuntimeExecutorPlugin):  # type: ignore[misc]
    """Entry point `dmcp-host` in group `localstack.lambda.runtime_executor`."""

    name = NAME

    def load(self, *args: Any, **kwargs: Any) -> type[RuntimeExecutor]:
        return HostRuntimeExecutor


def _json(value: Any) -> bytes:
    return json.dumps(value).encode()


def _now_ms() -> int:
    return int(time.time() * 1000)
