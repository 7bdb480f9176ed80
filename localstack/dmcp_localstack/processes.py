"""Find and end the processes of one host-mode run, by the marker in their environment.

LocalStack and every function process it starts carry `DMCP_LOCALSTACK_RUN=<run id>`:

    >>> run_processes("3f2a9c1b")
    [48211, 48305]
    >>> kill_run("3f2a9c1b")

Linux only (reads `/proc/<pid>/environ`); processes of other users are skipped.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

MARKER_ENV = "DMCP_LOCALSTACK_RUN"


def run_processes(run_id: str) -> list[int]:
    """PIDs of live processes whose environment carries this run's marker."""
    needle = f"{MARKER_ENV}={run_id}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and needle in environ.split(b"\0"):
            found.append(int(entry.name))
    return sorted(found)


def kill_run(run_id: str, wait_s: float = 5.0) -> list[int]:
    """SIGKILL every process (and its group) of the run; return the PIDs that were found."""
    pids = run_processes(run_id)
    for pid in pids:
        for kill in (os.killpg, os.kill):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + wait_s
    while run_processes(run_id) and time.monotonic() < deadline:
        time.sleep(0.1)
    return pids
