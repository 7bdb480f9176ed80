"""Serve one JSON-RPC request with an MCP server, in the protocol generation it speaks.

No I/O of its own: request-scoped notifications go out through the `notify` callback the
caller supplies (the worker sends them to the reply queue).

- 2026-07-28 (stateless): the request's `_meta` envelope is checked by the SDK's inbound
  ladder and builds a born-ready connection.
- 2025-11-25 and earlier (handshake): `initialize` is answered from the server's static
  capabilities; every other request is served as an already-initialised connection of the
  version the client negotiated (the `mcp.protocol-version` attribute).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio
from mcp.server.connection import Connection
from mcp.server.lowlevel.server import Server
from mcp.server.runner import modern_error_data, serve_one
from mcp.shared.dispatcher import CallOptions
from mcp.shared.exceptions import NoBackChannelError
from mcp.shared.inbound import InboundLadderRejection, classify_inbound_request
from mcp.shared.jsonrpc_dispatcher import progress_token_from_params
from mcp.shared.message import MessageMetadata
from mcp.shared.transport_context import TransportContext
from mcp_types import (
    DEFAULT_NEGOTIATED_VERSION,
    PROTOCOL_VERSION_META_KEY,
    ErrorData,
    JSONRPCError,
    JSONRPCNotification,
    JSONRPCRequest,
    JSONRPCResponse,
    ProgressToken,
    RequestId,
)
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, LATEST_HANDSHAKE_VERSION

Notify = Callable[[JSONRPCNotification], Awaitable[None]]
"""Sends one request-scoped notification (progress, log message) to the client."""

TRANSPORT = TransportContext(kind="dmcp-sqs", can_send_request=False)


@dataclass
class QueueDispatchContext:
    """The SDK's per-request `DispatchContext` for a request that arrived on a queue.

    There is no back channel for server-to-client requests (2026-07-28 replaces them with
    `input_required` results); notifications go to the client's reply queue via `notify`.
    """

    request_id: RequestId
    notify_client: Notify
    progress_token: ProgressToken | None = None
    transport: TransportContext = TRANSPORT
    message_metadata: MessageMetadata = None
    cancel_requested: anyio.Event = field(default_factory=anyio.Event)
    can_send_request: bool = False

    async def send_raw_request(
        self, method: str, params: Mapping[str, Any] | None, opts: CallOptions | None = None
    ) -> dict[str, Any]:
        raise NoBackChannelError(method)

    async def notify(
        self, method: str, params: Mapping[str, Any] | None, opts: CallOptions | None = None
    ) -> None:
        body = dict(params) if params is not None else None
        await self.notify_client(JSONRPCNotification(jsonrpc="2.0", method=method, params=body))

    async def progress(self, progress: float, total: float | None = None, message: str | None = None) -> None:
        if self.progress_token is None:
            return
        params: dict[str, Any] = {"progressToken": self.progress_token, "progress": progress}
        if total is not None:
            params["total"] = total
        if message is not None:
            params["message"] = message
        await self.notify("notifications/progress", params)


def is_modern(request: JSONRPCRequest) -> bool:
    """Whether a request carries the 2026-07-28 per-request envelope (and is not `initialize`)."""
    meta = (request.params or {}).get("_meta")
    return request.method != "initialize" and isinstance(meta, Mapping) and PROTOCOL_VERSION_META_KEY in meta


def handshake_version(request: JSONRPCRequest, hint: str | None) -> str:
    """The handshake-era version to serve a request at: `initialize`'s proposal, else the hint."""
    proposed = (request.params or {}).get("protocolVersion") if request.method == "initialize" else hint
    if proposed in HANDSHAKE_PROTOCOL_VERSIONS:
        return str(proposed)
    return LATEST_HANDSHAKE_VERSION if request.method == "initialize" else DEFAULT_NEGOTIATED_VERSION


def connection_for(request: JSONRPCRequest, protocol_hint: str | None) -> Connection | ErrorData:
    """A born-ready connection for one request, or the error that rejects its envelope."""
    if is_modern(request):
        verdict = classify_inbound_request(request.model_dump(by_alias=True, exclude_unset=True))
        if isinstance(verdict, InboundLadderRejection):
            return ErrorData(code=verdict.code, message=verdict.message, data=verdict.data)
        return Connection.from_envelope(
            verdict.protocol_version, verdict.client_info, verdict.client_capabilities
        )
    return Connection.from_envelope(handshake_version(request, protocol_hint), None, None)


async def serve_request(
    server: Server[Any],
    request: JSONRPCRequest,
    *,
    notify: Notify,
    lifespan_state: Any,
    protocol_hint: str | None = None,
) -> JSONRPCResponse | JSONRPCError:
    """Run one request through `server`; always returns a reply carrying the request's own id."""
    connection = connection_for(request, protocol_hint)
    if isinstance(connection, ErrorData):
        return JSONRPCError(jsonrpc="2.0", id=request.id, error=connection)
    dctx = QueueDispatchContext(request.id, notify, progress_token_from_params(request.params))
    try:
        result = await serve_one(
            server, dctx, request.method, request.params, connection=connection, lifespan_state=lifespan_state
        )
    except Exception as exc:
        return JSONRPCError(jsonrpc="2.0", id=request.id, error=modern_error_data(exc))
    return JSONRPCResponse(jsonrpc="2.0", id=request.id, result=result)
