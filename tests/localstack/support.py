"""Helpers for the LocalStack tests: code zips, polling, process checks."""

from __future__ import annotations

import io
import time
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

ROLE = "arn:aws:iam::000000000000:role/lambda-role"

TIMINGS: list[str] = []
"""Figures the LocalStack layer measured; printed in the terminal summary (see conftest)."""


def zip_of(files: Mapping[str, str | bytes]) -> bytes:
    """A Lambda code zip from {path: source}."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, source in files.items():
            archive.writestr(name, source)
    return buffer.getvalue()


def settled(configuration: dict[str, Any]) -> str | None:
    state: str = configuration["State"]
    return None if state == "Pending" else state


def wait_for(condition: Callable[[], Any], timeout: float = 20.0, interval: float = 0.2) -> Any:
    """Poll until `condition()` is truthy; return its value or fail."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


def processes_with(token: str) -> list[int]:
    """PIDs whose command line contains `token`."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if token.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found
