"""Command line: `python -m dmcp_localstack start|stop|status|env|run|venv`.

    python -m dmcp_localstack start             # background, port 4566
    eval "$(python -m dmcp_localstack env)"     # AWS_ENDPOINT_URL=... for cdklocal, aws
    python -m dmcp_localstack status
    python -m dmcp_localstack stop
    python -m dmcp_localstack run --port 0      # foreground until Ctrl-C

A background LocalStack is remembered in `~/.cache/dmcp-aws/localstack-host/<port>.json`.
"""

from __future__ import annotations

import argparse
import json
import shlex
import signal
import sys
import threading
import time
from pathlib import Path

from dmcp_localstack.runner import (
    DEFAULT_PORT,
    HostLocalStack,
    LocalStackError,
    health,
    host_localstack,
    start_localstack,
    stop_localstack,
)
from dmcp_localstack.venv import VenvError, cache_dir, ensure_venv


def _state_file(port: int) -> Path:
    return cache_dir() / "localstack-host" / f"{port}.json"


def _load(port: int) -> HostLocalStack | None:
    path = _state_file(port)
    return HostLocalStack.from_json(path.read_text()) if path.exists() else None


def cmd_start(args: argparse.Namespace) -> int:
    stack = start_localstack(args.port, watch_parent=False)
    path = _state_file(stack.port)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(stack.to_json())
    print(f"LocalStack ready at {stack.endpoint} in {stack.started_in_s:.1f}s")
    print(f"pid {stack.pid}, log {stack.log_path}")
    print(f"stop with: python -m dmcp_localstack stop --port {stack.port}")
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    stack = _load(args.port)
    if stack is None:
        print(f"no background LocalStack recorded on port {args.port}")
        return 1
    stop_localstack(stack)
    _state_file(args.port).unlink(missing_ok=True)
    print(f"stopped LocalStack on port {args.port}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    stack = _load(args.port)
    doc = health(args.port)
    state = "running" if doc else "not answering"
    print(f"port {args.port}: {state}" + (f" (pid {stack.pid}, log {stack.log_path})" if stack else ""))
    if doc and args.verbose:
        print(json.dumps(doc, indent=2))
    return 0 if doc else 1


def cmd_env(args: argparse.Namespace) -> int:
    stack = _load(args.port) or HostLocalStack(args.port, 0, "", Path())
    for key, value in stack.client_env().items():
        print(f"export {key}={shlex.quote(value)}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    with host_localstack(args.port) as stack:
        print(
            f"LocalStack ready at {stack.endpoint} in {stack.started_in_s:.1f}s; Ctrl-C stops it", flush=True
        )
        try:
            while not done.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
    return 0


def cmd_venv(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    venv = ensure_venv()
    built = f"built in {venv.build_seconds:.0f}s" if venv.build_seconds is not None else "cached"
    print(f"{venv.path} ({built}; {time.perf_counter() - started:.1f}s)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dmcp_localstack", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name, func, helptext in (
        ("start", cmd_start, "start in the background"),
        ("stop", cmd_stop, "stop a background LocalStack"),
        ("status", cmd_status, "is it answering?"),
        ("env", cmd_env, "print AWS_ENDPOINT_URL etc. as shell exports"),
        ("run", cmd_run, "run in the foreground until Ctrl-C"),
        ("venv", cmd_venv, "build (or find) the cached LocalStack venv"),
    ):
        sub = commands.add_parser(name, help=helptext)
        sub.set_defaults(func=func)
        if name != "venv":
            sub.add_argument(
                "--port", type=int, default=DEFAULT_PORT, help="0 picks a free port (start, run)"
            )
        if name == "status":
            sub.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except (LocalStackError, VenvError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
