"""Start and stop LocalStack on the host (no Docker), bound to 127.0.0.1 only.

    >>> with host_localstack(port=0) as stack:       # 0: any free port
    ...     sqs = boto3.client("sqs", endpoint_url=stack.endpoint, **stack.boto_kwargs())
    ...     subprocess.run(["cdklocal", "deploy"], env={**os.environ, **stack.client_env()})

LocalStack runs from the cached Python 3.13 venv (`venv.ensure_venv`) as the leader of its own
process group, with its state in a fresh temp dir, the `dmcp-host` Lambda executor selected and
its gateway on hypercorn (which, unlike the default twisted server, binds only the given host).
Stopping sends SIGTERM to the group, SIGKILL after a grace period, then kills anything still
carrying the run's marker (function processes included) and removes the temp dir. The context
manager also stops it at interpreter exit, and LocalStack itself exits if the starting process
dies, so a failed or killed test run leaves nothing behind.
"""

from __future__ import annotations

import atexit
import dataclasses
import functools
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from dmcp_localstack.plugin_wheel import EXECUTOR_NAME
from dmcp_localstack.processes import MARKER_ENV, kill_run, run_processes
from dmcp_localstack.venv import ensure_venv

HOST = "127.0.0.1"
DEFAULT_PORT = 4566
REGION = "us-east-1"
ACCOUNT = "000000000000"


class LocalStackError(RuntimeError):
    """LocalStack could not be started (the message ends with its log's tail)."""


class PortInUseError(LocalStackError):
    """The requested port is taken (another LocalStack?)."""


