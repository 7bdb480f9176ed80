"""Execute each request once: a ledger of (`dmcp.conn`, JSON-RPC id) in DynamoDB.

Delivery is at least once (SNS and SQS may duplicate, a crashed batch is redelivered). The
ledger uses aws-lambda-powertools' DynamoDB idempotency persistence layer (conditional writes,
expiry, in-progress expiry, payload validation) so that a duplicate of a finished request gets
the stored answer again instead of running twice:

    >>> ledger = RequestLedger("dmcp-idempotency", function_name="example")
    >>> stored = await ledger.begin(claim, remaining_ms=25_000)   # None: go ahead and serve
    >>> await ledger.complete(claim, reply_dict)                   # or ledger.abandon(claim, exc)

The key is (connection, id); the claim also carries a fingerprint of what was asked (method,
params, reply address), so a request that reuses an id for something else is refused instead
of being sent another request's answer.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Final

import anyio
from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer, IdempotencyConfig
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyItemAlreadyExistsError,
    IdempotencyValidationError,
)
from aws_lambda_powertools.utilities.idempotency.persistence.datarecord import STATUS_CONSTANTS
from mcp_types import RequestId

DEFAULT_EXPIRY_S: Final = 3600
"""How long a finished request's answer is kept to answer duplicates."""


class RequestInProgress(Exception):
    """Another delivery of the same request holds the claim: it is being served right now."""

    reason = "request-in-progress"


class RequestIdReused(Exception):
    """The connection already used this id for a different request."""

    reason = "request-id-reused"


@dataclass(frozen=True)
class Claim:
    """What the ledger records about one request."""

    conn: str
    id: RequestId
    fingerprint: str

    @classmethod
    def of(cls, conn: str, request_id: RequestId, method: str, params: Any, reply_to: str) -> Claim:
        asked = json.dumps([method, params, reply_to], sort_keys=True, separators=(",", ":"), default=str)
        return cls(conn, request_id, hashlib.sha256(asked.encode()).hexdigest())

    def data(self) -> dict[str, Any]:
        return {"conn": self.conn, "id": self.id, "fingerprint": self.fingerprint}


class RequestLedger:
    """Which requests have started and finished, and their answers."""

    def __init__(
        self, table_name: str, *, function_name: str, expires_after_s: int = DEFAULT_EXPIRY_S
    ) -> None:
        self.store = DynamoDBPersistenceLayer(table_name=table_name)
        config = IdempotencyConfig(
            event_key_jmespath="[conn, id]",
            payload_validation_jmespath="fingerprint",
            expires_after_seconds=expires_after_s,
            raise_on_no_idempotency_key=True,
        )
        self.store.configure(config, key_prefix=f"dmcp#{function_name}")

    async def begin(self, claim: Claim, remaining_ms: int) -> dict[str, Any] | None:
        """Claim a request: None to serve it, the stored answer if it was served already.

        `remaining_ms` bounds the claim: if this worker dies, the request may be served again
        once that time has passed. Raises `RequestInProgress` while another worker holds it and
        `RequestIdReused` if the id was used for a different request.
        """
        data = claim.data()
        try:
            try:
                await anyio.to_thread.run_sync(self.store.save_inprogress, data, remaining_ms)
                return None
            except IdempotencyItemAlreadyExistsError as exists:
                record = exists.old_data_record or await anyio.to_thread.run_sync(self.store.get_record, data)
        except IdempotencyValidationError:
            raise RequestIdReused(f"request id {claim.id!r} was used for a different request") from None
        if record is not None and record.status == STATUS_CONSTANTS["COMPLETED"]:
            return record.response_json_as_dict()
        raise RequestInProgress(f"request {claim.id!r} of connection {claim.conn} is being served")

    async def complete(self, claim: Claim, answer: dict[str, Any]) -> None:
        """Record the answer of a served request."""
        await anyio.to_thread.run_sync(self.store.save_success, claim.data(), answer)

    async def abandon(self, claim: Claim, problem: BaseException) -> None:
        """Release a claim whose request could not be answered, so a redelivery may serve it."""
        reason = problem if isinstance(problem, Exception) else RuntimeError(repr(problem))
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(self.store.delete_record, claim.data(), reason)
