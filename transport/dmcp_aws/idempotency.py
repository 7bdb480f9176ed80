"""Execute each request once: a ledger of (`dmcp.conn`, JSON-RPC id) in DynamoDB.

Delivery is at least once (SNS and SQS may duplicate, a crashed batch is redelivered). The
ledger uses aws-lambda-powertools' DynamoDB idempotency persistence layer (conditional writes,
expiry, in-progress expiry) so that a duplicate of a finished request gets the stored answer
again instead of running twice:

    >>> ledger = RequestLedger("dmcp-idempotency", function_name="example")
    >>> stored = await ledger.begin(key, remaining_ms=25_000)   # None: go ahead and serve
    >>> await ledger.complete(key, reply_dict)
"""

from __future__ import annotations

from typing import Any, Final

import anyio
from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer, IdempotencyConfig
from aws_lambda_powertools.utilities.idempotency.exceptions import IdempotencyItemAlreadyExistsError
from aws_lambda_powertools.utilities.idempotency.persistence.datarecord import STATUS_CONSTANTS

DEFAULT_EXPIRY_S: Final = 3600
"""How long a finished request's answer is kept to answer duplicates."""


class RequestInProgress(Exception):
    """Another worker is serving the same request right now; retry after the visibility timeout."""

    reason = "request-in-progress"


class RequestLedger:
    """Which requests have started and finished, and their answers."""

    def __init__(
        self, table_name: str, *, function_name: str, expires_after_s: int = DEFAULT_EXPIRY_S
    ) -> None:
        self.store = DynamoDBPersistenceLayer(table_name=table_name)
        config = IdempotencyConfig(expires_after_seconds=expires_after_s, raise_on_no_idempotency_key=True)
        self.store.configure(config, key_prefix=f"dmcp#{function_name}")

    async def begin(self, key: dict[str, Any], remaining_ms: int) -> dict[str, Any] | None:
        """Claim a request: None to serve it, the stored answer if it was served already.

        `remaining_ms` bounds the claim: if this worker dies, the request may be served again
        once that time has passed. Raises `RequestInProgress` while another worker holds it.
        """
        try:
            await anyio.to_thread.run_sync(self.store.save_inprogress, key, remaining_ms)
            return None
        except IdempotencyItemAlreadyExistsError as exists:
            record = exists.old_data_record or await anyio.to_thread.run_sync(self.store.get_record, key)
        if record is not None and record.status == STATUS_CONSTANTS["COMPLETED"]:
            return record.response_json_as_dict()
        raise RequestInProgress(f"request {key.get('id')!r} of connection {key.get('conn')} is being served")

    async def complete(self, key: dict[str, Any], answer: dict[str, Any]) -> None:
        """Record the answer of a served request."""
        await anyio.to_thread.run_sync(self.store.save_success, key, answer)
