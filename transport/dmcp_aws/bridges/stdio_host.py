"""`dmcp stdio`: a stdio MCP server that relays every message to one dMCP server.

A host (Claude Desktop, VS Code, MCP Inspector) starts this process and writes newline-delimited
JSON-RPC to its stdin; each message goes unchanged to the dMCP server over `sqs_client_transport`
(a per-connection reply queue, a fresh connection secret, a deadline per request), and each
answer, progress or log notification comes back on stdout. Both protocol generations pass
through as they are: the host's `initialize` or `server/discover` reaches the worker, which
answers it. Once an `initialize` is answered, the negotiated version travels with every later
request (as the HTTP transport's `MCP-Protocol-Version` header would), so the stateless worker
serves it at that version.

stdout carries JSON-RPC only: while relaying, fd 1 points at stderr (a stray `print` in any
library lands there) and the wire is a private duplicate; every log line goes to stderr. On stdin
EOF the relay waits for the answers still owed (each has its deadline), then closes the
transport (its per-connection queue is deleted) and returns; on SIGTERM or SIGINT it closes at
once. A line that is not JSON-RPC and an error the transport reports become a log
line on stderr, never output.

The SDK's `mcp.server.stdio.stdio_server` is not used: it reads stdin in a worker thread that a
cancellation cannot interrupt, so SIGTERM would wait for the host's next line. Here stdin and
stdout are watched by the event loop (`wait_readable` / `wait_writable`), so every wait is
cancellable.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import stat
from collections.abc import AsyncIterator, Iterator
from typing import Any, Final

import anyio
import anyio.lowlevel
from anyio.abc import TaskGroup
from mcp.client._transport import ReadStream, WriteStream
from mcp.shared.inbound import MCP_PROTOCOL_VERSION_HEADER
from mcp.shared.message import ClientMessageMetadata, SessionMessage
from mcp_types import JSONRPCError, JSONRPCRequest, JSONRPCResponse, jsonrpc_message_adapter

from dmcp_aws.client import QueueTarget, Target, TopicTarget, sqs_client_transport

logger = logging.getLogger(__name__)

_READ_CHUNK: Final = 65536
MAX_LINE_BYTES: Final = 4 * 1024 * 1024
"""A line longer than this is dropped (SNS takes 256 KiB; this only bounds memory)."""


class RelayBroken(RuntimeError):
    """The transport can no longer deliver answers (its reply queue is gone or unreadable)."""


async def relay_stdio(
    target: Target,
    *,
    stdin_fd: int = 0,
    stdout_fd: int = 1,
    **transport_options: Any,
) -> None:
    """Relay JSON-RPC between `stdin_fd`/`stdout_fd` and `target` until stdin ends, SIGTERM or
    SIGINT; raises `RelayBroken` when the transport fails for good (after closing it)."""
    with _claimed_stdio(stdin_fd, stdout_fd) as (wire_in, wire_out):
        async with sqs_client_transport(target, **transport_options) as (from_server, to_server):
            relay = _Relay(wire_in, wire_out)
            async with anyio.create_task_group() as tg:
                tg.start_soon(_stop_on_signal, tg)
                tg.start_soon(relay.host_to_server, to_server, tg)
                tg.start_soon(relay.server_to_host, from_server, tg)
            if relay.broken is not None:
                raise RelayBroken(relay.broken)


class _Relay:
    def __init__(self, wire_in: int, wire_out: int) -> None:
        self.wire_in = wire_in
        self.wire_out = wire_out
        self.initialize_ids: set[Any] = set()
        self.protocol_version: str | None = None
        """The version an `initialize` negotiated (handshake generation), stamped on later requests."""
        self.broken: str | None = None
        self.outstanding: set[Any] = set()
        """Ids of the host's requests not answered yet."""
        self.answered = anyio.Event()

    async def host_to_server(self, to_server: WriteStream[SessionMessage], tg: TaskGroup) -> None:
        """Every line of stdin, as a message to the server; stdin's end stops the relay."""
        async with to_server:
            async for line in _lines(self.wire_in):
                if not line.strip():
                    continue
                try:
                    message = jsonrpc_message_adapter.validate_json(line, by_name=False)
                except Exception as exc:
                    logger.warning("dropped a line from the host that is not JSON-RPC: %s", _first_line(exc))
                    continue
                if isinstance(message, JSONRPCRequest):
                    self.outstanding.add(message.id)
                    if message.method == "initialize":
                        self.initialize_ids.add(message.id)
                metadata = None
                if self.protocol_version is not None:
                    metadata = ClientMessageMetadata(
                        headers={MCP_PROTOCOL_VERSION_HEADER: self.protocol_version}
                    )
                await to_server.send(SessionMessage(message, metadata=metadata))
        if self.outstanding:
            logger.info("stdin ended; waiting for %d answer(s)", len(self.outstanding))
            self.answered = anyio.Event()
            if self.outstanding:
                await self.answered.wait()
        logger.info("stdin ended; closing the connection")
        tg.cancel_scope.cancel()

    async def server_to_host(
        self, from_server: ReadStream[SessionMessage | Exception], tg: TaskGroup
    ) -> None:
        """Every message of the server, as a line on stdout; an error of the transport, on stderr."""
        async with from_server:
            async for item in from_server:
                if isinstance(item, Exception):
                    logger.error("%s", _first_line(item))
                    continue
                message = item.message
                if isinstance(message, JSONRPCResponse) and message.id in self.initialize_ids:
                    self.initialize_ids.discard(message.id)
                    version = (message.result or {}).get("protocolVersion")
                    if isinstance(version, str):
                        self.protocol_version = version
                line = message.model_dump_json(by_alias=True, exclude_unset=True) + "\n"
                try:
                    await _write_all(self.wire_out, line.encode())
                except BrokenPipeError:
                    logger.info("the host closed stdout; closing the connection")
                    tg.cancel_scope.cancel()
                    return
                if isinstance(message, JSONRPCResponse | JSONRPCError):  # written: no longer owed
                    self.outstanding.discard(message.id)
                    if not self.outstanding:
                        self.answered.set()
        self.broken = "the connection to the dMCP server ended: no answer can come any more"
        logger.error("%s", self.broken)
        tg.cancel_scope.cancel()


