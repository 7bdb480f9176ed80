"""Report the Lambda asset's size and the handler modules' import time (the cold-start cost).

    $ python -m infra.measure            # builds the arm64 asset, and an x86_64 twin to time imports

The asset is built for arm64; this machine may not run arm64 code, so the import time is measured
on a twin built the same way for this machine's architecture (same versions, same pruning), with
the Lambda's Python version, in fresh interpreters (median of several runs).
"""

from __future__ import annotations

import io
import json
import os
import platform
import statistics
import subprocess
import sys
import zipfile
from dataclasses import replace
from pathlib import Path

from dmcp_aws.deployment import Deployment, topology
from infra.bundling import BundleSpec, LambdaBundle, _find_python

_TIMER = (
    "import importlib, time, sys\n"
    "t = time.perf_counter()\n"
    "importlib.import_module(sys.argv[1])\n"
    "print(time.perf_counter() - t)\n"
)


def zipped_size(folder: Path) -> int:
    """Bytes of the asset as the deflated zip CDK uploads."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file() and path.name != ".complete":
                archive.write(path, path.relative_to(folder))
    return buffer.tell()


def import_seconds(asset: Path, module: str, python: str, runs: int = 5) -> float:
    """Median wall time of `import module` in a fresh interpreter whose only code root is `asset`."""
    env = {"PATH": os.environ.get("PATH", ""), "DMCP_REPLY_PREFIX": "dmcp-reply-", "PYTHONPATH": str(asset),
           "AWS_DEFAULT_REGION": "us-east-1", "PYTHONDONTWRITEBYTECODE": "1"}  # fmt: skip
    times = []
    for _ in range(runs):
        done = subprocess.run([python, "-s", "-c", _TIMER, module], env=env, cwd=asset,
                              capture_output=True, text=True, check=True, timeout=120)  # fmt: skip
        times.append(float(done.stdout.strip()))
    return statistics.median(times)


def main(repo_root: Path = Path(".")) -> dict[str, object]:
    root = repo_root.resolve()
    handlers = tuple(sorted({w.handler for w in topology(Deployment.load(root / "dmcp.json")).workers}))
    spec = BundleSpec(repo_root=root, handlers=handlers)
    asset = LambdaBundle(spec).report()
    result: dict[str, object] = {
        "asset": asset.path,
        "unzipped_bytes": asset.size_bytes,
        "zipped_bytes": zipped_size(Path(asset.path)),
        "files": asset.files,
        "distributions": len(asset.kept),
        "pruned": asset.pruned,
    }
    python = _find_python(spec.python_version)
    machine = {"x86_64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}.get(platform.machine())
    if python and machine:
        twin = LambdaBundle(replace(spec, platform=f"manylinux2014_{machine}")).build()
        result["import_seconds"] = {
            handler.rpartition(".")[0]: round(import_seconds(twin, handler.rpartition(".")[0], python), 3)
            for handler in handlers
        }
        result["import_measured_with"] = f"{python} on {machine}"
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("."))
