"""The program inside a process container (`dmcp_aws.local.container.ProcessContainer`): one
execution environment, many invocations, as Lambda's runtime runs them.

    python -m dmcp_aws.local.runtime PARENT_PID HANDLER CODE_ROOT LOGGER_LEVELS_JSON

It puts CODE_ROOT first on `sys.path`, imports HANDLER (`module.attribute`) once (the init
phase), then serves invocations until EOF on its stdin. The line protocol (one JSON object a
line, UTF-8):

    parent -> child (stdin)   {"event": {...}, "context": {"function_name", "memory_limit_in_mb",
                               "timeout_s", "region", "account", "aws_request_id",
                               "function_version", "remaining_ms"}}
    child -> parent (stdout)  {"type": "ready"} | {"type": "init_error", "message"}   (once)
                              {"type": "result", "response"} | {"type": "error", "error_type",
                               "message"}                                    (one per invocation)
                              {"type": "log", "record": {...}}   (any time: a `logging` record)

The protocol owns the original stdout and stdin: the runtime moves them to private descriptors
and points descriptors 1 and 0 at stderr and /dev/null, so the handler's prints (and anything it
writes to stdout, even from C) go to the inherited stderr and cannot corrupt the protocol.
Records of the standard `logging` module go to the parent, which shows them as its own.

The runtime dies with its parent, even a SIGKILLed one: `PR_SET_PDEATHSIG` (Linux), and a
watchdog thread that kills the runtime's process group once the parent is gone (elsewhere, and
for what the handler started). On EOF it closes what the handler keeps for its event loop
(`aclose`) and exits 0.
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import logging
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from typing import IO, Any, Final

from dmcp_aws.local.lambda_event import LocalLambdaContext

PR_SET_PDEATHSIG: Final = 1
WATCHDOG_PERIOD_S: Final = 0.5


class Channel:
    """The protocol's writing end: whole lines, one writer at a time (log records may come from
    the handler's own threads)."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def send(self, message: dict[str, Any]) -> None:
        line = json.dumps(message, default=str) + "\n"
        with self._lock:
            self._stream.write(line)
            self._stream.flush()


class ForwardToParent(logging.Handler):
    """Sends each `logging` record to the parent as a `log` line."""

    def __init__(self, channel: Channel) -> None:
        super().__init__()
        self.channel = channel

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.channel.send({"type": "log", "record": record_fields(record)})
        except Exception:
            self.handleError(record)


def record_fields(record: logging.LogRecord) -> dict[str, Any]:
    """A record as JSON-able fields that `logging.makeLogRecord` turns back into one."""
    fields = dict(record.__dict__)
    fields["msg"] = record.getMessage()
    fields["args"] = None
    if record.exc_info:
        fields["exc_text"] = fields.get("exc_text") or logging.Formatter().formatException(record.exc_info)
    fields["exc_info"] = None
    return fields


def context_from(fields: dict[str, Any]) -> LocalLambdaContext:
    """The Lambda context the parent described, with the time it has left."""
    context = LocalLambdaContext(
        fields["function_name"],
        int(fields["memory_limit_in_mb"]),
        int(fields["timeout_s"]),
        fields["region"],
        fields["account"],
        aws_request_id=fields["aws_request_id"],
        function_version=fields.get("function_version", "$LATEST"),
    )
    spent = context.timeout_s - int(fields.get("remaining_ms", context.timeout_s * 1000)) / 1000
    context._started = time.monotonic() - max(0.0, spent)
    return context


def serve(handler: Callable[[Any, Any], Any], lines: Iterable[str], channel: Channel) -> None:
    """Run one invocation per line until the lines end; each gets one `result` or `error` line."""
    for line in lines:
        if not line.strip():
            continue
        try:
            request = json.loads(line)
            event, context = request["event"], context_from(request["context"])
        except (ValueError, KeyError, TypeError) as exc:
            channel.send({"type": "error", "error_type": "Runtime.InvalidRequest", "message": str(exc)})
            continue
        try:
            response = handler(event, context)
        except Exception as exc:
            print("".join(traceback.format_exception(exc)), file=sys.stderr, flush=True)
            channel.send({"type": "error", "error_type": type(exc).__name__, "message": str(exc)})
            continue
        try:
            channel.send({"type": "result", "response": response})
        except (TypeError, ValueError) as exc:
            channel.send({"type": "error", "error_type": "Runtime.MarshalError", "message": str(exc)})


def close_handler(handler: Any) -> None:
    """Release what the handler keeps for this process's event loop, then close the loop."""
    try:
        loop = asyncio.get_event_loop()
    except RuntimeError:
        return
    close = getattr(handler, "aclose", None)
    if close is not None and not loop.is_closed():
        loop.run_until_complete(close())
    loop.close()


def die_with_parent(parent: int) -> None:
    """Be SIGKILLed when `parent` ends (Linux), and watch for it anyway (other systems, and what
    the handler started: the watchdog kills the whole process group)."""
    if sys.platform == "linux":
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:  # the parent died before the line above
        os._exit(1)
    threading.Thread(target=_watch, args=(parent,), name="parent-watchdog", daemon=True).start()


def _watch(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(WATCHDOG_PERIOD_S)
    try:
        os.killpg(os.getpgrp(), signal.SIGKILL)
    finally:
        os._exit(1)


def _take_std_streams() -> tuple[IO[str], IO[str]]:
    """The protocol's ends (the original stdin and stdout); fd 0 becomes /dev/null, fd 1 stderr."""
    sys.stdout.flush()
    inbox = os.fdopen(os.dup(0), "r", encoding="utf-8")
    outbox = os.fdopen(os.dup(1), "w", encoding="utf-8")
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.dup2(2, 1)
    return inbox, outbox


def _forward_logging(channel: Channel, levels: dict[str, int]) -> None:
    root = logging.getLogger()
    root.handlers = [ForwardToParent(channel)]
    for name, level in levels.items():
        logging.getLogger(name or None).setLevel(level)


def main(argv: list[str]) -> int:
    parent, handler_name, code_root, levels = int(argv[1]), argv[2], argv[3], json.loads(argv[4])
    die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when this process ends
    inbox, outbox = _take_std_streams()
    channel = Channel(outbox)
    _forward_logging(channel, levels)
    if code_root not in sys.path:
        sys.path.insert(0, code_root)
    from dmcp_aws.local.stack import load_handler

    try:
        handler = load_handler(handler_name)
    except Exception as exc:
        channel.send({"type": "init_error", "message": str(exc)})
        return 1
    channel.send({"type": "ready"})
    serve(handler, inbox, channel)
    close_handler(handler)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
