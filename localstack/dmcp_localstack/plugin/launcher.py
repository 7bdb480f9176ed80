"""Start `localstack.runtime.main` for host mode: loopback only, own temp dir, tied to a parent.

    python -m dmcp_localstack_host.launcher      (inside the LocalStack venv)

Environment it reads besides LocalStack's own:
- `DMCP_LOCALSTACK_TMPDIR` — the temp dir for this run (unzipped Lambda code, runtime links);
  set on `tempfile` directly, because LocalStack treats `TMPDIR` as a deprecated setting.
- `DMCP_LOCALSTACK_WATCH_PID` — if set, LocalStack shuts down (SIGTERM, then SIGKILL of its
  process group 5 s later) as soon as that process is gone, e.g. a test run that was killed;
  it then also removes `DMCP_LOCALSTACK_WORKDIR`, which nobody else is left to clean up.
"""

from __future__ import annotations

import os
import runpy
import shutil
import signal
import sys
import tempfile
import threading
import time

GRACE_S = 5.0


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_orphaned = threading.Event()


def _watch(pid: int, parent: int) -> None:
    """Stop this LocalStack when `pid` exits (or this process is re-parented)."""
    while _pid_alive(pid) and os.getppid() == parent:
        time.sleep(0.5)
    _orphaned.set()
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(GRACE_S)
    _remove_workdir()
    os.killpg(os.getpgrp(), signal.SIGKILL)


def _remove_workdir() -> None:
    workdir = os.environ.get("DMCP_LOCALSTACK_WORKDIR")
    if workdir:
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    tmp = os.environ.get("DMCP_LOCALSTACK_TMPDIR")
    if tmp:
        os.makedirs(tmp, exist_ok=True)
        tempfile.tempdir = tmp
    watched = os.environ.get("DMCP_LOCALSTACK_WATCH_PID")
    if watched:
        threading.Thread(
            target=_watch, args=(int(watched), os.getppid()), daemon=True, name="dmcp-watch"
        ).start()
    code = 0
    try:
        runpy.run_module("localstack.runtime.main", run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    # LocalStack has finished its own shutdown here. A service loaded lazily during shutdown
    # (CloudWatch, for the metrics of a last invocation) can leave a non-daemon thread that
    # would keep the interpreter alive, so exit without waiting for threads.
    sys.stdout.flush()
    sys.stderr.flush()
    if _orphaned.is_set():
        _remove_workdir()
    os._exit(code)


if __name__ == "__main__":
    main()
