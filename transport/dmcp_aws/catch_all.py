"""The catch-all worker: answers requests for servers nobody serves, so none is dropped.

SNS drops a message that no subscription's filter policy matches; the deployment subscribes
this worker with `anything-but` the served names, and it replies with a JSON-RPC error.
"""

from __future__ import annotations

from collections.abc import Mapping

from mcp.server.lowlevel.server import Server
from mcp_types import METHOD_NOT_FOUND, ErrorData, JSONRPCError, JSONRPCMessage, JSONRPCRequest

from dmcp_aws.idempotency import Claim
from dmcp_aws.lambda_handler import LambdaHandler
from dmcp_aws.request_context import QueueRequest
from dmcp_aws.wire import Attr
from dmcp_aws.worker import ReplyChannel, Worker, _LoopResources


class CatchAllWorker(Worker):
    """A worker whose every answer is "no such server"."""

    async def _serve(
        self,
        resources: _LoopResources,
        channel: ReplyChannel,
        request: JSONRPCRequest,
        attributes: Mapping[str, str],
        context: QueueRequest,
        budget_ms: int,
        claim: Claim | None,
    ) -> JSONRPCMessage | None:
        target = attributes.get(Attr.SERVER)
        message = (
            f"no server named {target!r} is deployed"
            if target
            else "the request names no server (mcp.server)"
        )
        error = ErrorData(code=METHOD_NOT_FOUND, message=message, data={"server": target})
        return JSONRPCError(jsonrpc="2.0", id=request.id, error=error)


handler = LambdaHandler(Server("unrouted"), worker_class=CatchAllWorker)
"""The catch-all's Lambda entry point."""
