"""The client transport: MCP over SNS/SQS for `mcp.Client` and `ClientSession`.

    >>> target = TopicTarget(topic_arn="arn:aws:sns:us-east-1:123456789012:dmcp-requests", server="example")
    >>> async with Client(sqs_client_transport(target)) as client:
    ...     result = await client.call_tool("add", {"a": 1, "b": 2})

Requests go to the request topic (routed on `mcp.server`) or straight to a server's request
queue. Answers come back on a reply queue the client names: one given to it
(`reply_queue_url=`), or one it creates for the connection under the reply prefix (encrypted,
TLS-only) and deletes on close. A reader task long-polls the reply queue (no sleep between
polls; none before the first request, see `_Connection._until_replies_due`),
hands each message to the session and deletes it after hand-off, in batches: up to
`DELETE_DELAY_S` later, with the replies that came meanwhile, and on close (no AWS call waits
on the way of an answer). Connections share their AWS clients (`dmcp_aws.aws_clients`).

Trust: each connection instance mints a secret (`dmcp.conn`) that appears in no queue name or
log line. A message reaches the session only if it carries that secret and the digest of a
request this connection sent and still waits for (`dmcp.request-digest`), so nobody can forge
an answer into another client's call. Everything else is deleted (on a per-connection queue)
or, on a shared provisioned queue, left to its owner with a growing back-off and deleted once
stale.

Every request has a deadline (`request_timeout`): when it passes the call fails with an error
naming the request, the server and the reply queue, the server is told to stop
(`notifications/cancelled`) and a late answer is dropped. An AWS error or a deleted reply queue
ends the read stream with the error, so waiting calls fail, not hang.

What a held connection carries besides answers travels too: a server's requests to the client
(handshake era: sampling, elicitation, roots, ping) reach the session while the call they belong
to is pending, and the session's answers go back to the server tagged with that call's digest; a
cancellation names its request's digest; and what `initialize` declared (`clientInfo`,
capabilities) rides every later message as `mcp.client-params`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import math
import secrets
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

import aioboto3
import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from mcp.client._transport import TransportStreams
from mcp.shared.inbound import MCP_PROTOCOL_VERSION_HEADER
from mcp.shared.message import ClientMessageMetadata, SessionMessage
from mcp_types import (
    INTERNAL_ERROR,
    REQUEST_TIMEOUT,
    ErrorData,
    JSONRPCError,
    JSONRPCNotification,
    JSONRPCRequest,
    JSONRPCResponse,
    ProgressToken,
    RequestId,
)

from dmcp_aws.aws_clients import shared_client, shared_session
from dmcp_aws.batching import MAX_ENTRIES, chunks, send_chunk
from dmcp_aws.errors import WireError
from dmcp_aws.wire import (
    Attr,
    WireMessage,
    client_params_attribute,
    decode,
    encode_request,
    from_sqs_attributes,
    request_digest,
    to_sqs_attributes,
)

logger = logging.getLogger(__name__)

DEFAULT_REPLY_PREFIX: Final = "dmcp-reply-conn-"
"""Where per-connection reply queues go in the default deployment (`Deployment.connection_queue_prefix`)."""
_PUBLISH_CONCURRENCY: Final = 16
_MEMORY: Final = 4096
"""How many requests' progress tokens are remembered (in flight, and finished to drop late progress)."""
_READ_ATTEMPTS: Final = 4
"""Consecutive failed reads of the reply queue before the connection gives up."""
_FATAL_CODES: Final = frozenset(
    {"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist", "AccessDenied", "AccessDeniedException"}
)
TASK_STATUS_NOTIFICATION: Final = "notifications/tasks"
"""Sent by workers after the `tools/call` that created a task was answered (`dmcp_aws.tasks`): the
connection's secret alone marks it as this connection's."""
_CLOCK_SLACK_MS: Final = 5_000
DEFAULT_REQUEST_TIMEOUT_S: Final = 120.0
"""How long a request waits for its answer unless the caller says otherwise."""
QUEUE_NAME_RANDOM_HEX: Final = 16
"""Random hex digits of a per-connection queue's name (`CONNECTION_QUEUE_RANDOM_CHARS`)."""
_TOUCH_EVERY_S: Final = 300.0
"""How often a connection marks its per-connection queue as alive for the orphan sweeper."""
_REPLY_RETENTION_S: Final = "3600"
RECEIVE_VISIBILITY_S: Final = 3
"""Visibility of a received reply until it is deleted (a few ms later). Short on purpose: a long
poll of a closed connection lives on in the service and may take the next reply; it is visible
again to the live connection after this long, not after the queue's 30 s."""
DELETE_DELAY_S: Final = 0.5
"""How long a handed-off reply waits before it is deleted, so that the replies after it are
deleted with it (one `DeleteMessageBatch` for up to 10, not one per receive and none on the way of
an answer): far inside `RECEIVE_VISIBILITY_S`, so it is gone before it could be received again."""
_DELETE_BATCH: Final = 10
_PROBES: Final = frozenset({"server/discover", "initialize"})
"""What connecting sends: a connection that sent only these polls only while they wait."""
_parked: dict[tuple[int, str], asyncio.Task[Any]] = {}
"""Per (SQS client, provisioned reply queue): a closed connection's long poll, still running."""
_FLUSH_TIMEOUT_S: Final = 2.0
FOREIGN_FIRST_HOLD_S: Final = 6
"""How long another connection's reply on a shared provisioned queue is held back the first time
this connection passes over it (doubling each time)."""
_FOREIGN_MAX_RECEIVES: Final = 20
"""A well-formed reply of another connection on a shared provisioned queue is deleted once it
was passed over this often (with back-off, about ten minutes): its owner is gone."""


