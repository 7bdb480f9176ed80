"""Serve one JSON-RPC message with an MCP server, in the protocol generation it speaks.

No I/O of its own: the caller supplies `notify` (request-scoped notifications go to the client's
reply queue) and, in the handshake era, `ask_client` (the back channel for server-to-client
requests, `dmcp_aws.back_channel`).

- 2026-07-28 (stateless): the request's `_meta` envelope is checked by the SDK's inbound
  ladder and builds a born-ready connection; server-to-client requests are refused (that era
  asks with `input_required` results); errors map as the SDK's modern entries map them.
- 2025-11-25 and earlier (handshake): `initialize` is answered from the server's static
  capabilities; every other request is served as a connection of the version the client
  negotiated (`mcp.protocol-version`) that knows what `initialize` declared
  (`mcp.client-params`); errors map as the SDK's handshake-era server maps them (the
  exception's own code and message).
- Client notifications reach the server's notification handlers the same way.

Notifications a server sends outside any request (`list_changed`, `resources/updated`) need the
events plane, which this kit does not have yet: until it does, `subscriptions/listen` and
`resources/subscribe` are refused at once (never held open until the function times out), and
`initialize` and `server/discover` do not advertise what could not be delivered.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import anyio
from mcp.server.connection import Connection, NotifyOnlyOutbound
from mcp.server.lowlevel.server import Server
from mcp.server.runner import ServerRunner, aclose_shielded, modern_error_data, serve_one
from mcp.shared.dispatcher import CallOptions
from mcp.shared.exceptions import NoBackChannelError
from mcp.shared.inbound import InboundLadderRejection, classify_inbound_request
from mcp.shared.jsonrpc_dispatcher import handler_exception_to_error_data, progress_token_from_params
from mcp.shared.message import MessageMetadata
from mcp.shared.transport_context import TransportContext
from mcp_types import (
    DEFAULT_NEGOTIATED_VERSION,
    METHOD_NOT_FOUND,
    PROTOCOL_VERSION_META_KEY,
    ErrorData,
    JSONRPCError,
    JSONRPCNotification,
    JSONRPCRequest,
    JSONRPCResponse,
    ProgressToken,
    RequestId,
)
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, LATEST_HANDSHAKE_VERSION, LATEST_MODERN_VERSION

Notify = Callable[[JSONRPCNotification], Awaitable[None]]
"""Sends one request-scoped notification (progress, log message) to the client."""

AskClient = Callable[[str, Mapping[str, Any] | None], Awaitable[dict[str, Any]]]
"""Sends one server-to-client request and returns the client's result (raises `MCPError` for
the client's error answer)."""

TRANSPORT_KIND = "dmcp-sqs"

NEEDS_EVENTS_PLANE: Final = frozenset(
    {"subscriptions/listen", "resources/subscribe", "resources/unsubscribe"}
)
"""Methods whose promise (notifications outside any request) only the events plane can keep."""


async def _no_notify(notification: JSONRPCNotification) -> None:
    """Where notifications sent while handling a client notification go: nowhere to answer."""


@dataclass
class QueueDispatchContext:
    """The SDK's per-request `DispatchContext` for a message that arrived on a queue.

    Notifications go to the client's reply queue via `notify_client`; server-to-client requests
    go through `ask_client` when there is a back channel (handshake era, with a ledger table),
    else they raise `NoBackChannelError` as on the SDK's stateless HTTP path.
    """

    request_id: RequestId | None
    notify_client: Notify
    progress_token: ProgressToken | None = None
    ask_client: AskClient | None = None
    message_metadata: MessageMetadata = None
    cancel_requested: anyio.Event = field(default_factory=anyio.Event)

    @property
    def can_send_request(self) -> bool:
        return self.ask_client is not None

    @property
    def transport(self) -> TransportContext:
        return TransportContext(kind=TRANSPORT_KIND, can_send_request=self.can_send_request)

    async def send_raw_request(
        self, method: str, params: Mapping[str, Any] | None, opts: CallOptions | None = None
    ) -> dict[str, Any]:
        if self.ask_client is None:
            raise NoBackChannelError(method)
        return await self.ask_client(method, params)

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


@dataclass
class _RequestBoundOutbound:
    """A connection's standalone channel, for as long as one request runs: what the server sends
    on it (`roots/list`, `ping`, list-changed notifications) travels with that request."""

    dctx: QueueDispatchContext

    async def send_raw_request(
        self, method: str, params: Mapping[str, Any] | None, opts: CallOptions | None = None
    ) -> dict[str, Any]:
        return await self.dctx.send_raw_request(method, params, opts)

    async def notify(
        self, method: str, params: Mapping[str, Any] | None, opts: CallOptions | None = None
    ) -> None:
        await self.dctx.notify(method, params, opts)


def is_modern(request: JSONRPCRequest) -> bool:
    """Whether a request carries the 2026-07-28 per-request envelope (and is not `initialize`)."""
    meta = (request.params or {}).get("_meta")
    return request.method != "initialize" and isinstance(meta, Mapping) and PROTOCOL_VERSION_META_KEY in meta


def handshake_version(request: JSONRPCRequest | JSONRPCNotification, hint: str | None) -> str:
    """The handshake-era version to serve a message at: `initialize`'s proposal, else the hint."""
    proposed = (request.params or {}).get("protocolVersion") if request.method == "initialize" else hint
    if proposed in HANDSHAKE_PROTOCOL_VERSIONS:
        return str(proposed)
    return LATEST_HANDSHAKE_VERSION if request.method == "initialize" else DEFAULT_NEGOTIATED_VERSION


