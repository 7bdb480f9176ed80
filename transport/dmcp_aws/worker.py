"""The worker runtime: serve SQS records (the Lambda event shape) with one MCP server.

    >>> worker = Worker(mcp_server, WorkerSettings.from_env())
    >>> await worker.handle_record(record)   # raises only for failures worth retrying

For each record: check the reply address, decode, serve the request in its protocol
generation, send request-scoped notifications and then the response to `dmcp.reply-to`.
A record that cannot be answered (undecodable, no or forbidden reply address) is moved to the
source queue's dead-letter queue at once with the reason in `dmcp.dlq-reason`; a transient
failure raises, so the batch reports it and SQS redelivers it.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import logging
import os
import weakref
from collections.abc import Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any, Final

import aioboto3
from botocore.exceptions import ClientError
from mcp.server.lowlevel.server import Server
from mcp.server.mcpserver import MCPServer
from mcp_types import (
    INTERNAL_ERROR,
    INVALID_REQUEST,
    ErrorData,
    JSONRPCError,
    JSONRPCMessage,
    JSONRPCNotification,
    JSONRPCRequest,
)

from dmcp_aws.errors import MissingAttribute, PayloadTooLarge, UnsupportedWireVersion, WireError
from dmcp_aws.reply_address import QueueArn, ReplyAddress, ReplyRules, validate_reply_to
from dmcp_aws.serving import serve_request
from dmcp_aws.wire import (
    Attr,
    InboundMessage,
    decode,
    encode_reply,
    from_sqs_attributes,
    to_sqs_attributes,
)

logger = logging.getLogger(__name__)

_QUEUE_GONE: Final = frozenset({"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"})
_FORBIDDEN: Final = frozenset({"AccessDenied", "AccessDeniedException", "KMS.AccessDeniedException"})
_MAX_ATTRIBUTES: Final = 10


class UndeliverableReply(Exception):
    """The reply queue is gone or refuses us: retrying cannot help."""

    reason = "reply-undeliverable"


@dataclass(frozen=True)
class WorkerSettings:
    """What a worker needs beyond its server: where it may reply.

    `reply_prefix` is the deployment's reply-queue name prefix; `endpoint_url` is set only for
    local stacks (moto, LocalStack). `server_name` is the deployment's name for the server, used
    to refuse requests addressed to another server.
    """

    reply_prefix: str
    endpoint_url: str | None = None
    server_name: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> WorkerSettings:
        """Read `DMCP_REPLY_PREFIX`, `DMCP_SERVER_NAME` and the AWS endpoint override."""
        prefix = environ.get("DMCP_REPLY_PREFIX")
        if not prefix:
            raise RuntimeError("DMCP_REPLY_PREFIX is not set: the worker does not know where it may reply")
        endpoint = environ.get("AWS_ENDPOINT_URL_SQS") or environ.get("AWS_ENDPOINT_URL") or None
        return cls(reply_prefix=prefix, endpoint_url=endpoint, server_name=environ.get("DMCP_SERVER_NAME"))


@dataclass
class _LoopResources:
    """What a worker keeps open per event loop: the SQS client and the server's lifespan."""

    sqs: Any
    lifespan_state: Any
    stack: AsyncExitStack