@dataclass(frozen=True)
class TopicTarget:
    """Send requests to the request topic; SNS routes them to `server` on `mcp.server`."""

    topic_arn: str
    server: str


@dataclass(frozen=True)
class QueueTarget:
    """Send requests straight to one server's request queue."""

    queue_url: str
    server: str


Target = TopicTarget | QueueTarget


class ReplyQueueError(RuntimeError):
    """The reply queue could not be read: the connection cannot receive answers any more."""


@asynccontextmanager
async def sqs_client_transport(
    target: Target,
    *,
    reply_queue_url: str | None = None,
    reply_prefix: str = DEFAULT_REPLY_PREFIX,
    session: aioboto3.Session | None = None,
    endpoint_url: str | None = None,
    region_name: str | None = None,
    wait_time_seconds: int = 20,
    request_timeout: float | None = DEFAULT_REQUEST_TIMEOUT_S,
) -> AsyncIterator[TransportStreams]:
    """Connect to a dMCP server over SNS/SQS; yields `(read_stream, write_stream)`.

    Args:
        target: where requests go (`TopicTarget` or `QueueTarget`).
        reply_queue_url: a provisioned reply queue; when omitted, one named
            `<reply_prefix><16 random hex>` is created (encrypted, TLS-only) and deleted on close.
        reply_prefix: name prefix for a created reply queue: the client's own connection prefix
            (`<reply prefix>conn-<client>_`, stack output `ConnectionQueuePrefixes`), which its
            IAM policy allows and workers answer to.
        session: the aioboto3 session (credentials, region); the process's shared one otherwise.
        endpoint_url: AWS endpoint override, for local stacks.
        region_name: AWS region, when the session does not set one.
        wait_time_seconds: long-poll duration for the reply queue (1-20).
        request_timeout: seconds a request waits for its answer before it fails with a
            timeout error (`REQUEST_TIMEOUT`); None waits for ever.
    """
    session = session or await shared_session()
    conn = secrets.token_hex(16)  # the connection's secret: fresh for every connection instance
    async with AsyncExitStack() as stack:
        sqs = await stack.enter_async_context(shared_client(session, "sqs", endpoint_url, region_name))
        sns = None
        if isinstance(target, TopicTarget):
            sns = await stack.enter_async_context(shared_client(session, "sns", endpoint_url, region_name))
        owned = reply_queue_url is None
        if reply_queue_url is None:
            name = f"{reply_prefix}{secrets.token_hex(QUEUE_NAME_RANDOM_HEX // 2)}"
            reply_queue_url = await _create_reply_queue(sqs, name, _queue_arn(target, name))
            stack.push_async_callback(_delete_reply_queue, sqs, reply_queue_url)
        connection = _Connection(
            target, conn, reply_queue_url, sqs, sns, wait_time_seconds, owned=owned, timeout=request_timeout
        )
        if not owned:  # (deleting a per-connection queue deletes what is in it)
            stack.push_async_callback(connection.flush_deletes)
        async with anyio.create_task_group() as tg:
            read_stream, write_stream = connection.start(tg)
            try:
                yield read_stream, write_stream
            finally:
                tg.cancel_scope.cancel()


