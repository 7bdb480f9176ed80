"""The Python 3.13 virtualenv LocalStack runs in, built once and cached, with the executor plugin.

    >>> venv = ensure_venv()          # first time about a minute (pip), then instant
    >>> venv.python
    PosixPath('/root/.cache/dmcp-aws/localstack-venv-5d41402abc4b/bin/python')

The venv's name carries a hash of the interpreter version, `localstack/requirements-host.txt`
and `localstack/constraints-host.txt`, so changing a pin builds a new one. A build happens in a
staging folder that is renamed into place when complete, under a file lock, so concurrent runs
neither collide nor see half a venv. The plugin wheel (see `plugin_wheel`) is reinstalled
whenever its sources change.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dmcp_localstack.plugin.interpreters import interpreter_candidates, probe_version
from dmcp_localstack.plugin_wheel import build_plugin_wheel, plugin_hash

REQUIRED_PYTHON = (3, 13)
PYTHON_ENV = "DMCP_LOCALSTACK_PYTHON"
"""Interpreter to build the venv with (default: python3.13 on PATH, then pyenv)."""
CACHE_ENV = "DMCP_AWS_CACHE_DIR"
LOCALSTACK_DIR = Path(__file__).resolve().parents[1]
"""The repository's `localstack/` folder: this package and LocalStack's pins."""
REQUIREMENTS = LOCALSTACK_DIR / "requirements-host.txt"
CONSTRAINTS = LOCALSTACK_DIR / "constraints-host.txt"


class VenvError(RuntimeError):
    """The LocalStack venv cannot be built."""


@dataclasses.dataclass(frozen=True)
class LocalStackVenv:
    path: Path
    build_seconds: float | None = None
    """How long this call spent building (None: it was cached)."""

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"


def cache_dir() -> Path:
    """`$DMCP_AWS_CACHE_DIR`, else `$XDG_CACHE_HOME/dmcp-aws`, else `~/.cache/dmcp-aws`."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "dmcp-aws"


def find_python() -> str:
    """A Python 3.13 interpreter: `$DMCP_LOCALSTACK_PYTHON`, `python3.13` on PATH, or pyenv's."""
    name = "python{}.{}".format(*REQUIRED_PYTHON)
    candidates = [os.environ.get(PYTHON_ENV, ""), *interpreter_candidates(*REQUIRED_PYTHON)]
    for candidate in filter(None, candidates):
        if probe_version(candidate) == REQUIRED_PYTHON:
            return candidate
    raise VenvError(f"LocalStack host mode needs {name} (set {PYTHON_ENV}, or install it, e.g. with pyenv)")


def venv_key(python: str) -> str:
    """Hash of what determines the venv's contents."""
    digest = hashlib.sha256(
        subprocess.run(
            [python, "-c", "import sys, platform; print(sys.version, platform.machine())"],
            capture_output=True,
            check=True,
        ).stdout
    )
    for path in (REQUIREMENTS, CONSTRAINTS):
        digest.update(path.read_bytes() if path.exists() else b"")
    return digest.hexdigest()[:12]


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _pip(python: Path, *args: str) -> None:
    result = subprocess.run(
        [str(python), "-m", "pip", "--disable-pip-version-check", *args], capture_output=True, text=True
    )
    if result.returncode != 0:
        raise VenvError(f"pip {' '.join(args[:2])} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")


def _build(python: str, target: Path) -> None:
    if not REQUIREMENTS.exists():
        raise VenvError(f"{REQUIREMENTS} not found: host mode runs from a checkout of the repository")
    staging = Path(tempfile.mkdtemp(prefix=target.name + ".build-", dir=target.parent))
    try:
        subprocess.run([python, "-m", "venv", str(staging)], check=True, capture_output=True)
        args = ["install", "--quiet", "-r", str(REQUIREMENTS)]
        if CONSTRAINTS.exists():
            args += ["-c", str(CONSTRAINTS)]
        _pip(staging / "bin" / "python", *args)
        (staging / ".dmcp-complete").write_text("ok\n")
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _ensure_plugin(venv: Path) -> None:
    marker = venv / f".dmcp-plugin-{plugin_hash()}"
    if marker.exists():
        return
    with tempfile.TemporaryDirectory() as tmp:
        wheel = build_plugin_wheel(Path(tmp))
        _pip(
            venv / "bin" / "python",
            "install",
            "--quiet",
            "--no-deps",
            "--no-index",
            "--force-reinstall",
            str(wheel),
        )
    for old in venv.glob(".dmcp-plugin-*"):
        old.unlink()
    marker.write_text("ok\n")


def ensure_venv() -> LocalStackVenv:
    """The cached LocalStack venv with the current executor plugin; builds what is missing."""
    python = find_python()
    target = cache_dir() / f"localstack-venv-{venv_key(python)}"
    built: float | None = None
    with _locked(target.with_name(target.name + ".lock")):
        if not (target / ".dmcp-complete").exists():
            shutil.rmtree(target, ignore_errors=True)
            started = time.perf_counter()
            _build(python, target)
            built = time.perf_counter() - started
        _ensure_plugin(target)
    return LocalStackVenv(target, built)
