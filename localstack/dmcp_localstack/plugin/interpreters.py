"""Which host interpreter runs a function, and the runtime libraries it sees after the code.

    >>> resolve_interpreter("python3.13")
    Interpreter(path='/…/localstack-venv-…/bin/python', version=(3, 13), isolated=True)

`DMCP_LAMBDA_PYTHON=/path/to/python` overrides the choice for every function; that interpreter
keeps its own site-packages (behind the function's code), which is handy with hot-reloaded code
and a project virtualenv. Otherwise the interpreter must match the function's runtime version:
this one, a `python3.X` on PATH, or a pyenv installation; it runs without site-packages, seeing
only the code directory, the runtime directory (boto3 and friends, as on Lambda) and stdlib.
"""

from __future__ import annotations

import dataclasses
import glob
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

OVERRIDE_ENV = "DMCP_LAMBDA_PYTHON"
RUNTIME_LIBRARIES = ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "urllib3", "six")
"""What the AWS Python runtimes provide besides the standard library."""

_lock = threading.Lock()
_cache: dict[str, Interpreter] = {}


class InterpreterNotFound(RuntimeError):
    """No host interpreter can run this runtime."""


@dataclasses.dataclass(frozen=True)
class Interpreter:
    path: str
    version: tuple[int, int]
    isolated: bool
    """True: no site-packages (the Lambda-like default); False: the override keeps its own."""

    @property
    def abi_tag(self) -> str:
        return f"cpython-{self.version[0]}{self.version[1]}"


def probe_version(path: str) -> tuple[int, int] | None:
    """The (major, minor) version of the Python at `path`, or None if it does not run."""
    try:
        out = subprocess.run(
            [path, "-c", "import sys; print(*sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=15,
            check=True,
        ).stdout.split()
        return int(out[0]), int(out[1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


def interpreter_candidates(major: int, minor: int) -> list[str]:
    """`pythonX.Y` on PATH, then pyenv's installs of X.Y, newest first."""
    name = f"python{major}.{minor}"
    found = [shutil.which(name) or ""]
    pyenv_root = os.environ.get("PYENV_ROOT") or str(Path.home() / ".pyenv")
    found += sorted(glob.glob(f"{pyenv_root}/versions/{major}.{minor}.*/bin/{name}"), reverse=True)
    return [path for path in found if path]


def resolve_interpreter(runtime: str | None) -> Interpreter:
    """The interpreter for a Lambda runtime such as `python3.13` (cached)."""
    key = f"{os.environ.get(OVERRIDE_ENV, '')}|{runtime}"
    with _lock:
        if key not in _cache:
            _cache[key] = _resolve(runtime)
        return _cache[key]


def _resolve(runtime: str | None) -> Interpreter:
    override = os.environ.get(OVERRIDE_ENV)
    if override:
        version = probe_version(override)
        if version is None:
            raise InterpreterNotFound(f"{OVERRIDE_ENV}={override} is not a working Python interpreter")
        return Interpreter(override, version, isolated=False)
    if not runtime or not runtime.startswith("python3."):
        raise InterpreterNotFound(f"runtime {runtime!r}: the dmcp-host executor runs Python runtimes only")
    wanted = (3, int(runtime.removeprefix("python3.")))
    if sys.version_info[:2] == wanted:
        return Interpreter(sys.executable, wanted, isolated=True)
    for path in interpreter_candidates(*wanted):
        if probe_version(path) == wanted:
            return Interpreter(path, wanted, isolated=True)
    raise InterpreterNotFound(
        f"runtime {runtime}: no python{wanted[0]}.{wanted[1]} on this host (PATH, pyenv); "
        f"install one or set {OVERRIDE_ENV}"
    )


def runtime_dir() -> Path:
    """A directory of links to this interpreter's boto3 family: the function's `/var/runtime`."""
    target = Path(tempfile.gettempdir()) / "dmcp-host-runtime"
    with _lock:
        if target.is_dir():
            return target
        staging = Path(tempfile.mkdtemp(prefix="dmcp-host-runtime-"))
        for name in RUNTIME_LIBRARIES:
            spec = importlib.util.find_spec(name)
            if spec is None or spec.origin is None:
                continue
            source = Path(spec.origin)
            source = source.parent if source.name == "__init__.py" else source
            (staging / source.name).symlink_to(source)
        staging.rename(target)
        return target