@dataclass
class _Pending:
    """A request this connection sent and still waits for."""

    method: str
    digest: str
    progress_token: ProgressToken | None
    deadline: float
    """`time.monotonic()` after which the call fails (`math.inf`: never)."""


class _Connection:
    """The two pumps of one transport connection and the state they share."""

    def __init__(
        self,
        target: Target,
        conn: str,
        reply_url: str,
        sqs: Any,
        sns: Any,
        wait_time: int,
        *,
        owned: bool,
        timeout: float | None,
    ) -> None:
        self.target = target
        self.conn = conn
        self.reply_url = reply_url
        self.reply_name = reply_url.rstrip("/").rsplit("/", 1)[-1]
        self.sqs = sqs
        self.sns = sns
        self.wait_time = wait_time
        self.owned = owned
        """Whether the reply queue is this connection's own (created for it): nothing else's is in it."""
        self.timeout = timeout
        self.started_ms = int(time.time() * 1000)
        self._read_send: MemoryObjectSendStream[SessionMessage | Exception] | None = None
        self._pending: dict[RequestId, _Pending] = {}
        self._pending_by_digest: dict[str, RequestId] = {}
        self._finished_tokens: OrderedDict[ProgressToken, None] = OrderedDict()
        self._server_requests: OrderedDict[RequestId, str] = OrderedDict()
        """Requests the server sent us that the session has not answered yet: id → the digest
        of the call they belong to (the session's answer goes back tagged with it)."""
        self._client_params: str | None = None
        """What `initialize` declared (`mcp.client-params`), once the session sent it."""
        self._to_delete: list[str] = []
        """Receipt handles of replies handed off (or dropped) and not deleted yet."""
        self._delete_wanted = anyio.Event()
        self._replies_due = anyio.Event()
        self._keep_polling = False
        """Poll even when no request waits (`_until_replies_due`)."""

    def start(self, tg: TaskGroup) -> TransportStreams:
        read_send, read_recv = anyio.create_memory_object_stream[SessionMessage | Exception](32)
        write_send, write_recv = anyio.create_memory_object_stream[SessionMessage](32)
        self._read_send = read_send
        tg.start_soon(self._read_replies, read_send)
        tg.start_soon(self._write_requests, write_recv)
        tg.start_soon(self._delete_handed_off)
        if self.timeout is not None:
            tg.start_soon(self._expire_overdue)
        if self.owned:
            tg.start_soon(self._keep_alive)
        return read_recv, write_send

    async def _read_replies(self, read_send: MemoryObjectSendStream[SessionMessage | Exception]) -> None:
        """Long-poll the reply queue; hand messages to the session; delete them after hand-off."""
        async with read_send:
            failures = 0
            while True:
                await self._until_replies_due()
                try:
                    await self._read_once(read_send)
                    failures = 0
                except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                    return
                except Exception as exc:
                    failures += 1
                    if _error_code(exc) in _FATAL_CODES or failures >= _READ_ATTEMPTS:
                        logger.error("reply queue %s failed: %s", self.reply_url, exc)
                        error = ReplyQueueError(f"cannot read reply queue {self.reply_url}: {exc}")
                        error.__cause__ = exc
                        with anyio.move_on_after(1):
                            await read_send.send(error)
                        return
                    logger.warning("reading reply queue %s failed (%s); retrying", self.reply_url, exc)
                    await anyio.sleep(0.5 * 2**failures)

    async def _until_replies_due(self) -> None:
        """Wait until the reader should poll: while a request waits for its answer, and for as
        long as the connection lives from its first request that is not a probe
        (`server/discover`, `initialize`: a poll stays ready for the next call's answer, late
        answers are deleted when they come, a task's status changes arrive), or from the first
        time a request went unanswered (timed out, cancelled, its id reused). Before the first
        request nothing can be addressed to the connection (its secret is fresh): connecting
        costs no poll but the one the probe's answer comes by, and a connection only connected
        makes no call while idle."""
        while not (self._pending or self._keep_polling):
            self._replies_due = anyio.Event()
            await self._replies_due.wait()

    async def _read_once(self, read_send: MemoryObjectSendStream[SessionMessage | Exception]) -> None:
        poll = self._take_parked_poll() or asyncio.create_task(
            self.sqs.receive_message(
                QueueUrl=self.reply_url,
                MaxNumberOfMessages=10,
                WaitTimeSeconds=self.wait_time,
                VisibilityTimeout=RECEIVE_VISIBILITY_S,
                MessageAttributeNames=["All"],
                AttributeNames=["SentTimestamp", "ApproximateReceiveCount"],
            )
        )
        try:
            response = await asyncio.shield(poll)
        except asyncio.CancelledError:
            self._park(poll)
            raise
        done: list[Mapping[str, Any]] = []
        others: list[Mapping[str, Any]] = []
        for raw in response.get("Messages", []):
            attributes = from_sqs_attributes(raw.get("MessageAttributes"))
            if attributes.get(Attr.CONN) != self.conn:
                (others if self._leave_to_owner(raw, attributes) else done).append(raw)
                continue
            message = self._accept(raw, attributes)
            if message is not None:
                await read_send.send(message)
            done.append(raw)
        if done:
            self._to_delete += [m["ReceiptHandle"] for m in done]
            self._delete_wanted.set()
        if others:
            await self._release(others)

    def _take_parked_poll(self) -> asyncio.Task[Any] | None:
        """The long poll a closed connection left on this provisioned queue, if any."""
        poll = None if self.owned else _parked.pop((id(self.sqs), self.reply_url), None)
        return poll if poll is not None and not poll.cancelled() else None

    def _park(self, poll: asyncio.Task[Any]) -> None:
        """Leave the long poll of a closing connection running for the next connection to this
        provisioned queue in this process: cancelling it would not end it in the service, where
        it would take that connection's first reply and hide it for `RECEIVE_VISIBILITY_S`.
        On a per-connection queue (deleted next), or when one is parked already, cancel it."""
        key = (id(self.sqs), self.reply_url)
        if poll.done():
            return
        if self.owned or key in _parked:
            poll.cancel()
            return
        _parked[key] = poll

        def forget(done: asyncio.Task[Any]) -> None:
            if _parked.get(key) is done:
                del _parked[key]  # nobody took it: what it received is visible again soon
            if not done.cancelled():
                done.exception()  # (retrieved: an error here is nobody's)

        poll.add_done_callback(forget)

    def _leave_to_owner(self, raw: Mapping[str, Any], attributes: Mapping[str, str]) -> bool:
        """Whether a message that is not this connection's may belong to another live one.

        Only a shared provisioned queue holds other connections' replies; there a well-formed,
        recent one is left to its owner, and anything else (junk, sent before this connection
        started, passed over too often) is deleted, so a flood cannot cycle for ever.
        """
        if self.owned or not attributes.get(Attr.CONN) or Attr.REQUEST_DIGEST not in attributes:
            return False
        system = raw.get("Attributes", {})
        sent = int(system.get("SentTimestamp", 0))
        receives = int(system.get("ApproximateReceiveCount", 1))
        return sent >= self.started_ms - _CLOCK_SLACK_MS and receives < _FOREIGN_MAX_RECEIVES

    def _accept(self, raw: Mapping[str, Any], attributes: Mapping[str, str]) -> SessionMessage | None:
        """The message to hand to the session, or None when it answers no live request of ours."""
        if attributes.get(Attr.CONN) != self.conn:
            return None
        try:
            message = decode(raw.get("Body", ""), attributes).message
        except WireError as exc:
            logger.warning("dropped an undecodable reply: %s", exc)
            return None
        digest = attributes.get(Attr.REQUEST_DIGEST)
        if isinstance(message, JSONRPCResponse | JSONRPCError):
            answered = message.id
            pending = self._pending.get(answered) if answered is not None else None
            if answered is None or pending is None or pending.digest != digest:
                logger.debug("dropped an answer that belongs to no waiting request (id %r)", answered)
                return None
            self._finish(answered, answered=True)
            return SessionMessage(message)
        if isinstance(message, JSONRPCRequest) and digest in self._pending_by_digest:
            # The server asks something in the middle of a call (handshake era).
            _remember(self._server_requests, message.id, digest)
            return SessionMessage(message)
        if isinstance(message, JSONRPCNotification) and digest in self._pending_by_digest:
            pending = self._pending[self._pending_by_digest[digest]]
            token = _progress_token(message)
            if message.method == "notifications/progress" and token != pending.progress_token:
                logger.debug("dropped progress whose token is not its request's")
                return None
            return SessionMessage(message)
        if isinstance(message, JSONRPCNotification) and message.method == TASK_STATUS_NOTIFICATION:
            return SessionMessage(message)  # a status change of a task this connection created
        logger.debug("dropped %s: it belongs to no waiting request", getattr(message, "method", "a message"))
        return None

    def _expect(self, request: JSONRPCRequest, digest: str) -> None:
        """Remember a request about to be sent, so its answer and notifications are recognised."""
        token = ((request.params or {}).get("_meta") or {}).get("progressToken")
        if token is not None:
            self._finished_tokens.pop(token, None)  # a reused token is live again
        deadline = time.monotonic() + self.timeout if self.timeout is not None else math.inf
        self._finish(request.id)
        self._pending[request.id] = _Pending(request.method, digest, token, deadline)
        self._pending_by_digest[digest] = request.id

    def _finish(self, request_id: RequestId, *, answered: bool = False) -> _Pending | None:
        """Stop waiting for a request; its late progress and answers are dropped from now on."""
        pending = self._pending.pop(request_id, None)
        if pending is not None:
            self._keep_polling = self._keep_polling or not answered
            self._pending_by_digest.pop(pending.digest, None)
            if pending.progress_token is not None:
                _remember(self._finished_tokens, pending.progress_token, None)
        return pending

    async def _expire_overdue(self) -> None:
        """Fail each request whose deadline has passed with a timeout error naming what waited."""
        while True:
            await anyio.sleep(min(1.0, self.timeout or 1.0))
            now = time.monotonic()
            for request_id in [i for i, p in self._pending.items() if p.deadline <= now]:
                pending = self._finish(request_id)
                if pending is None:
                    continue
                message = (
                    f"no answer to {pending.method} (id {request_id!r}) from server {self.target.server!r} "
                    f"within {self.timeout:g} s; replies were awaited on {self.reply_name}. A request the "
                    "server cannot answer is in its dead-letter queue with the reason (`dmcp dlq`)."
                )
                error = ErrorData(code=REQUEST_TIMEOUT, message=message)
                logger.warning("%s", message)
                await self._tell_session(
                    SessionMessage(JSONRPCError(jsonrpc="2.0", id=request_id, error=error))
                )
                await self._tell_server_to_stop(request_id, pending.digest)

    async def _tell_server_to_stop(self, request_id: RequestId, digest: str) -> None:
        """Cancel a request the caller no longer waits for (best effort)."""
        params = {"requestId": request_id, "reason": "the client stopped waiting (request timeout)"}
        cancel = JSONRPCNotification(jsonrpc="2.0", method="notifications/cancelled", params=params)
        try:
            wire = encode_request(
                cancel,
                server=self.target.server,
                reply_to=self.reply_url,
                conn=self.conn,
                client_params=self._client_params,
                concerns=digest,
            )
            if (problem := (await self._send_all([wire]))[0]) is not None:
                raise problem
        except Exception as exc:
            logger.info("could not tell the server to stop request %r: %s", request_id, exc)

    async def _keep_alive(self) -> None:
        """Mark the per-connection queue as in use, so the orphan sweeper leaves it alone."""
        while True:
            await anyio.sleep(_TOUCH_EVERY_S)
            try:
                await self.sqs.set_queue_attributes(
                    QueueUrl=self.reply_url, Attributes={"MessageRetentionPeriod": _REPLY_RETENTION_S}
                )
            except Exception as exc:
                logger.warning("could not mark reply queue %s as in use: %s", self.reply_name, exc)

    async def _release(self, messages: list[Mapping[str, Any]]) -> None:
        """Leave other connections' replies for their owners, hidden longer each time they are
        passed over (6, 12, 24, then 30 s), so that a flood moves out of the way of this
        connection's own replies instead of coming back at the front of the queue."""
        entries = []
        for i, raw in enumerate(messages):
            receives = int(raw.get("Attributes", {}).get("ApproximateReceiveCount", 1))
            hidden = min(30, FOREIGN_FIRST_HOLD_S * 2 ** min(receives - 1, 3))
            entries.append({"Id": str(i), "ReceiptHandle": raw["ReceiptHandle"], "VisibilityTimeout": hidden})
        if not entries:
            return
        try:
            await self.sqs.change_message_visibility_batch(QueueUrl=self.reply_url, Entries=entries)
        except Exception as exc:
            logger.debug("could not hold back other connections' replies: %s", exc)

    async def _delete_handed_off(self) -> None:
        """Delete what the reader is done with, `DELETE_DELAY_S` after the first of a batch."""
        while True:
            await self._delete_wanted.wait()
            if len(self._to_delete) < _DELETE_BATCH:
                await anyio.sleep(DELETE_DELAY_S)  # the next replies join the batch
            self._delete_wanted = anyio.Event()
            await self._delete_pending()

    async def flush_deletes(self) -> None:
        """Delete at once what is still to be deleted (on close, even when cancelled)."""
        with anyio.CancelScope(shield=True), anyio.move_on_after(_FLUSH_TIMEOUT_S):
            await self._delete_pending()

    async def _delete_pending(self) -> None:
        while self._to_delete:
            batch = self._to_delete[:_DELETE_BATCH]
            entries = [{"Id": str(i), "ReceiptHandle": handle} for i, handle in enumerate(batch)]
            try:
                result = await self.sqs.delete_message_batch(QueueUrl=self.reply_url, Entries=entries)
                for failure in result.get("Failed", []):
                    logger.warning("could not delete a reply: %s", failure.get("Message"))
            except Exception as exc:  # they come back after RECEIVE_VISIBILITY_S and go then
                logger.warning("could not delete replies from %s: %s", self.reply_name, exc)
            del self._to_delete[: len(batch)]  # (only the reader adds, at the end)

    async def _write_requests(self, write_recv: MemoryObjectReceiveStream[SessionMessage]) -> None:
        """Publish the outgoing messages; those the session queued together leave in one batch
        call (`PublishBatch` or `SendMessageBatch`, ten at most). A request that cannot be sent
        is answered locally."""
        limiter = anyio.Semaphore(_PUBLISH_CONCURRENCY)
        async with write_recv, anyio.create_task_group() as tg:
            async for first in write_recv:
                batch = [first]
                while len(batch) < MAX_ENTRIES:
                    await anyio.sleep(0)  # callers woken with these queue theirs meanwhile
                    queued = _take_queued(write_recv, MAX_ENTRIES - len(batch))
                    if not queued:
                        break  # nothing joined in a loop turn: a lone message goes at once
                    batch += queued
                await limiter.acquire()
                tg.start_soon(self._publish, batch, limiter)

    async def _publish(self, batch: list[SessionMessage], limiter: anyio.Semaphore) -> None:
        try:
            prepared = [ready for m in batch if (ready := await self._prepare(m)) is not None]
            problems = await self._send_all([wire for _, wire in prepared])
            for (message, _), problem in zip(prepared, problems, strict=True):
                if problem is not None:
                    await self._could_not_send(message, problem)
                elif isinstance(message, JSONRPCRequest) and message.method not in _PROBES:
                    self._keep_polling = True  # a poll is ready for the next call's answer
            if prepared:
                self._replies_due.set()  # (after the send: making a request costs CPU on this loop)
        finally:
            limiter.release()

    async def _prepare(self, session_message: SessionMessage) -> tuple[Any, WireMessage] | None:
        """Encode an outgoing message and start waiting for its answer (None: nothing to send)."""
        message = session_message.message
        try:
            if isinstance(message, JSONRPCRequest) and message.method == "initialize":
                self._client_params = client_params_attribute(message.params)
            concerns = self._concerns(message)
            if isinstance(message, JSONRPCResponse | JSONRPCError) and concerns is None:
                logger.warning("dropped an answer to server request %r: none is open", message.id)
                return None
            wire = encode_request(
                message,
                server=self.target.server,
                reply_to=self.reply_url,
                conn=self.conn,
                protocol_version=_protocol_version_header(session_message),
                deadline_ms=int((time.time() + self.timeout) * 1000) if self.timeout is not None else None,
                client_params=self._client_params,
                concerns=concerns,
            )
            if isinstance(message, JSONRPCRequest):
                self._expect(message, request_digest(wire.body))
            elif isinstance(message, JSONRPCNotification) and message.method == "notifications/cancelled":
                cancelled = (message.params or {}).get("requestId")
                if isinstance(cancelled, str | int):
                    self._finish(cancelled)
        except Exception as exc:
            await self._could_not_send(message, exc)
            return None
        return message, wire

    async def _could_not_send(self, message: Any, problem: Exception) -> None:
        """A request that could not be sent gets its error answer here; the session hears of
        any other message that could not."""
        logger.warning("could not send %s: %s", getattr(message, "method", "message"), problem)
        if isinstance(message, JSONRPCRequest):
            self._finish(message.id)
            error = ErrorData(
                code=INTERNAL_ERROR, message=f"dMCP transport could not send the request: {problem}"
            )
            await self._tell_session(SessionMessage(JSONRPCError(jsonrpc="2.0", id=message.id, error=error)))
        else:
            await self._tell_session(problem)

    def _concerns(self, message: object) -> str | None:
        """The digest of the request an outgoing message is about: the call a cancellation
        names, or the call during which the server asked what this answers (taken once)."""
        if isinstance(message, JSONRPCResponse | JSONRPCError):
            return self._server_requests.pop(message.id, None) if message.id is not None else None
        if isinstance(message, JSONRPCNotification) and message.method == "notifications/cancelled":
            cancelled = (message.params or {}).get("requestId")
            pending = self._pending.get(cancelled) if isinstance(cancelled, str | int) else None
            return pending.digest if pending is not None else None
        return None

    async def _tell_session(self, item: SessionMessage | Exception) -> None:
        """Hand the session something the transport made up (best effort: it may be gone)."""
        if self._read_send is None:
            return
        with (
            anyio.move_on_after(1),
            contextlib.suppress(anyio.ClosedResourceError, anyio.BrokenResourceError),
        ):
            await self._read_send.send(item)

    async def _send_all(self, wires: list[WireMessage]) -> list[Exception | None]:
        """Send encoded messages to the target, each batch call carrying as many as SNS/SQS take;
        what went wrong with each (None: sent)."""
        if isinstance(self.target, TopicTarget):
            topic_arn = self.target.topic_arn
            body_key, operation = "Message", "PublishBatch"
            send_one = functools.partial(self.sns.publish, TopicArn=topic_arn)

            async def send_batch(entries: list[dict[str, Any]]) -> Any:
                return await self.sns.publish_batch(TopicArn=topic_arn, PublishBatchRequestEntries=entries)

        else:
            queue_url = self.target.queue_url
            body_key, operation = "MessageBody", "SendMessageBatch"
            send_one = functools.partial(self.sqs.send_message, QueueUrl=queue_url)

            async def send_batch(entries: list[dict[str, Any]]) -> Any:
                return await self.sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)

        entries: list[Mapping[str, Any]] = [
            {body_key: wire.body, "MessageAttributes": to_sqs_attributes(wire.attributes)} for wire in wires
        ]
        problems: list[Exception | None] = [None] * len(wires)
        for chunk in chunks(entries):
            sent = await send_chunk([entries[i] for i in chunk], send_one, send_batch, operation)
            for i, problem in zip(chunk, sent, strict=True):
                problems[i] = problem
        return problems


