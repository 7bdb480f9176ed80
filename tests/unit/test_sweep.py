"""The orphan sweeper's decision (pure) and its settings: which per-connection queue is orphaned."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from dmcp_aws.sweep import (
    DEFAULT_IDLE_S,
    is_orphaned,
    last_sign_of_life,
    queue_name,
    settings_from_env,
    sweep_orphaned_queues,
)

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]
NOW = 1_800_000_000.0
HOUR = 3600


def attributes(created_ago: float | None, modified_ago: float | None, in_flight: int = 0) -> dict[str, str]:
    found = {"ApproximateNumberOfMessagesNotVisible": str(in_flight)}
    if created_ago is not None:
        found["CreatedTimestamp"] = str(int(NOW - created_ago))
    if modified_ago is not None:
        found["LastModifiedTimestamp"] = str(int(NOW - modified_ago))
    return found


@pytest.mark.parametrize(
    ("created_ago", "modified_ago", "orphaned"),
    [
        (0, 0, False),  # just created
        (10 * HOUR, 5 * 60, False),  # old, but its client touched it five minutes ago
        (10 * HOUR, HOUR - 1, False),  # one second short of the limit
        (10 * HOUR, HOUR, True),  # exactly the limit: idle for it
        (10 * HOUR, 2 * HOUR, True),  # its client stopped touching it an hour ago
        (2 * HOUR, None, True),  # never touched since it was created, two hours ago
        (5 * 60, None, False),  # created five minutes ago, not yet touched
        (None, 2 * HOUR, True),  # only the last change is known
    ],
)
def test_idle_queues_are_orphaned(
    created_ago: float | None, modified_ago: float | None, orphaned: bool
) -> None:
    assert is_orphaned(attributes(created_ago, modified_ago), now=NOW, idle_s=HOUR) is orphaned


def test_the_latest_sign_of_life_counts() -> None:
    # a LastModifiedTimestamp older than CreatedTimestamp (clock skew, odd endpoints) does not age it
    found = {"CreatedTimestamp": str(int(NOW - 60)), "LastModifiedTimestamp": str(int(NOW - 10 * HOUR))}
    assert last_sign_of_life(found) == NOW - 60
    assert not is_orphaned(found, now=NOW, idle_s=HOUR)


@pytest.mark.parametrize(
    "found",
    [
        {},
        {"CreatedTimestamp": "", "LastModifiedTimestamp": "yesterday"},
        {"ApproximateNumberOfMessagesNotVisible": "0"},
    ],
    ids=["nothing", "unreadable", "no-timestamps"],
)
def test_a_queue_whose_age_is_unknown_is_kept(found: dict[str, str]) -> None:
    assert last_sign_of_life(found) is None
    assert not is_orphaned(found, now=NOW, idle_s=0)


def test_a_queue_being_read_is_kept() -> None:
    """Messages in flight mean a reader received them within their visibility timeout."""
    assert not is_orphaned(attributes(10 * HOUR, 10 * HOUR, in_flight=1), now=NOW, idle_s=HOUR)
    assert is_orphaned(attributes(10 * HOUR, 10 * HOUR, in_flight=0), now=NOW, idle_s=HOUR)


def test_idle_zero_takes_every_queue_of_known_age() -> None:
    assert is_orphaned(attributes(0, 0), now=NOW, idle_s=0)


def test_negative_idle_is_refused() -> None:
    with pytest.raises(ValueError, match="idle_s"):
        is_orphaned(attributes(0, 0), now=NOW, idle_s=-1)


async def test_an_empty_prefix_is_refused_before_any_call() -> None:
    """An empty prefix would cover every queue of the account: refused, nothing is listed."""
    with pytest.raises(ValueError, match="empty connection prefix"):
        await sweep_orphaned_queues(None, "", HOUR)
    with pytest.raises(ValueError, match="idle_s"):
        await sweep_orphaned_queues(None, "dmcp-reply-conn-", -5)


def test_queue_name_from_url() -> None:
    url = "https://sqs.eu-west-1.amazonaws.com/123456789012/dmcp-reply-conn-laptop_0123456789abcdef"
    assert queue_name(url) == "dmcp-reply-conn-laptop_0123456789abcdef"


def test_settings_from_the_environment() -> None:
    assert settings_from_env({"DMCP_CONNECTION_PREFIX": "acme-reply-conn-"}) == (
        "acme-reply-conn-",
        DEFAULT_IDLE_S,
    )
    env = {"DMCP_CONNECTION_PREFIX": "acme-reply-conn-", "DMCP_ORPHAN_QUEUE_IDLE_S": "900"}
    assert settings_from_env(env) == ("acme-reply-conn-", 900)
    with pytest.raises(RuntimeError, match="DMCP_CONNECTION_PREFIX is not set"):
        settings_from_env({"DMCP_ORPHAN_QUEUE_IDLE_S": "900"})
    with pytest.raises(RuntimeError, match="whole number"):
        settings_from_env({"DMCP_CONNECTION_PREFIX": "p-", "DMCP_ORPHAN_QUEUE_IDLE_S": "soon"})
    with pytest.raises(RuntimeError, match=">= 0"):
        settings_from_env({"DMCP_CONNECTION_PREFIX": "p-", "DMCP_ORPHAN_QUEUE_IDLE_S": "-1"})


def test_the_lambda_module_imports_nothing_the_function_does_not_need() -> None:
    """What the sweeper function imports at a cold start: no moto, CLI or CDK."""
    code = (
        "import sys, dmcp_aws.sweep; "
        "print(sorted(m for m in ('moto', 'typer', 'rich', 'aws_cdk', 'jsii') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]"