@dataclasses.dataclass(frozen=True)
class HostLocalStack:
    """A running host-mode LocalStack."""

    port: int
    pid: int
    run_id: str
    workdir: Path
    started_in_s: float = 0.0

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "localstack.log"

    def client_env(self) -> dict[str, str]:
        """Environment for AWS clients and `cdklocal` talking to this LocalStack."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ENDPOINT_URL_S3": self.endpoint,
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            "LOCALSTACK_HOSTNAME": HOST,
            "EDGE_PORT": str(self.port),
        }

    def boto_kwargs(self) -> dict[str, str]:
        """Keyword arguments for `boto3.client(...)`."""
        return {
            "endpoint_url": self.endpoint,
            "region_name": REGION,
            "aws_access_key_id": "test",
            "aws_secret_access_key": "test",
        }

    def to_json(self) -> str:
        return json.dumps(
            {"port": self.port, "pid": self.pid, "run_id": self.run_id, "workdir": str(self.workdir)}
        )

    @classmethod
    def from_json(cls, text: str) -> HostLocalStack:
        data = json.loads(text)
        return cls(int(data["port"]), int(data["pid"]), data["run_id"], Path(data["workdir"]))


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int) -> bool:
    """Nobody listens on 127.0.0.1:`port` (connections in TIME_WAIT do not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
        return True


def localstack_env(
    port: int, workdir: Path, run_id: str, watch_pid: int | None, esm_idle_poll_s: float = 0.5
) -> dict[str, str]:
    """The environment LocalStack runs with (see docs/localstack.md for each setting)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("AWS_", "LOCALSTACK_"))}
    env.update(
        GATEWAY_LISTEN=f"{HOST}:{port}",
        GATEWAY_SERVER="hypercorn",
        LOCALSTACK_HOST=f"{HOST}:{port}",
        SQS_ENDPOINT_STRATEGY="path",
        DNS_ADDRESS="0",
        DISABLE_EVENTS="1",
        SKIP_SSL_CERT_DOWNLOAD="1",
        LOCALSTACK_VOLUME_DIR=str(workdir / "volume"),
        FILESYSTEM_ROOT=str(workdir / "filesystem"),
        DMCP_LOCALSTACK_TMPDIR=str(workdir / "tmp"),
        DMCP_LOCALSTACK_WORKDIR=str(workdir),
        LAMBDA_RUNTIME_EXECUTOR=EXECUTOR_NAME,
        LAMBDA_EVENT_SOURCE_MAPPING_POLL_INTERVAL_SEC="0.1",
        LAMBDA_EVENT_SOURCE_MAPPING_MAX_BACKOFF_ON_EMPTY_POLL_SEC=str(esm_idle_poll_s),
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
        **{MARKER_ENV: run_id},
    )
    env.pop("TMPDIR", None)
    if watch_pid is not None:
        env["DMCP_LOCALSTACK_WATCH_PID"] = str(watch_pid)
    return env


def health(port: int, timeout: float = 2.0) -> dict[str, Any] | None:
    """LocalStack's health document, or None if it does not answer."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(f"http://{HOST}:{port}/_localstack/health", timeout=timeout) as response:
            return json.loads(response.read()) if response.status == 200 else None
    except (OSError, urllib.error.URLError, ValueError):
        return None


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def start_localstack(
    port: int = DEFAULT_PORT,
    *,
    watch_parent: bool = True,
    extra_env: Mapping[str, str] | None = None,
    startup_timeout: float = 60.0,
    esm_idle_poll_s: float = 0.5,
) -> HostLocalStack:
    """Start LocalStack and wait until it answers; `port=0` picks a free port.

    With `watch_parent`, LocalStack shuts itself down once this process is gone.
    `esm_idle_poll_s` is how often an event source mapping polls an empty queue (LocalStack's
    default backs off to 10 s, which is what a request would wait; 0.5 s costs ~3% of a core
    per mapping while idle). `extra_env` adds or overrides LocalStack settings.
    """
    venv = ensure_venv()
    port = port or free_port()
    if not port_is_free(port):
        raise PortInUseError(
            f"port {port} on {HOST} is in use (another LocalStack?); pass port=0 for a free one"
        )
    run_id = uuid.uuid4().hex[:12]
    workdir = Path(tempfile.mkdtemp(prefix=f"dmcp-localstack-{port}-"))
    env = localstack_env(port, workdir, run_id, os.getpid() if watch_parent else None, esm_idle_poll_s)
    env.update(extra_env or {})
    started = time.perf_counter()
    with (workdir / "localstack.log").open("wb") as log:
        process = subprocess.Popen(
            [str(venv.python), "-m", "dmcp_localstack_host.launcher"],
            env=env,
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    stack = HostLocalStack(port, process.pid, run_id, workdir)
    deadline = time.monotonic() + startup_timeout
    while health(port, timeout=1.0) is None:
        if process.poll() is not None or time.monotonic() > deadline:
            tail = _tail(stack.log_path)
            stop_localstack(stack, keep_workdir=True)
            reason = f"exited with {process.returncode}" if process.returncode is not None else "timed out"
            raise LocalStackError(f"LocalStack {reason} on port {port}; log {stack.log_path}:\n{tail}")
        time.sleep(0.1)
    return dataclasses.replace(stack, started_in_s=time.perf_counter() - started)


def stop_localstack(stack: HostLocalStack, grace_s: float = 5.0, keep_workdir: bool = False) -> None:
    """Stop LocalStack and everything it started; idempotent.

    LocalStack's own shutdown takes about 2 s; it can hang when a service is still being loaded
    (CloudWatch, for the metrics of an invocation that just ended), hence the SIGKILL after
    `grace_s`: its state is thrown away anyway.
    """
    with suppress(ProcessLookupError):
        os.killpg(stack.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while _alive(stack.pid) and time.monotonic() < deadline:
        _reap(stack.pid)
        time.sleep(0.1)
    for sig_target in (os.killpg, os.kill):
        with suppress(ProcessLookupError, PermissionError):
            sig_target(stack.pid, signal.SIGKILL)
    _reap(stack.pid, block=True)
    kill_run(stack.run_id)
    if not keep_workdir:
        shutil.rmtree(stack.workdir, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return not _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def _reap(pid: int, block: bool = False) -> None:
    """Collect the exit status if `pid` is our child (no zombie left behind)."""
    with suppress(ChildProcessError):
        os.waitpid(pid, 0 if block else os.WNOHANG)


@contextmanager
def host_localstack(port: int = DEFAULT_PORT, **kwargs: Any) -> Iterator[HostLocalStack]:
    """A LocalStack for the `with` block; stopped on exit, on error and at interpreter exit."""
    stack = start_localstack(port, **kwargs)
    stopper = functools.partial(stop_localstack, stack)
    atexit.register(stopper)
    try:
        yield stack
    finally:
        stop_localstack(stack)
        atexit.unregister(stopper)


def still_running(stack: HostLocalStack) -> list[int]:
    """PIDs of the run's processes that are still alive (empty after a clean stop)."""
    return run_processes(stack.run_id)
