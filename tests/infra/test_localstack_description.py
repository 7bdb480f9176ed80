"""The LocalStack deployment description switches parts by configuration, not by editing the app."""

from __future__ import annotations

import platform

from aws_cdk.assertions import Template

from dmcp_aws.deployment import Deployment

from .conftest import ROOT, SAMPLE, build_stack


def test_localstack_description_has_no_ledger_and_runs_on_this_machine() -> None:
    deployment = Deployment.load(ROOT / "localstack" / "dmcp.localstack.json")
    template = Template.from_stack(build_stack(deployment))
    template.resource_count_is("AWS::DynamoDB::Table", 0)
    expected = "arm64" if platform.machine().lower() in ("arm64", "aarch64") else "x86_64"
    functions = template.find_resources("AWS::Lambda::Function")
    architectures = {
        tuple(f["Properties"]["Architectures"]) for f in functions.values() if "Handler" in f["Properties"]
    }
    assert architectures == {(expected,)}
    for function in functions.values():
        assert "DMCP_IDEMPOTENCY_TABLE" not in function["Properties"].get("Environment", {}).get(
            "Variables", {}
        )


def test_default_description_deploys_arm64_with_a_ledger() -> None:
    assert SAMPLE.lambda_architecture == "arm64"
    template = Template.from_stack(build_stack(SAMPLE.model_copy(update={"name": "arm"})))
    template.resource_count_is("AWS::DynamoDB::Table", 2)  # the ledger and the task store
    functions = template.find_resources("AWS::Lambda::Function")
    assert {
        tuple(f["Properties"].get("Architectures", ["?"]))
        for f in functions.values()
        if "Handler" in f["Properties"]
    } == {("arm64",)}
