"""Find compiled extension modules in a Lambda code bundle that this host cannot load.

A bundle built for `arm64` Lambda carries `aarch64` ELF objects (pydantic-core, for one), which an
x86_64 host cannot import; a bundle built for another CPython minor version carries the wrong ABI:

    >>> foreign_native_modules(Path("code"), host_machine="x86_64", python_tag="cpython-313")
    ['pydantic_core/_pydantic_core.cpython-313-aarch64-linux-gnu.so: aarch64']
"""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

_ELF_MACHINES = {0x03: "i386", 0x28: "arm", 0x3E: "x86_64", 0xB7: "aarch64"}
_MACHINE_ALIASES = {"amd64": "x86_64", "arm64": "aarch64"}


def _host_machine() -> str:
    """This host's CPU architecture in ELF terms (`x86_64`, `aarch64`)."""
    machine = platform.machine().lower()
    return _MACHINE_ALIASES.get(machine, machine)


def elf_machine(path: Path) -> str | None:
    """The architecture an ELF file is built for, or None if it is not ELF."""
    try:
        with path.open("rb") as f:
            header = f.read(20)
    except OSError:
        return None
    if len(header) < 20 or header[:4] != b"\x7fELF":
        return None
    code = int.from_bytes(header[18:20], "little" if header[5] == 1 else "big")
    return _ELF_MACHINES.get(code, f"elf-machine-{code:#x}")


def foreign_native_modules(
    code_dir: Path,
    host_machine: str | None = None,
    python_tag: str | None = None,
    limit: int = 20,
) -> list[str]:
    """Compiled modules under `code_dir` built for another CPU or another CPython (`file: reason`)."""
    machine = host_machine or _host_machine()
    tag = python_tag or f"cpython-{sys.version_info.major}{sys.version_info.minor}"
    problems: list[str] = []
    for root, _dirs, files in os.walk(code_dir):
        for name in files:
            if not (name.endswith(".so") or ".so." in name):
                continue
            path = Path(root, name)
            reasons = []
            built_for = elf_machine(path)
            if built_for is not None and built_for != machine:
                reasons.append(built_for)
            abi = name.split(".")[-2] if name.endswith(".so") else ""
            if abi.startswith("cpython-") and not abi.startswith(tag):
                reasons.append(abi)
            if reasons:
                problems.append(f"{path.relative_to(code_dir)}: {', '.join(reasons)}")
                if len(problems) >= limit:
                    return problems
    return problems
