"""Where the CDK app finds its deployment description: `cdk.json` context `dmcp:deployment`.

$ cdk synth                                   # dmcp.json, as cdk.json says
$ cdk synth -c dmcp:deployment=staging.json   # another description
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from constructs import Node

from dmcp_aws.deployment import Deployment, topology
from infra.bundling import BundleSpec, wheel_platform

SWEEPER_HANDLER: Final = "dmcp_aws.sweep.handler"
"""The orphan sweeper's entry point (`infra.sweeper`), in the same asset as the workers."""

DEPLOYMENT_CONTEXT: Final = "dmcp:deployment"
STACK_NAME_CONTEXT: Final = "dmcp:stack-name"
DEFAULT_FILE: Final = "dmcp.json"


def deployment_path(node: Node, repo_root: Path) -> Path:
    """The deployment file named by the context (relative paths are from the repository root)."""
    path = Path(str(node.try_get_context(DEPLOYMENT_CONTEXT) or DEFAULT_FILE))
    return path if path.is_absolute() else repo_root / path


def load_deployment(node: Node, repo_root: Path) -> Deployment:
    """Load and validate the deployment; raises `DeploymentError` listing every problem."""
    return Deployment.load(deployment_path(node, repo_root))


def stack_name(node: Node, deployment: Deployment) -> str:
    """The stack's name: context `dmcp:stack-name`, else the deployment's name."""
    return str(node.try_get_context(STACK_NAME_CONTEXT) or deployment.name)


def handlers(deployment: Deployment) -> tuple[str, ...]:
    """Every handler the deployment's functions run (the asset's entry points): the workers' and
    the orphan sweeper's."""
    return tuple(sorted({w.handler for w in topology(deployment).workers} | {SWEEPER_HANDLER}))


def bundle_specs(deployment: Deployment, repo_root: Path) -> tuple[BundleSpec, dict[str, BundleSpec]]:
    """The code assets of a deployment: the kit's (the catch-all, the sweeper and every server with
    no `requirements`), and one per server that has requirements (the kit, its handler and its
    requirements), so that one server's dependencies neither weigh on nor conflict with another's."""
    platform = wheel_platform(deployment)
    own = {s.name: s for s in deployment.servers if s.requirements}
    shared = tuple(
        sorted({w.handler for w in topology(deployment).workers if w.server not in own} | {SWEEPER_HANDLER})
    )
    return BundleSpec(repo_root=repo_root, handlers=shared, platform=platform), {
        name: BundleSpec(
            repo_root=repo_root,
            handlers=(s.entry_point,),
            platform=platform,
            requirements=tuple(s.requirements),
        )
        for name, s in own.items()
    }
