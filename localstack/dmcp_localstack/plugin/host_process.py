"""One Lambda execution environment as a host process running `lambda_bootstrap.py`.

    >>> process = HostProcess(interpreter, code_dir, runtime_dir, env)
    >>> process.start(timeout=20)           # raises InitError if the handler cannot be imported
    >>> outcome = process.invoke({...}, timeout=30)
    >>> outcome.reply, outcome.logs, outcome.timed_out
    >>> process.kill()

The process leads its own process group, so a timeout or `kill()` takes down anything the
handler started; the bootstrap kills its group by itself if this process (LocalStack) dies.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import json
import os
import queue
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from .interpreters import Interpreter
from .lambda_bootstrap import LOG_MARK

BOOTSTRAP = Path(__file__).with_name("lambda_bootstrap.py")
_EOF: dict[str, Any] = {"type": "eof"}


class InitError(Exception):
    """The handler failed to initialise; `error` is the Lambda error object."""

    def __init__(self, error: dict[str, Any], logs: str) -> None:
        super().__init__(error.get("errorMessage", "init failed"))
        self.error = error
        self.logs = logs


@dataclasses.dataclass
class Outcome:
    """What an invocation produced: the bootstrap's reply (None if it never came) and its logs."""

    reply: dict[str, Any] | None
    logs: str
    duration_ms: float
    max_memory_mb: int | None
    timed_out: bool = False
    exit_code: int | None = None


class HostProcess:
    """A bootstrap process serving one invocation at a time."""

    def __init__(
        self, interpreter: Interpreter, code_dir: Path, runtime_dir: Path, env: dict[str, str]
    ) -> None:
        self.interpreter = interpreter
        self.code_dir = code_dir
        self.runtime_dir = runtime_dir
        self.env = env
        self.popen: subprocess.Popen[bytes] | None = None
        self._replies: queue.Queue[dict[str, Any]] = queue.Queue()
        self._outbox: Any = None
        self._lines: list[str] = []
        self._all_logs: collections.deque[str] = collections.deque(maxlen=2000)
        self._log_lock = threading.Lock()
        self._marks: dict[str, threading.Event] = {}
        self._log_thread: threading.Thread | None = None

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def start(self, timeout: float) -> None:
        """Spawn the process and wait until the handler is imported."""
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        flags = ["-I", "-u", "-B"] + (["-S"] if self.interpreter.isolated else [])
        env = dict(self.env, DMCP_HOST_CONTROL=f"{to_child_r},{from_child_w}")
        try:
            self.popen = subprocess.Popen(
                [self.interpreter.path, *flags, str(BOOTSTRAP), str(self.code_dir), self._runtime_path()],
                env=env,
                cwd=self.code_dir,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                pass_fds=(to_child_r, from_child_w),
                start_new_session=True,
            )
        finally:
            os.close(to_child_r)
            os.close(from_child_w)
        self._outbox = os.fdopen(to_child_w, "w", encoding="utf-8")
        threading.Thread(target=self._read_replies, args=(from_child_r,), daemon=True).start()
        self._log_thread = threading.Thread(target=self._read_logs, daemon=True)
        self._log_thread.start()
        reply = self._next_reply(timeout)
        if reply is None or reply["type"] != "ready":
            self.kill()
            self._drain_logs()
            logs = self._take_logs()
            if reply is None:
                raise InitError({"errorType": "Runtime.InitTimeout", "errorMessage": "init timed out"}, logs)
            error = reply.get("error") or {
                "errorType": "Runtime.ExitError",
                "errorMessage": "runtime exited during init",
            }
            raise InitError(error, logs)

    def invoke(self, message: dict[str, Any], timeout: float) -> Outcome:
        """Send one invocation; wait at most `timeout` seconds for its reply."""
        request_id = message["request_id"]
        mark = self._marks[request_id] = threading.Event()
        started = time.perf_counter()
        try:
            self._outbox.write(json.dumps(message) + "\n")
            self._outbox.flush()
        except (BrokenPipeError, ValueError, OSError):
            pass
        reply = self._next_reply(timeout)
        duration_ms = (time.perf_counter() - started) * 1000
        memory = self._max_memory_mb()
        if reply is None:
            self.kill()
            self._drain_logs()
            return Outcome(None, self._take_logs(), duration_ms, memory, timed_out=True)
        if reply["type"] == "eof":
            exit_code = self.popen.wait() if self.popen else None
            self._drain_logs()
            return Outcome(None, self._take_logs(), duration_ms, memory, exit_code=exit_code)
        mark.wait(2.0)
        self._marks.pop(request_id, None)
        return Outcome(reply, self._take_logs(), duration_ms, memory)

    def kill(self) -> None:
        """Kill the process group and reap the process."""
        if self.popen is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(5)
        if self._outbox is not None:
            with contextlib.suppress(OSError):
                self._outbox.close()

    def _runtime_path(self) -> str:
        """The runtime libraries go on the path only in isolated mode; an override brings its own."""
        return str(self.runtime_dir) if self.interpreter.isolated else ""

    def all_logs(self) -> str:
        with self._log_lock:
            return "".join(self._all_logs)

    def _next_reply(self, timeout: float) -> dict[str, Any] | None:
        try:
            return self._replies.get(timeout=timeout)
        except queue.Empty:
            return None

    def _read_replies(self, fd: int) -> None:
        with os.fdopen(fd, "r", encoding="utf-8") as inbox:
            for line in inbox:
                try:
                    self._replies.put(json.loads(line))
                except json.JSONDecodeError:
                    continue
        self._replies.put(_EOF)

    def _read_logs(self) -> None:
        assert self.popen is not None and self.popen.stdout is not None
        for raw in self.popen.stdout:
            line = raw.decode("utf-8", errors="replace")
            if line.startswith(LOG_MARK):
                event = self._marks.get(line[len(LOG_MARK) :].strip())
                if event is not None:
                    event.set()
                continue
            with self._log_lock:
                self._lines.append(line)
                self._all_logs.append(line)

    def _drain_logs(self) -> None:
        if self._log_thread is not None:
            self._log_thread.join(1.0)

    def _take_logs(self) -> str:
        with self._log_lock:
            lines, self._lines = self._lines, []
        return "".join(lines)

    def _max_memory_mb(self) -> int | None:
        if self.popen is None:
            return None
        try:
            status = Path(f"/proc/{self.popen.pid}/status").read_text()
        except OSError:
            return None
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) // 1024
        return None
