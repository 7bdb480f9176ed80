"""Stdio MCP servers as dMCP workers: a relay worker runs an existing stdio server as its child.

A server in the deployment description that gives `command` (+ `args`, `env`) instead of a
`handler` is served by the handler `dmcp_aws.bridges.stdio_server.serve_<name>` (`-` → `_`),
which reads its command from `DMCP_STDIO_<NAME>` (JSON: `command`, `args`, `env`; see
`dmcp_aws.deployment.stdio_environment_variable`). One attribute per server name: the embedded
stack runs several servers in one process with one environment.

- The child is started once per execution environment (per event loop, like the worker's SQS
  client), initialised once with the SDK's client side (`mcp.client.stdio`), and restarted
  on the next request if it died.
- Each request is relayed with its JSON-RPC id (and progress token) replaced by a fresh internal
  one — clients' ids collide — and the answer goes back under the request's own id.
- `notifications/progress` go to the reply queue of the request whose token they carry;
  `notifications/message` to the request in flight when only one is (otherwise they are dropped:
  a log line is never sent to a client it may not belong to).
- `initialize` and `server/discover` (and `ping`) are answered from the child's own
  `initialize` result (serverInfo, capabilities, instructions).
- Server-to-client requests from the child (sampling, elicitation, roots) are answered with an
  error at once: a queue has no back channel.
- A child that exits, or does not answer within the invocation's remaining time, is stopped;
  the requests it held raise `ChildFailed`, so the batch reports them, SQS redelivers them, and
  the worker's last-word rules apply.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import anyio
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.server.lowlevel.server import NotificationOptions, Server
from mcp.shared.message import SessionMessage
from mcp_types import (
    METHOD_NOT_FOUND,
    PROTOCOL_VERSION_META_KEY,
    ErrorData,
    JSONRPCError,
    JSONRPCMessage,
    JSONRPCNotification,
    JSONRPCRequest,
    JSONRPCResponse,
    ServerCapabilities,
    jsonrpc_message_adapter,
)
from mcp_types.methods import CACHEABLE_METHODS
from mcp_types.version import LATEST_HANDSHAKE_VERSION

from dmcp_aws.deployment import STDIO_HANDLER_PREFIX, stdio_environment_variable
from dmcp_aws.idempotency import Claim
from dmcp_aws.lambda_handler import LambdaHandler
from dmcp_aws.request_context import QueueRequest
from dmcp_aws.serving import envelope_rejection, is_modern, serve_request
from dmcp_aws.wire import Attr
from dmcp_aws.worker import ReplyChannel, Worker, WorkerSettings, _LoopResources

logger = logging.getLogger(__name__)

INIT_TIMEOUT_S: Final = 30.0
"""How long a child may take to start and answer `initialize`."""
_LOCAL_METHODS: Final = frozenset({"initialize", "server/discover", "ping"})
_RELAYED_NOTIFICATIONS: Final = frozenset({"notifications/progress", "notifications/message"})
_ENVELOPE_PREFIX: Final = PROTOCOL_VERSION_META_KEY.rpartition("/")[0] + "/"
"""`_meta` keys of the 2026-07-28 per-request envelope: the worker checks them, the child (a
handshake-era server, initialised once) is not shown them."""
_NAME: Final = re.compile(r"^[a-z][a-z0-9_]{0,30}$")


class ChildFailed(Exception):
    """The stdio server exited or stopped answering: a transient failure (the request is retried)."""


@dataclass(frozen=True)
class StdioCommand:
    """The child process to run: what `DMCP_STDIO_<NAME>` holds."""

    command: str
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, server: str, environ: Mapping[str, str] = os.environ) -> StdioCommand:
        variable = stdio_environment_variable(server)
        raw = environ.get(variable)
        if not raw:
            raise RuntimeError(f"{variable} is not set: server {server!r} has no command to run")
        config = json.loads(raw)
        return cls(str(config["command"]), tuple(config.get("args") or ()), dict(config.get("env") or {}))

    def parameters(self) -> StdioServerParameters:
        return StdioServerParameters(command=self.command, args=list(self.args), env=dict(self.env))


@dataclass
class _Call:
    """A request relayed to the child: its answer and the notifications that belong to it."""

    answer: asyncio.Future[dict[str, Any]]
    notes: asyncio.Queue[JSONRPCNotification | None] = field(default_factory=asyncio.Queue)
    progress_token: Any = None
    """The client's own progress token (the child sees the internal id instead)."""


