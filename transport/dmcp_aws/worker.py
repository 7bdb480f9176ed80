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
import uuid
from collections.abc import Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any, Final

import aioboto3
from botocore.exceptions import ClientError
from mcp.server.lowlevel.server import Server
from mcp.server.mcpserver import MCPServer
from mcp_types import (
    INVALID_REQUEST,
    ErrorData,
    JSONRPCError,
    JSONRPCMessage,
    JSONRPCNotification,
    JSONRPCRequest,
    jsonrpc_message_adapter,
)

from dmcp_aws.errors import MissingAttribute, UnsupportedWireVersion, WireError
from dmcp_aws.idempotency import Claim, RequestIdReused, RequestInProgress, RequestLedger
from dmcp_aws.outcomes import Outcome, record_outcome
from dmcp_aws.reply_address import QueueArn, ReplyAddress, ReplyRules, validate_reply_to
from dmcp_aws.serving import serve_request
from dmcp_aws.wire import Attr, InboundMessage, decode, encode_answer, from_sqs_attributes, to_sqs_attributes

logger = logging.getLogger(__name__)

_QUEUE_GONE: Final = frozenset({"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"})
_FORBIDDEN: Final = frozenset({"AccessDenied", "AccessDeniedException", "KMS.AccessDeniedException"})
_MAX_ATTRIBUTES: Final = 10
READ_ONLY_METHODS: Final = frozenset(
    {
        "initialize",
        "ping",
        "server/discover",
        "tools/list",
        "resources/list",
        "resources/templates/list",
        "resources/read",
        "prompts/list",
        "prompts/get",
        "completion/complete",
    }
)
"""Methods MCP defines without side effects: running one twice is harmless, so they skip the
request ledger (and its two writes). `tools/call` and custom methods always go through it."""


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

    def fifo_parameters(self, request_id: object) -> dict[str, str]:
        """FIFO send parameters: one message group per request keeps its progress and result in
        order; a fresh deduplication id per message (SQS must never drop one as a duplicate)."""
        if not self.address.fifo:
            return {}
        group = hashlib.sha256(f"{self.conn}:{request_id!r}".encode()).hexdigest()
        return {"MessageGroupId": group, "MessageDeduplicationId": uuid.uuid4().hex}


@dataclass
class _LoopResources:
    """What a worker keeps open per event loop: the SQS client and the server's lifespan."""

    sqs: Any
    lifespan_state: Any
    stack: AsyncExitStack