def connection_for(
    request: JSONRPCRequest,
    protocol_hint: str | None,
    dctx: QueueDispatchContext,
    declared: tuple[Any, Any] = (None, None),
) -> Connection | ErrorData:
    """A born-ready connection for one request, or the error that rejects its envelope.

    `declared` is `(clientInfo, capabilities)` from the handshake era's `initialize`."""
    if is_modern(request):
        verdict = classify_inbound_request(request.model_dump(by_alias=True, exclude_unset=True))
        if isinstance(verdict, InboundLadderRejection):
            return _rejection(verdict)
        return Connection.from_envelope(
            verdict.protocol_version,
            verdict.client_info,
            verdict.client_capabilities,
            outbound=NotifyOnlyOutbound(_RequestBoundOutbound(dctx)),
        )
    client_info, capabilities = declared
    return Connection.from_envelope(
        handshake_version(request, protocol_hint),
        client_info,
        capabilities,
        outbound=_RequestBoundOutbound(dctx),
    )


def envelope_rejection(request: JSONRPCRequest) -> ErrorData | None:
    """The error that rejects a 2026-07-28 request's envelope (None: acceptable, or handshake era)."""
    if not is_modern(request):
        return None
    verdict = classify_inbound_request(request.model_dump(by_alias=True, exclude_unset=True))
    return _rejection(verdict) if isinstance(verdict, InboundLadderRejection) else None


def _rejection(verdict: InboundLadderRejection) -> ErrorData:
    return ErrorData(code=verdict.code, message=verdict.message, data=verdict.data)


def handshake_error_data(exc: Exception) -> ErrorData:
    """Map a handshake-era handler exception as the SDK's handshake-era server does: `MCPError`
    and validation errors by the shared ladder, anything else as code 0 with its own message."""
    return handler_exception_to_error_data(exc) or ErrorData(code=0, message=str(exc))


async def serve_request(
    server: Server[Any],
    request: JSONRPCRequest,
    *,
    notify: Notify,
    lifespan_state: Any,
    protocol_hint: str | None = None,
    declared: tuple[Any, Any] = (None, None),
    ask_client: AskClient | None = None,
    cancel_requested: anyio.Event | None = None,
) -> JSONRPCResponse | JSONRPCError:
    """Run one request through `server`; always returns a reply carrying the request's own id.

    `ask_client` is used only in the handshake era; `cancel_requested` is set by the caller
    before it cancels the request (the handler can see it as `ctx`'s cancellation flag)."""
    modern = is_modern(request)
    if request.method in NEEDS_EVENTS_PLANE:
        message = (
            f"{request.method} is not available over dMCP yet: notifications sent outside a request "
            "need the events plane, which this deployment does not have"
        )
        error = ErrorData(code=METHOD_NOT_FOUND, message=message, data=request.method)
        return JSONRPCError(jsonrpc="2.0", id=request.id, error=error)
    dctx = QueueDispatchContext(
        request.id,
        notify,
        progress_token_from_params(request.params),
        ask_client=None if modern else ask_client,
        cancel_requested=cancel_requested or anyio.Event(),
    )
    connection = connection_for(request, protocol_hint, dctx, declared)
    if isinstance(connection, ErrorData):
        return JSONRPCError(jsonrpc="2.0", id=request.id, error=connection)
    try:
        result = await serve_one(
            server, dctx, request.method, request.params, connection=connection, lifespan_state=lifespan_state
        )
    except Exception as exc:
        error = modern_error_data(exc) if modern else handshake_error_data(exc)
        return JSONRPCError(jsonrpc="2.0", id=request.id, error=error)
    if request.method in ("initialize", "server/discover"):
        result = without_undeliverable_capabilities(result)
    return JSONRPCResponse(jsonrpc="2.0", id=request.id, result=result)


def without_undeliverable_capabilities(result: dict[str, Any]) -> dict[str, Any]:
    """An `initialize` or `server/discover` result that promises no notification sent outside a
    request (`listChanged`, resource `subscribe`): nothing could deliver them yet."""
    capabilities = result.get("capabilities")
    if not isinstance(capabilities, dict):
        return result
    honest = dict(capabilities)
    for name in ("tools", "prompts", "resources"):
        if isinstance(honest.get(name), dict):
            honest[name] = {k: v for k, v in honest[name].items() if k not in ("listChanged", "subscribe")}
    return {**result, "capabilities": honest}


async def deliver_notification(
    server: Server[Any],
    notification: JSONRPCNotification,
    *,
    lifespan_state: Any,
    protocol_hint: str | None = None,
    declared: tuple[Any, Any] = (None, None),
) -> None:
    """Hand a client notification to the server's notification handlers, as the SDK's own
    serving loops do (a handler that raises is logged, never raised)."""
    params = notification.params or {}
    meta = params.get("_meta")
    enveloped = isinstance(meta, Mapping) and PROTOCOL_VERSION_META_KEY in meta
    if enveloped or (protocol_hint is not None and protocol_hint not in HANDSHAKE_PROTOCOL_VERSIONS):
        # The envelope is request-only: as in the SDK, a notification runs at the latest version.
        version, declared = LATEST_MODERN_VERSION, (None, None)
    else:
        version = handshake_version(notification, protocol_hint)
    dctx = QueueDispatchContext(None, _no_notify)
    client_info, capabilities = declared
    connection = Connection.from_envelope(version, client_info, capabilities)
    runner = ServerRunner(server, connection, lifespan_state)
    try:
        await runner.on_notify(dctx, notification.method, notification.params)
    finally:
        await aclose_shielded(connection)