def _take_queued(stream: MemoryObjectReceiveStream[SessionMessage], most: int) -> list[SessionMessage]:
    """Up to `most` messages already waiting in `stream`, without waiting for more."""
    taken: list[SessionMessage] = []
    while len(taken) < most:
        try:
            taken.append(stream.receive_nowait())
        except (anyio.WouldBlock, anyio.EndOfStream):
            break
    return taken


def _remember(memory: OrderedDict[Any, Any], key: Any, value: Any) -> None:
    """Insert into a bounded memory, forgetting the oldest entries."""
    memory[key] = value
    while len(memory) > _MEMORY:
        memory.popitem(last=False)


def _error_code(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    return str(response.get("Error", {}).get("Code", "")) if isinstance(response, dict) else ""


def _progress_token(message: object) -> ProgressToken | None:
    """The token of a progress notification; None for any other message."""
    if isinstance(message, JSONRPCNotification) and message.method == "notifications/progress":
        token = (message.params or {}).get("progressToken")
        return token if isinstance(token, str | int) else None
    return None


def _protocol_version_header(session_message: SessionMessage) -> str | None:
    metadata = session_message.metadata
    if isinstance(metadata, ClientMessageMetadata) and metadata.headers:
        return metadata.headers.get(MCP_PROTOCOL_VERSION_HEADER)
    return None


def _queue_arn(target: Target, name: str) -> str:
    """The ARN a queue named `name` gets beside the target (same partition, region, account)."""
    if isinstance(target, TopicTarget):
        parts = target.topic_arn.split(":")
        return f"arn:{parts[1]}:sqs:{parts[3]}:{parts[4]}:{name}"
    url = urlsplit(target.queue_url)
    segments = url.path.strip("/").split("/")
    host = url.netloc.split(".")
    aws_region = host[1] if host[0] == "sqs" and len(host) > 2 else "*"
    # LocalStack's path strategy: /queue/<region>/<account>/<name>
    region = segments[1] if len(segments) == 4 else aws_region
    return f"arn:aws:sqs:{region}:{segments[-2]}:{name}"


def tls_only_policy(queue_arn: str) -> dict[str, Any]:
    """The queue policy every dMCP queue has: refuse any request not made over TLS."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "TlsOnly",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "sqs:*",
                "Resource": queue_arn,
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            }
        ],
    }


async def _create_reply_queue(sqs: Any, name: str, arn: str) -> str:
    """Create a per-connection reply queue, encrypted (SSE-SQS) and TLS-only from the start."""
    response = await sqs.create_queue(
        QueueName=name,
        Attributes={
            "SqsManagedSseEnabled": "true",
            "MessageRetentionPeriod": _REPLY_RETENTION_S,
            "Policy": json.dumps(tls_only_policy(arn)),
        },
    )
    return str(response["QueueUrl"])


async def _delete_reply_queue(sqs: Any, url: str) -> None:
    with anyio.CancelScope(shield=True):
        try:
            await sqs.delete_queue(QueueUrl=url)
        except Exception as exc:
            logger.warning("could not delete reply queue %s: %s", url, exc)
