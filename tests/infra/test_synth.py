"""`npx cdk synth` with the pinned CLI (package.json), offline: no AWS credentials, no lookups.

Needs `npm ci` to have run. The asset is really bundled (local bundling, cached in .build/).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.infra.conftest import ROOT

CLI = ROOT / "node_modules" / ".bin" / "cdk"


@pytest.fixture(scope="module")
def assembly(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not CLI.exists():
        pytest.fail("the pinned CDK CLI is missing: run `npm ci` in the repository root")
    out = tmp_path_factory.mktemp("cdk.out")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CDK_"))}
    env |= {
        "PATH": os.pathsep.join(
            [str(Path(sys.executable).parent), env.get("PATH", "")]
        ),  # python3 = this venv
        "JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION": "1",
        "CDK_DISABLE_VERSION_CHECK": "1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }
    command = [
        "npx",
        "--no-install",
        "cdk",
        "synth",
        "--no-lookups",
        "--no-notices",
        "--quiet",
        "-o",
        str(out),
    ]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    return out


def test_cli_is_pinned() -> None:
    package = json.loads((ROOT / "package.json").read_text())
    version = package["devDependencies"]["aws-cdk"]
    assert version.startswith("2.") and version.replace(".", "").isdigit()
    lock = json.loads((ROOT / "package-lock.json").read_text())
    assert lock["packages"]["node_modules/aws-cdk"]["version"] == version


def test_synth_writes_the_stack_and_its_asset(assembly: Path) -> None:
    template = json.loads((assembly / "dmcp.template.json").read_text())
    functions = [r for r in template["Resources"].values() if r["Type"] == "AWS::Lambda::Function"]
    assert {f["Properties"]["Handler"] for f in functions} == {
        "functions.example.handler.handler", "dmcp_aws.catch_all.handler", "dmcp_aws.sweep.handler",
    }  # fmt: skip
    (asset,) = [p for p in assembly.glob("asset.*") if p.is_dir()]
    assert (asset / "functions" / "example" / "handler.py").is_file()
    assert (asset / "dmcp_aws" / "worker.py").is_file()
    assert (asset / "dmcp_aws" / "sweep.py").is_file()  # the orphan sweeper runs from the same asset
    for absent in (
        "dmcp_aws/cli",
        "dmcp_aws/local",
        "dmcp_aws/deployed.py",
        "moto",
        "typer",
        "boto3/data/ec2",
    ):
        assert not (asset / absent).exists(), absent
    for present in ("mcp", "aioboto3", "aiobotocore", "botocore", "pydantic_core", "aws_lambda_powertools"):
        assert (asset / present).is_dir(), present
    assert any((asset / "pydantic_core").glob("*aarch64*.so")), "pydantic_core is not built for arm64"
    size = sum(p.stat().st_size for p in asset.rglob("*") if p.is_file())
    assert size < 250 * 2**20, f"Lambda's unzipped limit is 250 MiB; the asset is {size / 2**20:.0f} MiB"


def test_synth_ran_cdk_nag(assembly: Path) -> None:
    manifest = json.loads((assembly / "manifest.json").read_text())
    assert "dmcp" in manifest["artifacts"]
    reports = list(assembly.glob("*validation-report*.json"))
    if reports:  # cdk-nag's report, when the plugin writes one on success
        assert "failure" not in reports[0].read_text()
    assert shutil.which("npx")