class _Child:
    """One run of the child process: its streams, its `initialize` result and the calls it holds.

    Everything it opens lives in one task (`_run`), so the SDK's stdio transport is entered and
    left in the same task; `stop()` ends it and fails the calls it still holds."""

    def __init__(self, command: StdioCommand, server: str) -> None:
        self.command = command
        self.server = server
        self.calls: dict[int, _Call] = {}
        self.initialized: dict[str, Any] = {}
        self._ids = itertools.count(1)
        self._write: Any = None
        self._ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._stop = asyncio.Event()
        self.exited = False
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"stdio-child-{server}")

    @property
    def alive(self) -> bool:
        return not self.exited and not self._stop.is_set()

    async def started(self, timeout_s: float) -> None:
        try:
            await asyncio.wait_for(asyncio.shield(self._ready), timeout_s)
        except TimeoutError:
            raise ChildFailed(
                f"the stdio server of {self.server!r} did not start within {timeout_s:.1f} s"
            ) from None

    async def stop(self, reason: str) -> None:
        self._stop.set()
        self._fail_all(reason)
        await asyncio.gather(self._task, return_exceptions=True)

    def next_id(self) -> int:
        return next(self._ids)

    async def send(self, message: dict[str, Any]) -> None:
        if self._write is None or not self.alive:
            raise ChildFailed(f"the stdio server of {self.server!r} is not running")
        try:
            await self._write.send(SessionMessage(jsonrpc_message_adapter.validate_python(message)))
        except (anyio.ClosedResourceError, anyio.BrokenResourceError) as exc:
            raise ChildFailed(f"the stdio server of {self.server!r} stopped reading") from exc

    async def _run(self) -> None:
        try:
            async with stdio_client(self.command.parameters(), errlog=sys.stderr) as (read, write):
                self._write = write
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._read_loop, read, tg.cancel_scope)
                    await self._initialize()
                    if not self._ready.done():
                        self._ready.set_result(None)
                    await self._stop.wait()
                    tg.cancel_scope.cancel()
        except Exception as exc:
            logger.warning("the stdio server of %r failed: %s", self.server, exc)
            if not self._ready.done():
                self._ready.set_exception(ChildFailed(f"the stdio server of {self.server!r} failed: {exc}"))
        finally:
            self.exited = True
            if not self._ready.done():
                self._ready.set_exception(ChildFailed(f"the stdio server of {self.server!r} exited"))
            self._fail_all("the stdio server exited")

    async def _initialize(self) -> None:
        internal = self.next_id()
        call = self.calls[internal] = _Call(asyncio.get_running_loop().create_future())
        await self.send(
            {
                "jsonrpc": "2.0",
                "id": internal,
                "method": "initialize",
                "params": {
                    "protocolVersion": LATEST_HANDSHAKE_VERSION,
                    "capabilities": {},
                    "clientInfo": {"name": "dmcp-aws-stdio-relay", "version": "1"},
                },
            }
        )
        reply = await call.answer
        if "error" in reply:
            raise ChildFailed(f"initialize failed: {reply['error']}")
        self.initialized = dict(reply.get("result") or {})
        await self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})

    async def _read_loop(self, read: Any, scope: anyio.CancelScope) -> None:
        async for item in read:
            if isinstance(item, Exception):
                logger.warning("the stdio server of %r wrote a bad line: %s", self.server, item)
                continue
            await self._dispatch(item.message.model_dump(by_alias=True, exclude_unset=True))
        # stdout closed: the child is gone.
        self._stop.set()
        scope.cancel()

    async def _dispatch(self, message: dict[str, Any]) -> None:
        if "method" in message and "id" in message:
            # A server-to-client request: no back channel on a queue, so an error, never a hang.
            error = {
                "code": METHOD_NOT_FOUND,
                "message": f"{message['method']} is not available: the client is behind a dMCP queue",
            }
            await self.send({"jsonrpc": "2.0", "id": message["id"], "error": error})
        elif "method" in message:
            self._route(message)
        elif (
            isinstance(message.get("id"), int)
            and (call := self.calls.pop(message["id"], None)) is not None
            and not call.answer.done()
        ):
            call.answer.set_result(message)

    def _route(self, message: dict[str, Any]) -> None:
        method, params = message["method"], dict(message.get("params") or {})
        if method not in _RELAYED_NOTIFICATIONS:
            return
        if method == "notifications/progress":
            call = self.calls.get(params.get("progressToken"))  # type: ignore[arg-type]
            if call is None or call.progress_token is None:
                return
            params["progressToken"] = call.progress_token
        else:
            running = [c for i, c in self.calls.items() if not c.answer.done()]
            if len(running) != 1:
                logger.debug("dropped a log message of %r: %d requests in flight", self.server, len(running))
                return
            call = running[0]
        call.notes.put_nowait(JSONRPCNotification(jsonrpc="2.0", method=method, params=params))

    def _fail_all(self, reason: str) -> None:
        for call in self.calls.values():
            if not call.answer.done():
                call.answer.set_exception(ChildFailed(f"{reason} ({self.server!r})"))
                call.answer.exception()  # its waiter may have left (timed out): no "never retrieved"
        self.calls.clear()


