"""Build the `dmcp_localstack_host` wheel: the `plugin/` folder plus its LocalStack entry point.

    >>> wheel = build_plugin_wheel(Path("/tmp/out"))
    >>> wheel.name
    'dmcp_localstack_host-0.1.0+3f2a9c1b0d4e-py3-none-any.whl'

A wheel is a zip with a `.dist-info` folder, so no build backend (and no download) is needed;
`pip install` of it registers the entry point through which LocalStack finds the executor.
The local version label is a hash of the sources, so a changed executor reinstalls.
"""

from __future__ import annotations

import base64
import hashlib
import zipfile
from pathlib import Path

PLUGIN_DIR = Path(__file__).with_name("plugin")
DIST = "dmcp_localstack_host"
ENTRY_POINT_GROUP = "localstack.lambda.runtime_executor"
EXECUTOR_NAME = "dmcp-host"


def plugin_sources() -> list[Path]:
    """The files that go into the wheel, in a stable order."""
    return sorted(PLUGIN_DIR.glob("*.py"))


def plugin_hash() -> str:
    """A short hash of the plugin's sources."""
    digest = hashlib.sha256()
    for path in plugin_sources():
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def build_plugin_wheel(out_dir: Path) -> Path:
    """Write the wheel into `out_dir` and return its path."""
    version = f"0.1.0+{plugin_hash()}"
    info = f"{DIST}-{version}.dist-info"
    files: dict[str, bytes] = {f"{DIST}/{p.name}": p.read_bytes() for p in plugin_sources()}
    files[f"{info}/METADATA"] = (
        f"Metadata-Version: 2.1\nName: {DIST}\nVersion: {version}\n"
        "Summary: dMCP host-mode Lambda executor for LocalStack (no Docker)\n"
    ).encode()
    files[f"{info}/WHEEL"] = (
        b"Wheel-Version: 1.0\nGenerator: dmcp-aws\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    )
    files[f"{info}/entry_points.txt"] = (
        f"[{ENTRY_POINT_GROUP}]\n{EXECUTOR_NAME} = {DIST}.executor:HostExecutorPlugin\n"
    ).encode()
    record = [_record_line(name, data) for name, data in files.items()] + [f"{info}/RECORD,,"]
    files[f"{info}/RECORD"] = ("\n".join(record) + "\n").encode()
    out_dir.mkdir(parents=True, exist_ok=True)
    wheel = out_dir / f"{DIST}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return wheel
