"""A second deployment in the session's moto server, served by `dmcp worker` processes: for tests
that need their own server settings (timeouts, delivery counts, handlers) next to the shared stack."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from dmcp_aws.deployment import Deployment, topology
from dmcp_aws.local.provision import Provisioned, provision
from dmcp_aws.local.stack import RunningStack

ROOT = Path(__file__).resolve().parents[2]


async def provision_deployment(stack: RunningStack, description: dict[str, Any]) -> Provisioned:
    """Create `description`'s topology on the stack's endpoint."""
    session = stack.session()
    async with (
        session.client("sqs", endpoint_url=stack.endpoint_url) as sqs,
        session.client("sns", endpoint_url=stack.endpoint_url) as sns,
        session.client("dynamodb", endpoint_url=stack.endpoint_url) as dynamodb,
    ):
        return await provision(topology(Deployment.parse(description)), sqs, sns, dynamodb)


def start_worker(
    stack: RunningStack, description: dict[str, Any], directory: Path, server: str
) -> subprocess.Popen[str]:
    """`dmcp worker --server SERVER` for `description` (written into `directory`, which is also
    the code root), with a clean environment pointing at the stack."""
    path = directory / f"{description.get('name', 'dmcp')}.json"
    path.write_text(json.dumps(description))
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "DMCP_", "LAMBDA_"))}
    environment |= {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": stack.region,
        "PYTHONPATH": str(ROOT),
    }
    command = [sys.executable, "-m", "dmcp_aws", "worker", "--server", server, "--deployment", str(path)]
    return subprocess.Popen(
        [*command, "--endpoint-url", stack.endpoint_url],
        cwd=directory,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
