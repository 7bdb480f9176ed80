"""Spotting compiled modules a host cannot load (no LocalStack needed)."""

from __future__ import annotations

from pathlib import Path

from dmcp_localstack.plugin.native_check import elf_machine, foreign_native_modules

MACHINES = {"x86_64": 0x3E, "aarch64": 0xB7}


def fake_elf(path: Path, machine: str) -> None:
    header = b"\x7fELF\x02\x01\x01" + bytes(11) + MACHINES[machine].to_bytes(2, "little") + bytes(44)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(header)


def test_elf_machine(tmp_path: Path) -> None:
    fake_elf(tmp_path / "a.so", "aarch64")
    (tmp_path / "text.so").write_text("not elf")
    assert elf_machine(tmp_path / "a.so") == "aarch64"
    assert elf_machine(tmp_path / "text.so") is None


def test_foreign_architecture_and_abi(tmp_path: Path) -> None:
    fake_elf(tmp_path / "pydantic_core/_pydantic_core.cpython-313-aarch64-linux-gnu.so", "aarch64")
    fake_elf(tmp_path / "wrapt/_wrappers.cpython-312-x86_64-linux-gnu.so", "x86_64")
    fake_elf(tmp_path / "fine/_ok.cpython-313-x86_64-linux-gnu.so", "x86_64")
    fake_elf(tmp_path / "cryptography/_rust.abi3.so", "x86_64")
    fake_elf(tmp_path / "lib/libffi.so.8", "aarch64")
    found = foreign_native_modules(tmp_path, host_machine="x86_64", python_tag="cpython-313")
    assert sorted(found) == [
        "lib/libffi.so.8: aarch64",
        "pydantic_core/_pydantic_core.cpython-313-aarch64-linux-gnu.so: aarch64",
        "wrapt/_wrappers.cpython-312-x86_64-linux-gnu.so: cpython-312-x86_64-linux-gnu",
    ]


def test_pure_python_bundle_is_fine(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("def handler(e, c): return 1\n")
    assert foreign_native_modules(tmp_path, host_machine="aarch64") == []
