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
from dataclasses import dataclass, field
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
    jsonrpc_message_adapter,
)

from dmcp_aws.errors import MissingAttribute, PayloadTooLarge, UnsupportedWireVersion, WireError
from dmcp_aws.idempotency import RequestInProgress, RequestLedger
from dmcp_aws.outcomes import Outcome, record_outcome
from dmcp_aws.reply_address import QueueArn, ReplyAddress, ReplyRules, validate_reply_to
from dmcp_aws.serving import serve_request
from dmcp_aws.wire import Attr, InboundMessage, decode, encode_reply, from_sqs_attributes, to_sqs_attributes

logger = logging.getLogger(__name__)

_QUEUE_GONE: Final = frozenset({"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"})
_FORBIDDEN: Final = frozenset({"AccessDenied", "AccessDeniedException", "KMS.AccessDeniedException"})
_MAX_ATTRIBUTES: Final = 10
RETRY_IN_PROGRESS_AFTER_S: Final = 5
"""A duplicate of a request another worker is serving is retried this soon, not after the full
visibility timeout."""


class UndeliverableReply(Exception):
    """The reply queue is gone or refuses us: retrying cannot help."""

    reason = "reply-undeliverable"


@dataclass(frozen=True)
class WorkerSettings:
    """What a worker needs beyond its server.

    `reply_prefix` is the deployment's reply-queue name prefix; `endpoint_url` is set only for
    local stacks (moto, LocalStack).
    """

    reply_prefix: str
    endpoint_url: str | None = None
    idempotency_table: str | None = None
    """DynamoDB table of the request ledger; None serves every delivery (at least once)."""
    default_timeout_ms: int = 30_000
    """How long a claim on a request lasts when no Lambda context tells the remaining time."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> WorkerSettings:
        """Read `DMCP_REPLY_PREFIX`, `DMCP_IDEMPOTENCY_TABLE` and the AWS endpoint override."""
        prefix = environ.get("DMCP_REPLY_PREFIX")
        if not prefix:
            raise RuntimeError("DMCP_REPLY_PREFIX is not set: the worker does not know where it may reply")
        return cls(
            reply_prefix=prefix,
            endpoint_url=environ.get("AWS_ENDPOINT_URL_SQS") or environ.get("AWS_ENDPOINT_URL") or None,
            idempotency_table=environ.get("DMCP_IDEMPOTENCY_TABLE") or None,
        )


@dataclass(frozen=True)
class ReplyChannel:
    """Where and how to answer one request."""

    address: ReplyAddress
    conn: str
    server: str
    sqs: Any

    def group(self, request_id: object) -> str:
        """The FIFO message group of a request's replies: its progress and result stay in order."""
        return f"{self.conn}:{request_id}"[:128]


