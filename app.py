#!/usr/bin/env python3
"""The CDK app: `cdk synth`, `cdk diff`, `cdk deploy` from the repository root.

The deployment description is the file `cdk.json` names in context `dmcp:deployment`
(`dmcp.json`); cdk-nag's AwsSolutions pack checks the app at every synth.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path[:0] = [str(ROOT), str(ROOT / "transport")]  # a fresh clone works before `pip install -e .`

import aws_cdk as cdk  # noqa: E402
from cdk_nag import AwsSolutionsChecks  # noqa: E402
from infra.bundling import LambdaBundle, lambda_code  # noqa: E402
from infra.config import bundle_specs, load_deployment, stack_name  # noqa: E402
from infra.stack import DmcpStack, DmcpStackProps  # noqa: E402

from dmcp_aws.deployment import DeploymentError  # noqa: E402


def main() -> None:
    app = cdk.App()
    try:
        deployment = load_deployment(app.node, ROOT)
    except DeploymentError as exc:
        sys.exit(f"error: {exc}")
    shared, own = bundle_specs(deployment, ROOT)  # the kit's asset, and one per server with requirements
    code = lambda_code(LambdaBundle(shared))
    server_code = {name: lambda_code(LambdaBundle(spec)) for name, spec in own.items()}
    env = cdk.Environment(
        account=os.environ.get("CDK_DEFAULT_ACCOUNT"), region=os.environ.get("CDK_DEFAULT_REGION")
    )
    DmcpStack(
        app,
        stack_name(app.node, deployment),
        props=DmcpStackProps(deployment=deployment, code=code, server_code=server_code),
        env=env,
    )
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    app.synth()


if __name__ == "__main__":
    main()
