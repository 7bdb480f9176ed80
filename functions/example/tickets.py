"""The example's durable side effect: numbered tickets, each issued once per request.

Tickets live in DynamoDB (the deployment's request-ledger table, under keys of their own, so the
example needs no extra infrastructure; a real server would use its own table). Each request's
ticket is stored under the request's idempotency key, so a request that runs again after a
worker died between issuing and answering gets the same ticket back: exactly once end to end.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any, Final

import boto3
from botocore.exceptions import ClientError

COUNTER_KEY: Final = "example#tickets"
TICKET_KEY: Final = "example#ticket#"
KEEP_S: Final = 24 * 3600

_clients: dict[str | None, Any] = {}
"""One client per AWS endpoint (local stacks that come and go in one process have their own)."""
_client_lock = threading.Lock()


class NoTicketTable(RuntimeError):
    """The deployment has no ledger table (`"idempotency": false`)."""


def _dynamodb() -> Any:
    endpoint = os.environ.get("AWS_ENDPOINT_URL")
    with _client_lock:
        if endpoint not in _clients:
            _clients[endpoint] = boto3.client("dynamodb")
        return _clients[endpoint]


def _table() -> str:
    table = os.environ.get("DMCP_IDEMPOTENCY_TABLE")
    if not table:
        raise NoTicketTable("tickets need the deployment's ledger table, and idempotency is off")
    return table


_issuing = threading.Lock()
"""DynamoDB's ADD is atomic; moto's is not under concurrent calls (two requests could be handed one
number). One issuer at a time per process keeps the embedded stack's numbers unique too."""


def ticket_for(idempotency_key: str) -> int:
    """The ticket of the request with this key: issued now, or the one issued before."""
    with _issuing:
        return _ticket_for(idempotency_key)


def _ticket_for(idempotency_key: str) -> int:
    table, dynamodb = _table(), _dynamodb()
    key = {"id": {"S": TICKET_KEY + idempotency_key}}
    if existing := dynamodb.get_item(TableName=table, Key=key, ConsistentRead=True).get("Item"):
        return int(existing["ticket"]["N"])
    counter = dynamodb.update_item(
        TableName=table,
        Key={"id": {"S": COUNTER_KEY}},
        UpdateExpression="ADD issued :one",
        ExpressionAttributeValues={":one": {"N": "1"}},
        ReturnValues="UPDATED_NEW",
    )
    ticket = int(counter["Attributes"]["issued"]["N"])
    try:
        dynamodb.put_item(
            TableName=table,
            Item=key | {"ticket": {"N": str(ticket)}, "expiration": {"N": str(int(time.time()) + KEEP_S)}},
            ConditionExpression="attribute_not_exists(id)",
        )
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
            raise
        # Another delivery of the same request issued first: its ticket is the request's.
        stored = dynamodb.get_item(TableName=table, Key=key, ConsistentRead=True)["Item"]
        return int(stored["ticket"]["N"])
    return ticket
