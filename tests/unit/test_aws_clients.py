"""Connections share their AWS clients (`dmcp_aws.aws_clients`, issue 12): one per loop, session,
service, endpoint and region, at most `CONNECTIONS_PER_CLIENT` users each, closed when the loop
shuts down or on `close_shared_clients()`. Making a client makes no AWS call, so no server is needed."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import AsyncExitStack
from typing import Any

import aioboto3
import pytest
from aiobotocore.client import AioBaseClient

from dmcp_aws.aws_clients import (
    CONNECTIONS_PER_CLIENT,
    close_shared_clients,
    shared_client,
    shared_client_count,
)

ENDPOINT = "http://127.0.0.1:9"


def session() -> aioboto3.Session:
    return aioboto3.Session(aws_access_key_id="k", aws_secret_access_key="s", region_name="us-east-1")


@pytest.fixture
def closed(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """The clients closed meanwhile."""
    seen: list[Any] = []
    original = AioBaseClient.__aexit__

    async def recorded(client: Any, *exc: Any) -> Any:
        seen.append(client)
        return await original(client, *exc)

    monkeypatch.setattr(AioBaseClient, "__aexit__", recorded)
    yield seen


def test_connections_after_one_another_share_one_client_closed_when_the_loop_ends(closed: list[Any]) -> None:
    one = session()

    async def main() -> list[Any]:
        used = []
        for _ in range(3):
            async with shared_client(one, "sqs", ENDPOINT, None) as sqs:
                used.append(sqs)
        assert shared_client_count() == 1 and not closed  # kept for the next connection
        return used

    used = asyncio.run(main())
    assert used[0] is used[1] is used[2]
    assert closed == [used[0]]  # asyncio.run finalised the loop's clients


def test_each_loop_has_its_own_clients(closed: list[Any]) -> None:
    one = session()

    async def main() -> Any:
        async with shared_client(one, "sqs", ENDPOINT, None) as sqs:
            return sqs

    first, second = asyncio.run(main()), asyncio.run(main())
    assert first is not second
    assert closed == [first, second]


def test_a_client_serves_a_bounded_number_of_connections_at_once(closed: list[Any]) -> None:
    one = session()

    async def main() -> list[Any]:
        async with AsyncExitStack() as stack:
            return [
                await stack.enter_async_context(shared_client(one, "sqs", ENDPOINT, None))
                for _ in range(CONNECTIONS_PER_CLIENT + 1)
            ]

    used = asyncio.run(main())
    assert len({id(c) for c in used[:-1]}) == 1 and used[-1] is not used[0]
    assert len(closed) == 2


def test_what_differs_gets_another_client() -> None:
    one, other = session(), session()

    async def main() -> None:
        async with AsyncExitStack() as stack:
            clients = [
                await stack.enter_async_context(shared_client(s, service, endpoint, region))
                for s, service, endpoint, region in [
                    (one, "sqs", ENDPOINT, None),
                    (other, "sqs", ENDPOINT, None),  # other credentials
                    (one, "sns", ENDPOINT, None),
                    (one, "sqs", "http://127.0.0.1:10", None),
                    (one, "sqs", ENDPOINT, "eu-west-1"),
                    (one, "sqs", ENDPOINT, None),
                ]
            ]
        assert len({id(c) for c in clients}) == 5 and clients[0] is clients[-1]

    asyncio.run(main())


def test_close_shared_clients_closes_them_now(closed: list[Any]) -> None:
    one = session()

    async def main() -> None:
        async with shared_client(one, "sqs", ENDPOINT, None) as first:
            pass
        await close_shared_clients()
        assert closed == [first] and shared_client_count() == 0
        async with shared_client(one, "sqs", ENDPOINT, None) as second:
            assert second is not first

    asyncio.run(main())
    assert len(closed) == 2
