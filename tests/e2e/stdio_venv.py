"""The virtualenv `mcp-server-time` runs in, built once from `stdio_servers/requirements-time.txt`
and cached under the kit's cache folder (`~/.cache/dmcp-aws`); a changed pin builds a new one.

Third-party stdio servers get their own virtualenv: they pin their own `mcp` (see
../shared/ENVIRONMENT.md), which must not meet the kit's.
"""

from __future__ import annotations

import fcntl
import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

from dmcp_localstack.venv import cache_dir

REQUIREMENTS = Path(__file__).with_name("stdio_servers") / "requirements-time.txt"


def time_server_command() -> Path:
    """The `mcp-server-time` executable, installing it on first use (about ten seconds)."""
    key = hashlib.sha256(REQUIREMENTS.read_bytes() + sys.version.encode()).hexdigest()[:12]
    target = cache_dir() / f"mcp-server-time-{key}"
    command, done = target / "bin" / "mcp-server-time", target / ".dmcp-complete"
    if done.exists():
        return command
    target.parent.mkdir(parents=True, exist_ok=True)
    with (target.parent / f"{target.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if done.exists():
            return command
        # Built in place (a venv's scripts name its own path), marked complete only at the end.
        shutil.rmtree(target, ignore_errors=True)
        try:
            subprocess.run([sys.executable, "-m", "venv", str(target)], check=True, capture_output=True)
            pip = [str(target / "bin" / "python"), "-m", "pip", "--disable-pip-version-check"]
            subprocess.run(
                [*pip, "install", "--quiet", "-r", str(REQUIREMENTS)], check=True, capture_output=True
            )
            done.write_text("ok\n")
        except BaseException:
            shutil.rmtree(target, ignore_errors=True)
            raise
    return command
