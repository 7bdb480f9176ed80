"""The wheel built from pyproject.toml holds the library (`dmcp_aws`) and nothing else: development
tooling such as the LocalStack host-mode runner (`localstack/dmcp_localstack`) stays out of it."""

from __future__ import annotations

import importlib.util
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_wheel_packages_only_the_library() -> None:
    found = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    assert found["where"] == ["transport"] and found["include"] == ["dmcp_aws*"]
    library = ROOT / "transport" / "dmcp_aws"
    packages = [init.parent.relative_to(library).as_posix() for init in library.rglob("__init__.py")]
    assert [p for p in packages if "localstack" in p] == []


def test_the_localstack_runner_lives_in_the_localstack_folder() -> None:
    spec = importlib.util.find_spec("dmcp_localstack")  # on the path through pytest's `pythonpath`
    assert spec is not None and spec.origin is not None
    assert Path(spec.origin).parent.parent == ROOT / "localstack"