async def _stop_on_signal(tg: TaskGroup) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            logger.info("%s: closing the connection", signal.Signals(signum).name)
            tg.cancel_scope.cancel()
            return


@contextlib.contextmanager
def _claimed_stdio(stdin_fd: int, stdout_fd: int) -> Iterator[tuple[int, int]]:
    """Private duplicates of the wire's descriptors; while held, `stdout_fd` points at stderr and
    `stdin_fd` at the null device, so nothing else in the process can touch the wire."""
    wire_in = os.dup(stdin_fd)
    wire_out = os.dup(stdout_fd)
    saved_in, saved_out = os.dup(stdin_fd), os.dup(stdout_fd)
    devnull = os.open(os.devnull, os.O_RDONLY)
    try:
        os.dup2(devnull, stdin_fd)
        os.dup2(2, stdout_fd)
        yield wire_in, wire_out
    finally:
        os.dup2(saved_in, stdin_fd)
        os.dup2(saved_out, stdout_fd)
        for fd in (devnull, saved_in, saved_out, wire_in, wire_out):
            with contextlib.suppress(OSError):
                os.close(fd)


def _pollable(fd: int) -> bool:
    """Whether the event loop can watch `fd` (epoll refuses regular files, which never block)."""
    return not stat.S_ISREG(os.fstat(fd).st_mode)


async def _lines(fd: int) -> AsyncIterator[bytes]:
    """The lines of `fd` until its end, each read as soon as it is there (cancellable)."""
    pollable = _pollable(fd)
    pending = b""
    while True:
        if pollable:
            await anyio.wait_readable(fd)
        try:
            chunk = os.read(fd, _READ_CHUNK)
        except BlockingIOError:
            continue
        if not chunk:
            break
        pending += chunk
        *complete, pending = pending.split(b"\n")
        for line in complete:
            yield line
        if len(pending) > MAX_LINE_BYTES:
            logger.warning("dropped a line from the host longer than %d bytes", MAX_LINE_BYTES)
            pending = b""
        if not pollable:
            await anyio.lowlevel.checkpoint()
    if pending.strip():
        yield pending


async def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    pollable = _pollable(fd)
    while view:
        if pollable:
            await anyio.wait_writable(fd)
        try:
            written = os.write(fd, view)
        except BlockingIOError:
            continue
        view = view[written:]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


async def check_target(
    target: Target,
    *,
    reply_queue_url: str | None = None,
    session: Any = None,
    endpoint_url: str | None = None,
    region_name: str | None = None,
) -> None:
    """Fail now, not on the host's first request, when the target or the reply queue does not
    exist or the credentials are refused (the AWS error is raised)."""
    from dmcp_aws.aws_clients import shared_client, shared_session

    session = session or await shared_session()
    async with shared_client(session, "sqs", endpoint_url, region_name) as sqs:
        if isinstance(target, QueueTarget):
            await sqs.get_queue_attributes(QueueUrl=target.queue_url, AttributeNames=["QueueArn"])
        if reply_queue_url is not None:
            await sqs.get_queue_attributes(QueueUrl=reply_queue_url, AttributeNames=["QueueArn"])
    if isinstance(target, TopicTarget):
        async with shared_client(session, "sns", endpoint_url, region_name) as sns:
            await sns.get_topic_attributes(TopicArn=target.topic_arn)
