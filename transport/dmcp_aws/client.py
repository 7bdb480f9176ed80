"""The client transport: MCP over SNS/SQS for `mcp.Client` and `ClientSession`.

    >>> target = TopicTarget(topic_arn="arn:aws:sns:us-east-1:123456789012:dmcp-requests", server="example")
    >>> async with Client(sqs_client_transport(target)) as client:
    ...     result = await client.call_tool("add", {"a": 1, "b": 2})

Requests go to the request topic (routed on `mcp.server`) or straight to a server's request
queue. Answers come back on a reply queue the client names: one given to it
(`reply_queue_url=`), or one it creates for the connection under the reply prefix and deletes on
close. A reader task long-polls the reply queue (no sleep between polls), hands each message to
the session and deletes it after hand-off, in batches. An AWS error or a deleted reply queue
ends the read stream with the error, so waiting calls fail instead of hanging.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any, Final

import aioboto3
import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from mcp.client._transport import TransportStreams
from mcp.shared.inbound import MCP_PROTOCOL_VERSION_HEADER
from mcp.shared.message import ClientMessageMetadata, SessionMessage
from mcp_types import (
    INTERNAL_ERROR,
    ErrorData,
    JSONRPCError,
    JSONRPCNotification,
    JSONRPCRequest,
    JSONRPCResponse,
    ProgressToken,
    RequestId,
)

from dmcp_aws.errors import WireError
from dmcp_aws.wire import Attr, decode, encode_request, from_sqs_attributes, to_sqs_attributes

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
_CLOCK_SLACK_MS: Final = 5_000


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
    connection_id: str | None = None,
) -> AsyncIterator[TransportStreams]:
    """Connect to a dMCP server over SNS/SQS; yields `(read_stream, write_stream)`.

    Args:
        target: where requests go (`TopicTarget` or `QueueTarget`).
        reply_queue_url: a provisioned reply queue; when omitted, one named
            `<reply_prefix><connection id>` is created and deleted on close.
        reply_prefix: name prefix for a created reply queue (workers answer only under it).
        session: the aioboto3 session (credentials, region); a default one otherwise.
        endpoint_url: AWS endpoint override, for local stacks.
        region_name: AWS region, when the session does not set one.
        wait_time_seconds: long-poll duration for the reply queue (1-20).
        connection_id: the `dmcp.conn` of this connection (default: 32 random hex digits);
            it correlates the connection's requests in the workers' logs.
    """
    session = session or aioboto3.Session()
    conn = connection_id or secrets.token_hex(16)
    async with AsyncExitStack() as stack:
        sqs = await stack.enter_async_context(
            session.client("sqs", endpoint_url=endpoint_url, region_name=region_name)
        )
        sns = None
        if isinstance(target, TopicTarget):
            sns = await stack.enter_async_context(
                session.client("sns", endpoint_url=endpoint_url, region_name=region_name)
            )
        if reply_queue_url is None:
            reply_queue_url = await _create_reply_queue(sqs, f"{reply_prefix}{conn}")
            stack.push_async_callback(_delete_reply_queue, sqs, reply_queue_url)
        connection = _Connection(target, conn, reply_queue_url, sqs, sns, wait_time_seconds)
        async with anyio.create_task_group() as tg:
            read_stream, write_stream = connection.start(tg)
            try:
                yield read_stream, write_stream
            finally:
                tg.cancel_scope.cancel()


class _Connection:
    """The two pumps of one transport connection and the state they share."""

    def __init__(self, target: Target, conn: str, reply_url: str, sqs: Any, sns: Any, wait_time: int) -> None:
        self.target = target
        self.conn = conn
        self.reply_url = reply_url
        self.sqs = sqs
        self.sns = sns
        self.wait_time = wait_time
        self.started_ms = int(time.time() * 1000)
        self._read_send: MemoryObjectSendStream[SessionMessage | Exception] | None = None
        self._progress_token_of: OrderedDict[RequestId, ProgressToken] = OrderedDict()
        self._finished_tokens: OrderedDict[ProgressToken, None] = OrderedDict()

    def start(self, tg: TaskGroup) -> TransportStreams:
        read_send, read_recv = anyio.create_memory_object_stream[SessionMessage | Exception](32)
        write_send, write_recv = anyio.create_memory_object_stream[SessionMessage](32)
        self._read_send = read_send
        tg.start_soon(self._read_replies, read_send)
        tg.start_soon(self._write_requests, write_recv)
        return read_recv, write_send

    async def _read_replies(self, read_send: MemoryObjectSendStream[SessionMessage | Exception]) -> None:
        """Long-poll the reply queue; hand messages to the session; delete them after hand-off."""
        async with read_send:
            failures = 0
            while True:
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

    async def _read_once(self, read_send: MemoryObjectSendStream[SessionMessage | Exception]) -> None:
        response = await self.sqs.receive_message(
            QueueUrl=self.reply_url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=self.wait_time,
            MessageAttributeNames=["All"],
            AttributeNames=["SentTimestamp"],
        )
        handed_off: list[Mapping[str, Any]] = []
        for raw in response.get("Messages", []):
            attributes = from_sqs_attributes(raw.get("MessageAttributes"))
            if attributes.get(Attr.CONN) != self.conn and not self._stale(raw):
                await self._release(raw)  # another live connection's reply: leave it to its owner
                continue
            item = self._accept(raw, attributes)
            if item is not None:
                await read_send.send(item)
            handed_off.append(raw)
        if handed_off:
            await self._delete(handed_off)

    def _stale(self, raw: Mapping[str, Any]) -> bool:
        """Whether a message was sent before this connection started (no live owner is waiting)."""
        sent = raw.get("Attributes", {}).get("SentTimestamp")
        return sent is not None and int(sent) < self.started_ms - _CLOCK_SLACK_MS

    def _accept(
        self, raw: Mapping[str, Any], attributes: Mapping[str, str]
    ) -> SessionMessage | Exception | None:
        """What to hand to the session for one received message (None: drop it)."""
        if attributes.get(Attr.CONN) != self.conn:
            logger.debug("dropped a stale reply of an earlier connection (%s)", attributes.get(Attr.CONN))
            return None
        try:
            inbound = decode(raw.get("Body", ""), attributes)
        except WireError as exc:
            return exc
        message = inbound.message
        if isinstance(message, JSONRPCResponse | JSONRPCError) and message.id is not None:
            token = self._progress_token_of.pop(message.id, None)
            if token is not None:
                _remember(self._finished_tokens, token, None)
        elif _progress_token(message) in self._finished_tokens:
            logger.debug("dropped progress that arrived after its result")
            return None
        return SessionMessage(message)

    async def _release(self, raw: Mapping[str, Any]) -> None:
        try:
            await self.sqs.change_message_visibility(
                QueueUrl=self.reply_url, ReceiptHandle=raw["ReceiptHandle"], VisibilityTimeout=1
            )
        except Exception as exc:
            logger.debug("could not release another connection's reply: %s", exc)

    async def _delete(self, messages: list[Mapping[str, Any]]) -> None:
        entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)]
        result = await self.sqs.delete_message_batch(QueueUrl=self.reply_url, Entries=entries)
        for failure in result.get("Failed", []):
            logger.warning("could not delete a reply: %s", failure.get("Message"))

    async def _write_requests(self, write_recv: MemoryObjectReceiveStream[SessionMessage]) -> None:
        """Publish each outgoing message; a request that cannot be sent is answered locally."""
        limiter = anyio.Semaphore(_PUBLISH_CONCURRENCY)
        async with write_recv, anyio.create_task_group() as tg:
            async for session_message in write_recv:
                await limiter.acquire()
                tg.start_soon(self._publish_one, session_message, limiter)

    async def _publish_one(self, session_message: SessionMessage, limiter: anyio.Semaphore) -> None:
        message = session_message.message
        try:
            if isinstance(message, JSONRPCRequest):
                token = ((message.params or {}).get("_meta") or {}).get("progressToken")
                if token is not None:
                    self._finished_tokens.pop(token, None)  # a reused token is live again
                    _remember(self._progress_token_of, message.id, token)
            wire = encode_request(
                message,
                server=self.target.server,
                reply_to=self.reply_url,
                conn=self.conn,
                protocol_version=_protocol_version_header(session_message),
            )
            await self._send(wire.body, wire.attributes)
        except Exception as exc:
            logger.warning("could not send %s: %s", getattr(message, "method", "message"), exc)
            if isinstance(message, JSONRPCRequest):
                self._progress_token_of.pop(message.id, None)
                error = ErrorData(
                    code=INTERNAL_ERROR, message=f"dMCP transport could not send the request: {exc}"
                )
                await self._tell_session(
                    SessionMessage(JSONRPCError(jsonrpc="2.0", id=message.id, error=error))
                )
            else:
                await self._tell_session(exc)
        finally:
            limiter.release()

    async def _tell_session(self, item: SessionMessage | Exception) -> None:
        """Hand the session something the transport made up (best effort: it may be gone)."""
        if self._read_send is None:
            return
        with (
            anyio.move_on_after(1),
            contextlib.suppress(anyio.ClosedResourceError, anyio.BrokenResourceError),
        ):
            await self._read_send.send(item)

    async def _send(self, body: str, attributes: dict[str, str]) -> None:
        if isinstance(self.target, TopicTarget):
            await self.sns.publish(
                TopicArn=self.target.topic_arn, Message=body, MessageAttributes=to_sqs_attributes(attributes)
            )
        else:
            await self.sqs.send_message(
                QueueUrl=self.target.queue_url,
                MessageBody=body,
                MessageAttributes=to_sqs_attributes(attributes),
            )


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


async def _create_reply_queue(sqs: Any, name: str) -> str:
    response = await sqs.create_queue(
        QueueName=name,
        Attributes={"SqsManagedSseEnabled": "true", "MessageRetentionPeriod": "3600"},
    )
    return str(response["QueueUrl"])


async def _delete_reply_queue(sqs: Any, url: str) -> None:
    with anyio.CancelScope(shield=True):
        try:
            await sqs.delete_queue(QueueUrl=url)
        except Exception as exc:
            logger.warning("could not delete reply queue %s: %s", url, exc)