class Worker:
    """Serves SQS records with one MCP server; one instance per Lambda function.

    It keeps an SQS client and the server's lifespan open per event loop: in Lambda (and in the
    local poller) the loop lives as long as the execution environment, so they are reused.
    """

    def __init__(
        self,
        server: MCPServer | Server[Any],
        settings: WorkerSettings,
        session: aioboto3.Session | None = None,
    ) -> None:
        self.server: Server[Any] = server._lowlevel_server if isinstance(server, MCPServer) else server
        self.settings = settings
        self._session = session or aioboto3.Session()
        self._per_loop: dict[asyncio.AbstractEventLoop, asyncio.Task[_LoopResources]] = {}
        self._queue_urls: dict[str, str] = {}
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
            await self._answer(channel, inbound, raw, Outcome.ANSWERED_WITH_ERROR)
            return
        message = inbound.message
        log |= {"jsonrpc_id": inbound.request_id, "mcp_method": getattr(message, "method", None)}
        if isinstance(message, JSONRPCNotification):
            logger.info("client notification %s needs no answer", message.method, extra=log)
            record_outcome(Outcome.CLIENT_NOTIFICATION)
        elif isinstance(message, JSONRPCRequest):
            try:
                answer, outcome = await self._serve_once(
                    resources, channel, message, attributes, lambda_context
                )
            except RequestInProgress as busy:
                # Another delivery of the same request holds the claim and will answer; if its
                # worker dies, that delivery comes back once the claim has expired.
                logger.info("duplicate delivery dropped: %s", busy, extra=log)
                record_outcome(Outcome.DUPLICATE_DROPPED)
                return
            logger.info("answered %s", message.method, extra=log | {"outcome": outcome.value})
            await self._answer(channel, answer, raw, outcome)
        else:
            problem = WireError("a client may send only requests and notifications")
            await self._dead_letter(resources.sqs, raw, problem)

    async def aclose(self) -> None:
        """Close the SQS client and server lifespan held for the running event loop."""
        task = self._per_loop.pop(asyncio.get_running_loop(), None)
        if task is not None and not task.cancelled() and task.exception() is None:
            await task.result().stack.aclose()

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
    ) -> tuple[JSONRPCMessage, Outcome]:
        """Serve a request unless the ledger holds its answer already (a duplicate delivery)."""
        if self._ledger is None or request.method in READ_ONLY_METHODS:
            return _with_outcome(await self._serve(resources, channel, request, attributes))
        claim = Claim.of(channel.conn, request.id, request.method, request.params, channel.address.url)
        remaining = getattr(lambda_context, "get_remaining_time_in_millis", None)
        try:
            stored = await self._ledger.begin(
                claim, remaining() if remaining else self.settings.default_timeout_ms
            )
        except RequestIdReused as reused:
            error = ErrorData(code=INVALID_REQUEST, message=str(reused))
            return JSONRPCError(jsonrpc="2.0", id=request.id, error=error), Outcome.ANSWERED_WITH_ERROR
        if stored is not None:
            logger.info("request %r was served already; sending its stored answer", request.id)
            return jsonrpc_message_adapter.validate_python(stored), Outcome.REPLAYED
        try:
            answer = await self._serve(resources, channel, request, attributes)
            # What is stored is what is sent: a result too large to send becomes its error.
            stored_answer = json.loads(encode_answer(answer, server=channel.server, conn=channel.conn).body)
            await self._ledger.complete(claim, stored_answer)
        except BaseException as problem:
            await self._ledger.abandon(claim, problem)
            raise
        return _with_outcome(answer)

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

    async def _answer(
        self, channel: ReplyChannel, answer: JSONRPCMessage, raw: Mapping[str, Any], outcome: Outcome
    ) -> None:
        try:
            await self._send(channel, answer, getattr(answer, "id", None))
        except UndeliverableReply as exc:
            await self._dead_letter(channel.sqs, raw, exc)
        else:
            record_outcome(outcome)

    async def _send(self, channel: ReplyChannel, message: JSONRPCMessage, request_id: object) -> None:
        """Send one message to the reply queue; raise `UndeliverableReply` if it never can arrive."""
        wire = encode_answer(message, server=channel.server, conn=channel.conn)
        try:
            await channel.sqs.send_message(
                QueueUrl=channel.address.url,
                MessageBody=wire.body,
                MessageAttributes=to_sqs_attributes(wire.attributes),
                **channel.fifo_parameters(request_id),
            )
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in _QUEUE_GONE or code in _FORBIDDEN:
                raise UndeliverableReply(f"reply queue {channel.address.name}: {code}") from exc
            raise

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
        """The DLQ named by the source queue's redrive policy."""
        source = QueueArn.parse(source_arn)
        source_url = await self._queue_url(sqs, source)
        key = f"dlq-of:{source_arn}"
        if key not in self._queue_urls:
            attributes = await sqs.get_queue_attributes(QueueUrl=source_url, AttributeNames=["RedrivePolicy"])
            policy = attributes.get("Attributes", {}).get("RedrivePolicy")
            if not policy:
                raise RuntimeError(
                    f"queue {source.name} has no dead-letter queue to move a poison message to"
                )
            self._queue_urls[key] = await self._queue_url(
                sqs, QueueArn.parse(json.loads(policy)["deadLetterTargetArn"])
            )
        return self._queue_urls[key]

    async def _queue_url(self, sqs: Any, queue: QueueArn) -> str:
        """A queue's URL from its ARN (looked up once)."""
        key = f"{queue.account}:{queue.region}:{queue.name}"
        if key not in self._queue_urls:
            found = await sqs.get_queue_url(QueueName=queue.name, QueueOwnerAWSAccountId=queue.account)
            self._queue_urls[key] = str(found["QueueUrl"])
        return self._queue_urls[key]

    async def _resources(self) -> _LoopResources:
        """The SQS client and lifespan state for the running loop, opened once per loop.

        A failed opening is forgotten, so the next record tries again; entries of closed loops
        (a caller that runs each batch on a new loop) are dropped.
        """
        loop = asyncio.get_running_loop()
        for stale in [other for other in self._per_loop if other.is_closed()]:
            del self._per_loop[stale]
        task = self._per_loop.get(loop)
        if task is None:
            task = self._per_loop[loop] = loop.create_task(self._open())
        try:
            return await asyncio.shield(task)
        except Exception:
            if self._per_loop.get(loop) is task:
                del self._per_loop[loop]
            raise

    async def _open(self) -> _LoopResources:
        async with AsyncExitStack() as stack:
            client = self._session.client("sqs", endpoint_url=self.settings.endpoint_url)
            sqs = await stack.enter_async_context(client)
            lifespan_state = await stack.enter_async_context(self.server.lifespan(self.server))
            return _LoopResources(sqs, lifespan_state, stack.pop_all())


def _with_outcome(answer: JSONRPCMessage) -> tuple[JSONRPCMessage, Outcome]:
    return answer, Outcome.ANSWERED_WITH_ERROR if isinstance(answer, JSONRPCError) else Outcome.ANSWERED


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
