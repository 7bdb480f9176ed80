"""Acknowledging cdk-nag findings (cdk-nag 3 uses CDK's `Validations`): each with its reason.

>>> acknowledge(role, "AwsSolutions-IAM5", "Resource::arn:...:dmcp-reply-*", "why this is fine")
"""

from __future__ import annotations

from aws_cdk import Acknowledgment, Stack, Token, Validations
from constructs import IConstruct


def acknowledge(scope: IConstruct, rule: str, finding: str | None, reason: str) -> None:
    """Acknowledge `rule` (one `finding` of it, when the rule reports several) on `scope` and below."""
    rule_id = f"{rule}[{finding}]" if finding else rule
    Validations.of(scope).acknowledge(Acknowledgment(id=rule_id, reason=reason))


def nag_arn(scope: IConstruct, queue_name_pattern: str) -> str:
    """How cdk-nag spells an SQS ARN built by `Stack.format_arn` in a finding id
    (pseudo parameters as `<AWS::Region>`, or the literal value when the stack's env sets it)."""
    stack = Stack.of(scope)

    def part(value: str, pseudo: str) -> str:
        return f"<AWS::{pseudo}>" if Token.is_unresolved(value) else value

    region, account = part(stack.region, "Region"), part(stack.account, "AccountId")
    return f"arn:<AWS::Partition>:sqs:{region}:{account}:{queue_name_pattern}"
