"""cdk-nag's AwsSolutions pack on the app: no unacknowledged finding; every acknowledgement
gives its reason and stands for a finding that really occurs."""

from __future__ import annotations

import re
from typing import Any

import aws_cdk as cdk
import infra.client_queue
import infra.idempotency_ledger
import infra.server_worker
import infra.sweeper
import pytest
from cdk_nag import AwsSolutionsChecks

from tests.infra.conftest import SAMPLE, build_stack

EXPECTED_ACKNOWLEDGEMENTS = {
    "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:sqs:<AWS::Region>:<AWS::AccountId>:acme-reply-*]",
    # each client's own per-connection queues
    *(
        f"AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:sqs:<AWS::Region>:<AWS::AccountId>:acme-reply-conn-{c}_*]"
        for c in ("laptop", "ci", "ops")
    ),
    # the orphan sweeper: every client's per-connection queues (GetQueueAttributes, DeleteQueue)
    "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:sqs:<AWS::Region>:<AWS::AccountId>:acme-reply-conn-*]",
    "AwsSolutions-IAM5[Resource::*]",  # X-Ray writes (workers), sqs:ListQueues (the sweeper)
    "AwsSolutions-L1",
    "AwsSolutions-SQS3",
    "AwsSolutions-DDB3",
}


def _checked_app(env: cdk.Environment | None = None) -> tuple[cdk.App, cdk.Stack]:
    app = cdk.App(context={"aws:cdk:bundling-stacks": []})
    stack = build_stack(SAMPLE, app, env=env)
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    return app, stack


def _acknowledgements(stack: cdk.Stack) -> dict[str, dict[str, str]]:
    found: dict[str, dict[str, str]] = {}
    for construct in stack.node.find_all():
        for entry in construct.node.metadata:
            if entry.type == cdk.Validations.ACKNOWLEDGED_RULES_METADATA_KEY:
                found.setdefault(construct.node.path, {}).update(entry.data)
    return found


@pytest.mark.parametrize(
    "env", [None, cdk.Environment(account="123456789012", region="eu-west-1")], ids=["agnostic", "env"]
)
def test_app_passes_aws_solutions_checks(env: cdk.Environment | None) -> None:
    app, _ = _checked_app(env)
    app.synth()  # raises "ValidationFailed" with the report on any unacknowledged finding


def test_every_acknowledgement_says_why() -> None:
    _, stack = _checked_app()
    found = _acknowledgements(stack)
    rules = {rule.removeprefix("Annotation::") for per_construct in found.values() for rule in per_construct}
    assert rules == EXPECTED_ACKNOWLEDGEMENTS
    for path, per_construct in found.items():
        for rule, reason in per_construct.items():
            assert len(reason) >= 60 and reason[0].isupper(), (path, rule, reason)


def test_every_acknowledgement_is_needed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the acknowledgements, synth fails with exactly the acknowledged findings."""

    def ignore(*_args: Any) -> None:
        return None

    monkeypatch.setattr(infra.server_worker, "acknowledge", ignore)
    monkeypatch.setattr(infra.client_queue, "acknowledge", ignore)
    monkeypatch.setattr(infra.idempotency_ledger, "acknowledge", ignore)
    monkeypatch.setattr(infra.sweeper, "acknowledge", ignore)
    app, _ = _checked_app()
    with pytest.raises(Exception, match="ValidationFailed") as failure:
        app.synth()
    reported = set(re.findall(r"Acknowledge with 'AwsSolutions::([^']+)'", str(failure.value)))
    assert reported == EXPECTED_ACKNOWLEDGEMENTS


def test_the_sweepers_acknowledgements_are_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    """The orphan sweeper's findings (ListQueues on `*`, the connection-queue pattern, the pinned
    runtime) are acknowledged on the sweeper itself, not covered by the workers' acknowledgements."""

    def ignore(*_args: Any) -> None:
        return None

    monkeypatch.setattr(infra.sweeper, "acknowledge", ignore)
    app, _ = _checked_app()
    with pytest.raises(Exception, match="ValidationFailed") as failure:
        app.synth()
    reported = set(re.findall(r"Acknowledge with 'AwsSolutions::([^']+)'", str(failure.value)))
    assert reported == {
        "AwsSolutions-IAM5[Resource::*]",
        "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:sqs:<AWS::Region>:<AWS::AccountId>:acme-reply-conn-*]",
        "AwsSolutions-L1",
    }