@dataclass
class _LoopResources:
    """What a worker keeps open per event loop: the SQS client and the server's lifespan."""

    sqs: Any
    lifespan_state: Any
    stack: AsyncExitStack
    in_flight: dict[str, asyncio.Event] = field(default_factory=dict)
    """Requests being served on this loop, so a duplicate in the same batch waits for the first."""


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
        self._ledger = (
            RequestLedger(settings.idempotency_table, function_name=self.server.name)
            if settings.idempotency_table
            else None
        )

    async def handle_record(self, record: Any, lambda_context: Any = None) -> None:
        """Serve one SQS record (a powertools `SQSRecord` or the raw Lambda record dict)."""
        raw: Mapping[str, Any] = getattr(record, "raw_event", record)
        resources = await self._resources()
        attributes = from_sqs_attributes(raw.get("messageAttributes"))
        log = {"message_id": raw.get("messageId"), "dmcp_conn": attributes.get(Attr.CONN)}
        try:
            channel = self._reply_channel(resources.sqs, raw["eventSourceARN"], attributes)
            inbound = _decode_or_answer(raw["body"], attributes)
        except WireError as exc:
            await self._dead_letter(resources.sqs, raw, exc)
            return
        if isinstance(inbound, JSONRPCError):
            await self._answer(channel, inbound, raw)
            return
        message = inbound.message
        log |= {"jsonrpc_id": inbound.request_id, "mcp_method": getattr(message, "method", None)}
        if isinstance(message, JSONRPCNotification):
            logger.info("client notification %s needs no answer", message.method, extra=log)
            record_outcome(Outcome.CLIENT_NOTIFICATION)
        elif isinstance(message, JSONRPCRequest):
            try:
                answer = await self._serve_once(resources, channel, message, attributes, lambda_context)
            except RequestInProgress:
                await self._retry_soon(resources.sqs, raw)
                raise
            failed = isinstance(answer, JSONRPCError)
            logger.info("answered %s", message.method, extra=log | {"error": failed})
            await self._answer(channel, answer, raw)
            record_outcome(Outcome.ANSWERED_WITH_ERROR if failed else Outcome.ANSWERED)
        else:
            problem = WireError("a client may send only requests and notifications")
            await self._dead_letter(resources.sqs, raw, problem)

    async def aclose(self) -> None:
        """Close the SQS client and server lifespan held for the running event loop."""
        task = self._per_loop.pop(asyncio.get_running_loop(), None)
        if task is not None:
            await (await task).stack.aclose()

    def _reply_channel(self, sqs: Any, source_arn: str, attributes: Mapping[str, str]) -> ReplyChannel:
        """Validate where a request wants its answer; raise a `WireError` if nowhere allowed."""
        source = QueueArn.parse(source_arn)
        rules = ReplyRules(
            source.account, source.region, self.settings.reply_prefix, self.settings.endpoint_url
        )
        address = validate_reply_to(attributes.get(Attr.REPLY_TO), rules)
        conn = attributes.get(Attr.CONN)
        if not conn:
            raise MissingAttribute(f"message attribute {Attr.CONN.value} is required")
        return ReplyChannel(address, conn, attributes.get(Attr.SERVER) or self.server.name, sqs)

    async def _serve_once(
        self,
        resources: _LoopResources,
        channel: ReplyChannel,
        request: JSONRPCRequest,
        attributes: Mapping[str, str],
        lambda_context: Any,
    ) -> JSONRPCMessage:
        """Serve a request unless the ledger holds its answer already (a duplicate delivery)."""
        if self._ledger is None:
            return await self._serve(resources, channel, request, attributes)
        key = {"conn": channel.conn, "id": request.id}
        local_key = json.dumps(key, sort_keys=True)
        while (first := resources.in_flight.get(local_key)) is not None:
            await first.wait()
        resources.in_flight[local_key] = done = asyncio.Event()
        try:
            remaining = getattr(lambda_context, "get_remaining_time_in_millis", None)
            claim_ms = remaining() if remaining else self.settings.default_timeout_ms
            stored = await self._ledger.begin(key, claim_ms)
            if stored is not None:
                logger.info("request %r was served already; sending its stored answer", request.id)
                record_outcome(Outcome.REPLAYED)
                return jsonrpc_message_adapter.validate_python(stored)
            answer = await self._serve(resources, channel, request, attributes)
            await self._ledger.complete(
                key, answer.model_dump(mode="json", by_alias=True, exclude_unset=True)
            )
            return answer
        finally:
            del resources.in_flight[local_key]
            done.set()

    async def _serve(
        self,
        resources: _LoopResources,
        channel: ReplyChannel,
        request: JSONRPCRequest,
        attributes: Mapping[str, str],
    ) -> JSONRPCMessage:
        async def notify(notification: JSONRPCNotification) -> None:
            try:
                await self._send(channel, notification, request.id)
            except Exception:
                # Notifications are advisory: a lost one must not fail the request.
                logger.warning(
                    "could not deliver %s to %s", notification.method, channel.address.name, exc_info=True
                )

        return await serve_request(
            self.server,
            request,
            notify=notify,
            lifespan_state=resources.lifespan_state,
            protocol_hint=attributes.get(Attr.PROTOCOL_VERSION),
        )

    async def _answer(self, channel: ReplyChannel, answer: JSONRPCMessage, raw: Mapping[str, Any]) -> None:
        try:
            await self._send(channel, answer, getattr(answer, "id", None))
        except UndeliverableReply as exc:
            await self._dead_letter(channel.sqs, raw, exc)

    async def _send(self, channel: ReplyChannel, message: JSONRPCMessage, request_id: object) -> None:
        """Send one message to the reply queue; raise `UndeliverableReply` if it never can arrive."""
        try:
            wire = encode_reply(message, server=channel.server, conn=channel.conn)
        except PayloadTooLarge as exc:
            if not isinstance(message, JSONRPCNotification) and request_id is not None:
                error = ErrorData(code=INTERNAL_ERROR, message=f"the result is too large to send: {exc}")
                too_large = JSONRPCError(jsonrpc="2.0", id=request_id, error=error)  # type: ignore[arg-type]
                wire = encode_reply(too_large, server=channel.server, conn=channel.conn)
            else:
                raise
        params: dict[str, Any] = {
            "QueueUrl": channel.address.url,
            "MessageBody": wire.body,
            "MessageAttributes": to_sqs_attributes(wire.attributes),
        }
        if channel.address.fifo:
            params["MessageGroupId"] = channel.group(request_id)
            params["MessageDeduplicationId"] = _dedup_id(channel.group(request_id), next(self._sequence))
        try:
            await channel.sqs.send_message(**params)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in _QUEUE_GONE or code in _FORBIDDEN:
                raise UndeliverableReply(f"reply queue {channel.address.name}: {code}") from exc
            raise

    async def _retry_soon(self, sqs: Any, raw: Mapping[str, Any]) -> None:
        """Shorten a record's visibility so its redelivery comes soon (best effort)."""
        try:
            url = await _queue_url(sqs, QueueArn.parse(raw["eventSourceARN"]))
            await sqs.change_message_visibility(
                QueueUrl=url, ReceiptHandle=raw["receiptHandle"], VisibilityTimeout=RETRY_IN_PROGRESS_AFTER_S
            )
        except Exception:
            logger.warning(
                "could not shorten the visibility of message %s", raw.get("messageId"), exc_info=True
            )

    async def _dead_letter(self, sqs: Any, raw: Mapping[str, Any], problem: Exception) -> None:
        """Move a record to its source queue's DLQ at once, with the reason as an attribute."""
        reason = f"{getattr(problem, 'reason', 'error')}: {problem}"[:1024]
        original = from_sqs_attributes(raw.get("messageAttributes"))
        kept = dict(itertools.islice(original.items(), _MAX_ATTRIBUTES - 1))
        kept[Attr.DLQ_REASON.value] = reason
        url = await self._dead_letter_url(sqs, raw["eventSourceARN"])
        body = raw["body"] or "(empty)"
        await sqs.send_message(QueueUrl=url, MessageBody=body, MessageAttributes=to_sqs_attributes(kept))
        logger.warning("moved message %s to the dead-letter queue: %s", raw.get("messageId"), reason)
        record_outcome(Outcome.DEAD_LETTERED)

    async def _dead_letter_url(self, sqs: Any, source_arn: str) -> str:
        """The DLQ named by the source queue's redrive policy (looked up once per queue)."""
        if source_arn not in self._dead_letter_urls:
            source = QueueArn.parse(source_arn)
            source_url = await _queue_url(sqs, source)
            attributes = await sqs.get_queue_attributes(QueueUrl=source_url, AttributeNames=["RedrivePolicy"])
            policy = attributes.get("Attributes", {}).get("RedrivePolicy")
            if not policy:
                raise RuntimeError(
                    f"queue {source.name} has no dead-letter queue to move a poison message to"
                )
            target = QueueArn.parse(json.loads(policy)["deadLetterTargetArn"])
            self._dead_letter_urls[source_arn] = await _queue_url(sqs, target)
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
        client = self._session.client("sqs", endpoint_url=self.settings.endpoint_url)
        sqs = await stack.enter_async_context(client)
        lifespan_state = await stack.enter_async_context(self.server.lifespan(self.server))
        return _LoopResources(sqs, lifespan_state, stack)


def _decode_or_answer(body: str, attributes: Mapping[str, str]) -> InboundMessage | JSONRPCError:
    """Decode a record; an undecodable one that still has an id becomes its error reply."""
    try:
        return decode(body, attributes)
    except UnsupportedWireVersion:
        raise
    except WireError as exc:
        if exc.request_id is None:
            raise
        error = ErrorData(code=INVALID_REQUEST, message=str(exc))
        return JSONRPCError(jsonrpc="2.0", id=exc.request_id, error=error)


async def _queue_url(sqs: Any, queue: QueueArn) -> str:
    found = await sqs.get_queue_url(QueueName=queue.name, QueueOwnerAWSAccountId=queue.account)
    return str(found["QueueUrl"])


def _dedup_id(group: str, sequence: int) -> str:
    return hashlib.sha256(f"{group}:{sequence}".encode()).hexdigest()
