"""The program a host-mode Lambda execution environment runs: one process, many invocations.

Started by the `dmcp-host` executor as `python -I -S -u -B lambda_bootstrap.py CODE_DIR RUNTIME_DIR`
(RUNTIME_DIR empty when the interpreter brings its own packages)
with two extra file descriptors (named in `DMCP_HOST_CONTROL="read_fd,write_fd"`). Like the
real runtime it puts the code directory first on `sys.path`, then the runtime's own libraries
(boto3 and friends), imports `_HANDLER` once (the init phase), then serves invocations. Control
messages are JSON lines; the handler's stdout and stderr stay free for its logs.

    parent -> child  {"type": "invoke", "request_id", "function_arn", "payload", "deadline_ms", "trace_id"}
    child -> parent  {"type": "ready"} | {"type": "init_error", "error"}
                     {"type": "result", "request_id", "payload"} | {"type": "error", "request_id", "error"}

After each invocation the child prints `LOG_MARK + request_id` on stdout, so the parent knows it
has every log line of that invocation.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any, TextIO

LOG_MARK = "\x1edmcp-host-end "
"""Prefix of the line that closes an invocation's logs on stdout."""


class LambdaContext:
    """The `context` argument, with the attributes the Python runtime gives it."""

    def __init__(self, request_id: str, function_arn: str, deadline_ms: int) -> None:
        env = os.environ
        self.aws_request_id = request_id
        self.invoked_function_arn = function_arn
        self.function_name = env.get("AWS_LAMBDA_FUNCTION_NAME", "")
        self.function_version = env.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        self.memory_limit_in_mb = env.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        self.log_group_name = env.get("AWS_LAMBDA_LOG_GROUP_NAME", "")
        self.log_stream_name = env.get("AWS_LAMBDA_LOG_STREAM_NAME", "")
        self.identity = None
        self.client_context = None
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self) -> int:
        return max(self._deadline_ms - int(time.time() * 1000), 0)


def _user_frames(exc: BaseException) -> traceback.StackSummary:
    """The traceback without this bootstrap's own frames, as Lambda reports it."""
    frames = [frame for frame in traceback.extract_tb(exc.__traceback__) if frame.filename != __file__]
    return traceback.StackSummary.from_list(frames)


def error_object(
    exc: BaseException, error_type: str | None = None, request_id: str | None = None
) -> dict[str, Any]:
    """The Lambda error shape: errorMessage, errorType, requestId, stackTrace."""
    error: dict[str, Any] = {
        "errorMessage": str(exc),
        "errorType": error_type or type(exc).__name__,
        "stackTrace": traceback.format_list(_user_frames(exc)),
    }
    if request_id:
        error["requestId"] = request_id
    return error


def load_handler(spec: str) -> Callable[[Any, Any], Any]:
    """Import `module.function` (the `_HANDLER` setting); `dir/module.function` is accepted too."""
    module_name, _, attribute = spec.replace("/", ".").rpartition(".")
    if not module_name:
        raise ValueError(f"Bad handler '{spec}': expected module.function")
    module = importlib.import_module(module_name)
    handler = getattr(module, attribute)
    if not callable(handler):
        raise TypeError(f"Handler '{spec}' is not callable")
    return handler  # type: ignore[no-any-return]


def _init_error_type(exc: BaseException) -> str:
    if isinstance(exc, ImportError):
        return "Runtime.ImportModuleError"
    if isinstance(exc, SyntaxError):
        return "Runtime.UserCodeSyntaxError"
    if isinstance(exc, AttributeError):
        return "Runtime.HandlerNotFound"
    return f"Runtime.{type(exc).__name__}"


def _watch_parent(parent: int) -> None:
    """Kill this process group once the executor (LocalStack) is gone, so no handler outlives it."""
    while os.getppid() == parent:
        time.sleep(0.5)
    os.killpg(os.getpgrp(), signal.SIGKILL)


def invoke(handler: Callable[[Any, Any], Any], message: dict[str, Any]) -> dict[str, Any]:
    """Run one invocation and build the reply message."""
    request_id = message["request_id"]
    os.environ["_X_AMZN_TRACE_ID"] = message.get("trace_id") or ""
    context = LambdaContext(request_id, message["function_arn"], message["deadline_ms"])
    try:
        result = handler(json.loads(message["payload"] or "null"), context)
    except Exception as exc:
        error = error_object(exc, request_id=request_id)
        _print_error(error)
        return {"type": "error", "request_id": request_id, "error": error}
    try:
        payload = json.dumps(result)
    except (TypeError, ValueError) as exc:
        error = {"errorMessage": f"Unable to marshal response: {exc}", "errorType": "Runtime.MarshalError"}
        return {"type": "error", "request_id": request_id, "error": error}
    return {"type": "result", "request_id": request_id, "payload": payload}


def _print_error(error: dict[str, Any]) -> None:
    """Log an error the way the Python runtime does: one line, then the user's traceback."""
    lines = [f"[ERROR] {error['errorType']}: {error['errorMessage']}", "Traceback (most recent call last):"]
    print("\n".join(lines) + "\n" + "".join(error["stackTrace"]), file=sys.stderr, flush=True)


def _send(channel: TextIO, message: dict[str, Any]) -> None:
    channel.write(json.dumps(message) + "\n")
    channel.flush()


def main(argv: list[str]) -> int:
    code_dir, runtime_dir = argv[1], argv[2]
    read_fd, write_fd = (int(fd) for fd in os.environ.pop("DMCP_HOST_CONTROL").split(","))
    inbox = os.fdopen(read_fd, "r", encoding="utf-8")
    outbox = os.fdopen(write_fd, "w", encoding="utf-8")
    threading.Thread(target=_watch_parent, args=(os.getppid(),), daemon=True).start()
    sys.path[:0] = [path for path in (code_dir, runtime_dir) if path]
    os.chdir(code_dir)
    try:
        handler = load_handler(os.environ["_HANDLER"])
    except Exception as exc:
        error = error_object(exc, _init_error_type(exc))
        error["errorMessage"] = f"Unable to import module '{os.environ.get('_HANDLER')}': {exc}"
        _print_error(error)
        _send(outbox, {"type": "init_error", "error": error})
        return 1
    _send(outbox, {"type": "ready"})
    for line in inbox:
        message = json.loads(line)
        reply = invoke(handler, message)
        sys.stderr.flush()
        print(f"{LOG_MARK}{message['request_id']}", flush=True)
        _send(outbox, reply)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
