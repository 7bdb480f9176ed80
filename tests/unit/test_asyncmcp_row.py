"""The benchmark's asyncmcp row: the peer's reply lines and the pinned requirements it is built from."""

from __future__ import annotations

from collections import Counter

import pytest
from benchmarks.asyncmcp_row import REQUIREMENTS, PeerUnavailable, Reply, parse_reply, pinned_version


def test_a_reply_carries_the_peers_aws_calls_so_far() -> None:
    line = b'{"id": 7, "aws_calls": {"Publish": 12, "ReceiveMessage": 9}}\n'
    assert parse_reply(line) == Reply(7, Counter(Publish=12, ReceiveMessage=9))


def test_a_failed_call_is_a_reply_with_an_error() -> None:
    reply = parse_reply('{"id": 3, "error": "TimeoutError: "}')
    assert (reply.id, reply.aws_calls, reply.error) == (3, Counter(), "TimeoutError: ")


def test_the_calls_made_between_two_replies_are_their_difference() -> None:
    first = parse_reply('{"id": 1, "aws_calls": {"Publish": 2, "DeleteMessage": 2}}')
    second = parse_reply('{"id": 2, "aws_calls": {"Publish": 4, "DeleteMessage": 4, "ReceiveMessage": 1}}')
    assert second.aws_calls - first.aws_calls == Counter(Publish=2, DeleteMessage=2, ReceiveMessage=1)


def test_the_peer_venv_is_pinned_exactly() -> None:
    text = REQUIREMENTS.read_text()
    assert pinned_version(text) == "0.2.1"
    assert pinned_version(text, "mcp").startswith("1.")
    requirements = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    assert requirements and all("==" in line for line in requirements)


def test_a_requirements_file_without_asyncmcp_leaves_the_row_out() -> None:
    with pytest.raises(PeerUnavailable):
        pinned_version("mcp==1.30.0\n")
