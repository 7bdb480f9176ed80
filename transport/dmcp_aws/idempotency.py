"""Execute each request once: a ledger of requests in DynamoDB, keyed by what cannot be forged.

Delivery is at least once (SNS and SQS may duplicate, a crashed batch is redelivered). The
ledger uses aws-lambda-powertools' DynamoDB idempotency persistence layer (conditional writes,
expiry, in-progress expiry) so that a duplicate of a finished request gets the stored answer
again instead of running twice:

    >>> claim = Claim.of(conn, reply_to, request_digest(body))
    >>> stored = await ledger.begin(claim, remaining_ms=25_000)   # None: go ahead and serve
    >>> await ledger.complete(claim, reply_dict)                   # or ledger.abandon(claim, exc)

The key is a hash of (connection secret, reply queue, SHA-256 of the exact request body). Only
the same request of the same connection instance, answered to the same queue, shares it: a
client that guesses or learns another connection's id cannot claim that connection's keys
(its requests' bodies differ) nor be handed its answers (its reply queue differs), and a new
connection never meets an earlier one's answers (every connection mints a new secret).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import anyio

from dmcp_aws.threaded_aws import in_thread

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer

DEFAULT_EXPIRY_S: Final = 3600
"""How long a finished request's answer is kept to answer duplicates."""
_UNKNOWN_HOLD_MS: Final = 30_000
_COMPLETED: Final = "COMPLETED"
"""powertools' status of a record whose request finished (`STATUS_CONSTANTS["COMPLETED"]`)."""
CANCELLED: Final = {"dmcp": "cancelled"}
"""What the ledger holds for a request its client cancelled: it is not run (again) and, as MCP
asks of a cancelled request, not answered."""


def is_cancelled(stored: dict[str, Any] | None) -> bool:
    """Whether a stored answer is the mark of a cancelled request."""
    return stored == CANCELLED


class RequestInProgress(Exception):
    """Another delivery of the same request holds the claim: it is being served right now."""

    reason = "request-in-progress"

    def __init__(self, message: str, *, remaining_ms: int) -> None:
        super().__init__(message)
        self.remaining_ms = remaining_ms
        """How long the holder's claim lasts: after that the request may be served again."""


@dataclass(frozen=True)
class Claim:
    """One request in the ledger: its key (also the idempotency key tools receive)."""

    key: str

    @classmethod
    def of(cls, conn: str, reply_to: str, digest: str) -> Claim:
        material = "\n".join((conn, reply_to, digest))
        return cls(hashlib.sha256(material.encode("utf-8", "surrogatepass")).hexdigest())

    def data(self) -> dict[str, Any]:
        return {"key": self.key}


class RequestLedger:
    """Which requests have started and finished, and their answers.

    The persistence layer (and powertools' idempotency utility, ~40 ms to import) is built on
    first use: a function whose tools all skip the ledger (`dmcp_aws.run_once`) never pays for it.
    """

    def __init__(
        self, table_name: str, *, function_name: str, expires_after_s: int = DEFAULT_EXPIRY_S
    ) -> None:
        self._table_name = table_name
        self._key_prefix = f"dmcp#{function_name}"
        self._expires_after_s = expires_after_s
        self._store: DynamoDBPersistenceLayer | None = None

    @property
    def store(self) -> DynamoDBPersistenceLayer:
        """powertools' DynamoDB persistence layer for the ledger's table."""
        if self._store is None:
            from aws_lambda_powertools.utilities.idempotency import (
                DynamoDBPersistenceLayer,
                IdempotencyConfig,
            )

            store = DynamoDBPersistenceLayer(table_name=self._table_name)
            config = IdempotencyConfig(
                event_key_jmespath="key",
                expires_after_seconds=self._expires_after_s,
                raise_on_no_idempotency_key=True,
            )
            store.configure(config, key_prefix=self._key_prefix)
            self._store = store
        return self._store

    async def begin(self, claim: Claim, remaining_ms: int) -> dict[str, Any] | None:
        """Claim a request: None to serve it, the stored answer if it was served already.

        `remaining_ms` bounds the claim: if this worker dies, the request may be served again
        once that time has passed. Raises `RequestInProgress` (with the claim's remaining time)
        while another delivery holds it.
        """
        from aws_lambda_powertools.utilities.idempotency.exceptions import IdempotencyItemAlreadyExistsError

        data = claim.data()
        store = self.store
        try:
            await in_thread(store.save_inprogress, data, remaining_ms)
            return None
        except IdempotencyItemAlreadyExistsError as exists:
            record = exists.old_data_record or await in_thread(store.get_record, data)
        if record is not None and record.status == _COMPLETED:
            return record.response_json_as_dict()
        expiry = getattr(record, "in_progress_expiry_timestamp", None)
        left = int(float(expiry) - time.time() * 1000) if expiry else _UNKNOWN_HOLD_MS
        raise RequestInProgress(f"request {claim.key[:12]} is being served", remaining_ms=max(0, left))

    async def complete(self, claim: Claim, answer: dict[str, Any]) -> None:
        """Record the answer of a served request."""
        await in_thread(self.store.save_success, claim.data(), answer)

    async def cancel(self, claim: Claim) -> None:
        """Mark a request cancelled, whether it has not started yet, is running or is done: a
        delivery that has not started will not run, and a running one sees the mark."""
        await in_thread(self.store.save_success, claim.data(), CANCELLED)

    async def was_cancelled(self, claim: Claim) -> bool:
        """Whether the request was marked cancelled (one consistent read)."""
        from aws_lambda_powertools.utilities.idempotency.exceptions import IdempotencyItemNotFoundError

        try:
            record = await in_thread(self.store.get_record, claim.data())
        except IdempotencyItemNotFoundError:
            return False
        return (
            record is not None
            and record.status == _COMPLETED
            and is_cancelled(record.response_json_as_dict())
        )

    async def abandon(self, claim: Claim, problem: BaseException) -> None:
        """Release a claim whose request could not be answered, so a redelivery may serve it."""
        reason = problem if isinstance(problem, Exception) else RuntimeError(repr(problem))
        with anyio.CancelScope(shield=True):
            await in_thread(self.store.delete_record, claim.data(), reason)