class Worker:
    """Serves SQS records with one MCP server; one instance per Lambda function."""

    def __init__(
        self,
        server: MCPServer | Server[Any],
        settings: WorkerSettings,
        session: aioboto3.Session | None = None,
    ) -> None:
        self.server: Server[Any] = server._lowlevel_server if isinstance(server, MCPServer) else server
        self.settings = settings
        self._session = session or aioboto3.Session()
        self._per_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Task[_LoopResources]] = (
            weakref.WeakKeyDictionary()
        )
        self._dead_letter_urls: dict[str, str] = {}
        self._sequence = itertools.count()

    async def handle_record(self, record: Any) -> None:
        """Serve one SQS record (a powertools `SQSRecord` or the raw Lambda record dict)."""
        raw: Mapping[str, Any] = getattr(record, "raw_event", record)
        resources = await self._resources()
        attributes = from_sqs_attributes(raw.get("messageAttributes"))
        source = QueueArn.parse(raw["eventSourceARN"])
        rules = ReplyRules(
            source.account, source.region, self.settings.reply_prefix, self.settings.endpoint_url
        )
        log = {"message_id": raw.get("messageId"), "dmcp_conn": attributes.get(Attr.CONN)}
        try:
            reply = validate_reply_to(attributes.get(Attr.REPLY_TO), rules)
            conn = attributes.get(Attr.CONN) or _missing(Attr.CONN)
            inbound = self._decode_or_answer(raw["body"], attributes)
        except (WireError, UndeliverableReply) as exc:
            await self._dead_letter(resources.sqs, raw, exc)
            return
        if isinstance(inbound, JSONRPCError):
            await self._answer(resources.sqs, reply, conn, inbound, raw)
            return
        message = inbound.message
        log |= {"jsonrpc_id": inbound.request_id, "mcp_method": getattr(message, "method", None)}
        if isinstance(message, JSONRPCNotification):
            logger.info("client notification %s needs no answer", message.method, extra=log)
            return
        if not isinstance(message, JSONRPCRequest):
            await self._dead_letter(
                resources.sqs, raw, WireError("a client may send only requests and notifications")
            )
            return
        answer = await self._serve(resources, reply, conn, message, attributes)
        logger.info("answered %s", message.method, extra=log | {"error": isinstance(answer, JSONRPCError)})
        await self._answer(resources.sqs, reply, conn, answer, raw)

    async def aclose(self) -> None:
        """Close the SQS client and server lifespan held for the running event loop."""
        task = self._per_loop.pop(asyncio.get_running_loop(), None)
        if task is not None:
            await (await task).stack.aclose()

    def _decode_or_answer(self, body: str, attributes: Mapping[str, str]) -> InboundMessage | JSONRPCError:
        """Decode a record; an undecodable one that still has an id becomes its error reply."""
        try:
            inbound = decode(body, attributes)
        except UnsupportedWireVersion:
            raise
        except WireError as exc:
            if exc.request_id is None:
                raise
            return JSONRPCError(
                jsonrpc="2.0", id=exc.request_id, error=ErrorData(code=INVALID_REQUEST, message=str(exc))
            )
        addressed_to = inbound.attribute(Attr.SERVER)
        expected = self.settings.server_name
        if expected and addressed_to and addressed_to != expected and inbound.request_id is not None:
            message = f"this queue serves {expected!r}; the request is for {addressed_to!r}"
            return JSONRPCError(
                jsonrpc="2.0", id=inbound.request_id, error=ErrorData(code=INVALID_REQUEST, message=message)
            )
        return inbound

    async def _serve(
        self,
        resources: _LoopResources,
        reply: ReplyAddress,
        conn: str,
        request: JSONRPCRequest,
        attributes: Mapping[str, str],
    ) -> JSONRPCMessage:
        async def notify(notification: JSONRPCNotification) -> None:
            try:
                await self._send(resources.sqs, reply, conn, notification, group=str(request.id))
            except Exception:
                # Notifications are advisory: a lost one must not fail the request.
                logger.warning("could not deliver %s to %s", notification.method, reply.name, exc_info=True)

        return await serve_request(
            self.server,
            request,
            notify=notify,
            lifespan_state=resources.lifespan_state,
            protocol_hint=attributes.get(Attr.PROTOCOL_VERSION),
        )

    async def _answer(
        self, sqs: Any, reply: ReplyAddress, conn: str, answer: JSONRPCMessage, raw: Mapping[str, Any]
    ) -> None:
        try:
            await self._send(sqs, reply, conn, answer, group=str(getattr(answer, "id", "")))
        except UndeliverableReply as exc:
            await self._dead_letter(sqs, raw, exc)

    async def _send(
        self, sqs: Any, reply: ReplyAddress, conn: str, message: JSONRPCMessage, group: str
    ) -> None:
        """Send one message to the reply queue; raise `UndeliverableReply` if it never can arrive."""
        server = self.settings.server_name or self.server.name
        try:
            wire = encode_reply(message, server=server, conn=conn)
        except PayloadTooLarge as exc:
            if not isinstance(message, JSONRPCNotification) and getattr(message, "id", None) is not None:
                error = ErrorData(code=INTERNAL_ERROR, message=f"the result is too large to send: {exc}")
                wire = encode_reply(
                    JSONRPCError(jsonrpc="2.0", id=message.id, error=error), server=server, conn=conn
                )  # type: ignore[union-attr]
            else:
                raise
        params: dict[str, Any] = {
            "QueueUrl": reply.url,
            "MessageBody": wire.body,
            "MessageAttributes": to_sqs_attributes(wire.attributes),
        }
        if reply.fifo:
            params["MessageGroupId"] = f"{conn}:{group}"[:128]
            params["MessageDeduplicationId"] = _dedup_id(conn, group, next(self._sequence))
        try:
            await sqs.send_message(**params)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in _QUEUE_GONE or code in _FORBIDDEN:
                raise UndeliverableReply(f"reply queue {reply.name}: {code}") from exc
            raise

    async def _dead_letter(self, sqs: Any, raw: Mapping[str, Any], problem: Exception) -> None:
        """Move a record to its source queue's DLQ at once, with the reason as an attribute."""
        reason = f"{getattr(problem, 'reason', 'error')}: {problem}"[:1024]
        original = from_sqs_attributes(raw.get("messageAttributes"))
        kept = dict(itertools.islice(original.items(), _MAX_ATTRIBUTES - 1))
        kept[Attr.DLQ_REASON.value] = reason
        url = await self._dead_letter_url(sqs, raw["eventSourceARN"])
        await sqs.send_message(
            QueueUrl=url, MessageBody=raw["body"] or "(empty)", MessageAttributes=to_sqs_attributes(kept)
        )
        logger.warning("moved message %s to the dead-letter queue: %s", raw.get("messageId"), reason)

    async def _dead_letter_url(self, sqs: Any, source_arn: str) -> str:
        """The DLQ named by the source queue's redrive policy (looked up once per queue)."""
        if source_arn not in self._dead_letter_urls:
            source = QueueArn.parse(source_arn)
            source_url = (
                await sqs.get_queue_url(QueueName=source.name, QueueOwnerAWSAccountId=source.account)
            )["QueueUrl"]
            attributes = await sqs.get_queue_attributes(QueueUrl=source_url, AttributeNames=["RedrivePolicy"])
            policy = attributes.get("Attributes", {}).get("RedrivePolicy")
            if not policy:
                raise RuntimeError(
                    f"queue {source.name} has no dead-letter queue; cannot move a poison message"
                )
            target = QueueArn.parse(json.loads(policy)["deadLetterTargetArn"])
            found = await sqs.get_queue_url(QueueName=target.name, QueueOwnerAWSAccountId=target.account)
            self._dead_letter_urls[source_arn] = found["QueueUrl"]
        return self._dead_letter_urls[source_arn]

    async def _resources(self) -> _LoopResources:
        """The SQS client and lifespan state for the running loop, opened once per loop."""
        loop = asyncio.get_running_loop()
        task = self._per_loop.get(loop)
        if task is None:
            task = self._per_loop[loop] = loop.create_task(self._open())
        return await task

    async def _open(self) -> _LoopResources:
        stack = AsyncExitStack()
        sqs = await stack.enter_async_context(
            self._session.client("sqs", endpoint_url=self.settings.endpoint_url)
        )
        lifespan_state = await stack.enter_async_context(self.server.lifespan(self.server))
        return _LoopResources(sqs, lifespan_state, stack)


def _missing(name: Attr) -> str:
    raise MissingAttribute(f"message attribute {name.value} is required")


def _dedup_id(conn: str, group: str, sequence: int) -> str:
    return hashlib.sha256(f"{conn}:{group}:{sequence}".encode()).hexdigest()
