"""Server-to-client requests over the queue: the handshake era's back channel.

A handshake-era (2025-11-25) server may ask its client something in the middle of a call:
`sampling/createMessage`, `elicitation/create`, `roots/list`, `ping`. Over a held connection
the answer comes back on it. Over the queue:

1. the worker running the call opens an *answer slot* in the ledger table, keyed by a hash of
   the connection's secret, the call's digest and a fresh random id, and sends the request (with
   that id) to the client's reply queue, tagged with the call's digest;
2. the client transport hands it to its session while that call is pending, and sends the
   session's answer back like a request: to the server, tagged with the same digest;
3. whichever worker of the server receives the answer writes it into the slot, only if the
   slot exists (so nobody can plant answers for requests never asked);
4. the waiting worker reads the slot until the answer is there, within the call's time.

    >>> slots = AnswerSlots(dynamodb, "dmcp-idempotency")
    >>> key = answer_key(conn, digest, wire_id)
    >>> await slots.open(key, expires_at_s)            # then send the request to the client
    >>> answer = await slots.wait(key)                 # the JSON-RPC response or error, as a dict
    >>> await slots.deliver(key, body)                 # on the worker that received the answer

DynamoDB, not a queue, carries the last hop: the waiting worker is busy inside its invocation,
so the answer reaches another worker, which cannot hand it over in memory. docs/protocol.md
("Server-to-client requests") weighs the alternatives.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from typing import Any, Final

import anyio
from botocore.exceptions import ClientError

ANSWER_KEY_PREFIX: Final = "dmcp-answer#"
"""Ledger-table keys of answer slots (the request ledger's own keys start with `dmcp#`)."""
SERVER_REQUEST_ID_PREFIX: Final = "dmcp-s-"
"""Ids of server-to-client requests sent over the queue: a prefix and 128 random bits."""
SLOT_LIFETIME_S: Final = 3600
"""How long an answer slot stays in the table (DynamoDB's TTL removes it after that)."""
FIRST_POLL_S: Final = 0.05
MAX_POLL_S: Final = 0.25
"""The slot is read after 50 ms, then at doubling intervals up to every 250 ms."""


def new_server_request_id() -> str:
    """A fresh, unguessable id for one server-to-client request."""
    return SERVER_REQUEST_ID_PREFIX + secrets.token_hex(16)


def answer_key(conn: str, digest: str, server_request_id: str) -> str:
    """The slot key of one server-to-client request: only its connection can name it."""
    material = "\n".join((conn, digest, server_request_id)).encode("utf-8", "surrogatepass")
    return ANSWER_KEY_PREFIX + hashlib.sha256(material).hexdigest()


class AnswerSlots:
    """Answer slots in the ledger table, over an async DynamoDB client (see `dmcp_aws.threaded_aws`)."""

    def __init__(self, dynamodb: Any, table: str) -> None:
        self.dynamodb = dynamodb
        self.table = table

    async def open(self, key: str, expires_at_s: float) -> None:
        """Create the empty slot a request's answer will be written into."""
        await self.dynamodb.put_item(
            TableName=self.table,
            Item={"id": {"S": key}, "expiration": {"N": str(int(expires_at_s) + SLOT_LIFETIME_S)}},
        )

    async def wait(self, key: str) -> dict[str, Any]:
        """The answer written into the slot (a JSON-RPC response or error as a dict); waits for
        ever, so callers bound it (the worker bounds the whole call by its deadline)."""
        pause = FIRST_POLL_S
        while True:
            await anyio.sleep(pause)
            item = await self.dynamodb.get_item(
                TableName=self.table, Key={"id": {"S": key}}, ConsistentRead=True
            )
            answer = item.get("Item", {}).get("answer", {}).get("S")
            if answer is not None:
                return dict(json.loads(answer))
            pause = min(MAX_POLL_S, pause * 2)

    async def deliver(self, key: str, answer: str) -> bool:
        """Write an answer into its slot; False when no such slot exists (nobody asked, or it
        expired). A second delivery of the same answer leaves the first in place."""
        try:
            await self.dynamodb.update_item(
                TableName=self.table,
                Key={"id": {"S": key}},
                UpdateExpression="SET answer = if_not_exists(answer, :answer), answered_at = :now",
                ConditionExpression="attribute_exists(id)",
                ExpressionAttributeValues={":answer": {"S": answer}, ":now": {"N": str(int(time.time()))}},
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise
        return True