class _Mirror(Server[Any]):
    """A server that answers `initialize`, `server/discover` and `ping` as the child would."""

    def __init__(self, initialized: Mapping[str, Any]) -> None:
        info = initialized.get("serverInfo") or {}
        super().__init__(
            str(info.get("name") or "stdio-server"),
            version=str(info.get("version") or ""),
            title=info.get("title"),
            instructions=initialized.get("instructions"),
        )
        self._capabilities = ServerCapabilities.model_validate(initialized.get("capabilities") or {})

    def get_capabilities(
        self,
        notification_options: NotificationOptions | None = None,
        experimental_capabilities: dict[str, dict[str, Any]] | None = None,
        extensions: dict[str, dict[str, Any]] | None = None,
        *,
        protocol_version: str | None = None,
    ) -> ServerCapabilities:
        return self._capabilities


class StdioWorker(Worker):
    """A worker relaying each request to a stdio MCP server kept running as its child."""

    def __init__(self, server: Server[Any], settings: WorkerSettings, **kwargs: Any) -> None:
        super().__init__(server, settings, **kwargs)
        self.command = StdioCommand.from_env(self.server.name)
        self._children: dict[asyncio.AbstractEventLoop, _Child] = {}
        self._starting: dict[asyncio.AbstractEventLoop, asyncio.Lock] = {}

    async def child(self, timeout_s: float = INIT_TIMEOUT_S) -> _Child:
        """The running child for this event loop, started (again) if there is none."""
        loop = asyncio.get_running_loop()
        for stale in [other for other in self._children if other.is_closed()]:
            del self._children[stale]
            self._starting.pop(stale, None)
        lock = self._starting.setdefault(loop, asyncio.Lock())
        async with lock:
            current = self._children.get(loop)
            if current is None or not current.alive:
                if current is not None:
                    await current.stop("restarting")
                logger.info("starting the stdio server of %r: %s", self.server.name, self.command.command)
                current = self._children[loop] = _Child(self.command, self.server.name)
            try:
                await current.started(timeout_s)
            except BaseException:
                del self._children[loop]
                await current.stop("it did not start")
                raise
            return current

    async def aclose(self) -> None:
        loop = asyncio.get_running_loop()
        child = self._children.pop(loop, None)
        if child is not None:
            await child.stop("the worker closed")
        await super().aclose()

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
        limit_s = max(0.1, (budget_ms - self.settings.answer_margin_ms) / 1000)
        child = await self.child(min(limit_s, INIT_TIMEOUT_S))
        if request.method in _LOCAL_METHODS:

            async def ignore(_: JSONRPCNotification) -> None:
                return None

            return await serve_request(
                _Mirror(child.initialized),
                request,
                notify=ignore,
                lifespan_state={},
                protocol_hint=attributes.get(Attr.PROTOCOL_VERSION),
            )
        rejection = envelope_rejection(request)
        if rejection is not None:
            return JSONRPCError(jsonrpc="2.0", id=request.id, error=rejection)
        return await self._relay(child, channel, request, limit_s)

    async def _relay(
        self, child: _Child, channel: ReplyChannel, request: JSONRPCRequest, limit_s: float
    ) -> JSONRPCMessage:
        internal = child.next_id()
        params = dict(request.params or {})
        meta = {
            k: v for k, v in dict(params.get("_meta") or {}).items() if not k.startswith(_ENVELOPE_PREFIX)
        }
        call = _Call(asyncio.get_running_loop().create_future(), progress_token=meta.get("progressToken"))
        if call.progress_token is not None:
            meta["progressToken"] = internal
        if meta:
            params["_meta"] = meta
        else:
            params.pop("_meta", None)
        child.calls[internal] = call
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": internal, "method": request.method}
        if params or request.params is not None:
            message["params"] = params
        forwarder = asyncio.get_running_loop().create_task(self._forward(channel, call, request.id))
        try:
            await child.send(message)
            try:
                reply = await asyncio.wait_for(asyncio.shield(call.answer), limit_s)
            except TimeoutError:
                await child.stop(f"it did not answer {request.method} within {limit_s:.1f} s")
                raise ChildFailed(
                    f"the stdio server of {self.server.name!r} did not answer within {limit_s:.1f} s; "
                    "it was restarted"
                ) from None
        finally:
            child.calls.pop(internal, None)
            call.notes.put_nowait(None)
            await forwarder
        if "error" in reply:
            return JSONRPCError(jsonrpc="2.0", id=request.id, error=ErrorData.model_validate(reply["error"]))
        result = dict(reply.get("result") or {})
        if is_modern(request):
            result = _modern_result(request.method, result)
        return JSONRPCResponse(jsonrpc="2.0", id=request.id, result=result)

    async def _forward(self, channel: ReplyChannel, call: _Call, request_id: Any) -> None:
        """Send a call's notifications to its reply queue, in order, until it ends."""
        while (note := await call.notes.get()) is not None:
            try:
                await self._send(channel, note, request_id)
            except Exception:
                # Notifications are advisory: a lost one must not fail the request.
                logger.warning("could not deliver %s to %s", note.method, channel.address.name, exc_info=True)


def _modern_result(method: str, result: dict[str, Any]) -> dict[str, Any]:
    """A handshake-era child's result in the 2026-07-28 shape: `resultType`, and the cache
    fields a cacheable result must carry (immediately stale, private: the SDK's defaults)."""
    result.setdefault("resultType", "complete")
    if method in CACHEABLE_METHODS:
        result.setdefault("ttlMs", 0)
        result.setdefault("cacheScope", "private")
    return result


_handlers: dict[str, LambdaHandler] = {}


def handler_for(server: str) -> LambdaHandler:
    """The Lambda handler relaying to `command` server `server` (its command read on first use)."""
    if server not in _handlers:
        _handlers[server] = LambdaHandler(Server(server), worker_class=StdioWorker)
    return _handlers[server]


def __getattr__(attribute: str) -> LambdaHandler:
    """`serve_<name>` (`-` written `_`): the handler of `command` server `<name>`."""
    if attribute.startswith(STDIO_HANDLER_PREFIX) and _NAME.match(
        name := attribute[len(STDIO_HANDLER_PREFIX) :]
    ):
        return handler_for(name.replace("_", "-"))
    raise AttributeError(f"module {__name__!r} has no attribute {attribute!r}")
