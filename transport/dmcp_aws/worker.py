"""The worker runtime: serve SQS records (the Lambda event shape) with one MCP server.

    >>> worker = Worker(mcp_server, WorkerSettings.from_env())
    >>> await worker.handle_record(record)   # raises only for failures worth retrying

For each record: check the reply address, decode, serve the request in its protocol
generation, send request-scoped notifications and then the response to `dmcp.reply-to`, each
reply carrying the request's digest (`dmcp.request-digest`) so the client can tell it belongs to
a request it sent. Every record ends in exactly one visible outcome:
- answered (a result or a JSON-RPC error with the request's own id);
- dead-lettered at once with the reason in `dmcp.dlq-reason` when it cannot be answered
  (undecodable, no or forbidden reply address, an id no reply can carry, a reply queue that
  refuses us);
- retried (the record is reported failed) after a transient failure; on its last allowed
  delivery the client is answered with an error and the record dead-lettered with the reason;
- deferred, when another delivery of the same request holds its claim in the ledger: hidden
  until that claim ends, never deleted while the request is unanswered;
- cancelled by its client (`notifications/cancelled`): the handler is cancelled wherever it
  runs, nothing is sent (as MCP asks), and the request never runs again.

Client notifications reach the server's notification handlers; a client's answers to the
server's own requests (handshake era: sampling, elicitation, roots, ping) reach the worker that
waits for them through the back channel (`dmcp_aws.back_channel`).
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import logging
import os
import time
import uuid
from collections.abc import Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import anyio
from botocore.exceptions import ClientError
from mcp.server.lowlevel.server import Server
from mcp.server.mcpserver import MCPServer
from mcp.shared.exceptions import MCPError
from mcp_types import (
    INTERNAL_ERROR,
    INVALID_REQUEST,
    REQUEST_TIMEOUT,
    ErrorData,
    JSONRPCError,
    JSONRPCMessage,
    JSONRPCNotification,
    JSONRPCRequest,
    JSONRPCResponse,
    jsonrpc_message_adapter,
)
from mcp_types.version import LATEST_MODERN_VERSION

from dmcp_aws.back_channel import AnswerSlots, answer_key, new_server_request_id
from dmcp_aws.batching import ReplyBatcher
from dmcp_aws.errors import MissingAttribute, UnsupportedWireVersion, WireError
from dmcp_aws.idempotency import Claim, RequestInProgress, RequestLedger, is_cancelled
from dmcp_aws.naming import CONNECTION_QUEUE_PREFIX, LAST_WORD_DELIVERIES, TASKS_TABLE_VARIABLE, UNROUTED
from dmcp_aws.outcomes import Outcome, record_outcome
from dmcp_aws.reply_address import QueueArn, ReplyAddress, ReplyRules, validate_reply_to
from dmcp_aws.request_context import QueueRequest, serving
from dmcp_aws.run_once import ToolHints
from dmcp_aws.serving import AskClient, deliver_notification, serve_request
from dmcp_aws.threaded_aws import AsyncAwsSession, ThreadedSession
from dmcp_aws.wire import (
    Attr,
    InboundMessage,
    check_answerable,
    decode,
    dump_message,
    encode_answer,
    from_sqs_attributes,
    parse_client_params,
    request_digest,
    to_sqs_attributes,
)

if TYPE_CHECKING:
    from dmcp_aws.tasks.runner import TaskPort, TaskWorker

logger = logging.getLogger(__name__)

_QUEUE_GONE: Final = frozenset({"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"})
_FORBIDDEN: Final = frozenset({"AccessDenied", "AccessDeniedException", "KMS.AccessDeniedException"})
_MAX_ATTRIBUTES: Final = 10
_DEFER_SLACK_S: Final = 2
"""Seconds a deferred duplicate stays hidden beyond the holder's claim."""
_MAX_VISIBILITY_S: Final = 12 * 3600
CANCELLATION_CHECK_S: Final = 1.0
"""How often a running request (with a ledger) looks for its client's cancellation, which any
worker of the server may have received."""
SHARED_LEDGER_NAMESPACE: Final = "*"
"""Ledger key namespace shared by all the deployment's workers (server names never contain `*`)."""


def conn_ref(conn: str | None) -> str | None:
    """A short, non-reversible name of a connection for logs and dead letters (never the secret)."""
    return hashlib.sha256(conn.encode("utf-8", "surrogatepass")).hexdigest()[:12] if conn else None


class UndeliverableReply(Exception):
    """The reply queue is gone or refuses us: retrying cannot help."""

    reason = "reply-undeliverable"

    def __init__(self, message: str, *, queue_gone: bool = False) -> None:
        super().__init__(message)
        self.queue_gone = queue_gone


@dataclass(frozen=True)
class WorkerSettings:
    """What a worker needs beyond its server.

    `reply_prefix` is the deployment's reply-queue name prefix; `endpoint_url` is set only for
    local stacks (moto, LocalStack).
    """

    reply_prefix: str
    endpoint_url: str | None = None
    dynamodb_endpoint_url: str | None = None
    idempotency_table: str | None = None
    """DynamoDB table of the request ledger; None serves every delivery (at least once)."""
    default_timeout_ms: int = 30_000
    """How long a claim on a request lasts when no Lambda context tells the remaining time."""
    answer_margin_ms: int = 2_000
    """Time kept back from the function timeout to send an answer or a dead letter."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> WorkerSettings:
        """Read `DMCP_REPLY_PREFIX`, `DMCP_IDEMPOTENCY_TABLE` and the AWS endpoint override."""
        prefix = environ.get("DMCP_REPLY_PREFIX")
        if not prefix:
            raise RuntimeError("DMCP_REPLY_PREFIX is not set: the worker does not know where it may reply")
        return cls(
            reply_prefix=prefix,
            endpoint_url=environ.get("AWS_ENDPOINT_URL_SQS") or environ.get("AWS_ENDPOINT_URL") or None,
            dynamodb_endpoint_url=environ.get("AWS_ENDPOINT_URL_DYNAMODB")
            or environ.get("AWS_ENDPOINT_URL")
            or None,
            idempotency_table=environ.get("DMCP_IDEMPOTENCY_TABLE") or None,
        )


@dataclass(frozen=True)
class ReplyChannel:
    """Where and how to answer one request."""

    address: ReplyAddress
    conn: str
    server: str
    sqs: Any
    replies: ReplyBatcher
    """Sends the replies (several records' replies to one queue may leave as one batch)."""
    digest: str
    """`request_digest` of the request being answered; every reply carries it."""
    per_connection: bool
    """Whether the queue is a per-connection one (deleted by its client when it leaves)."""

    def fifo_parameters(self, request_id: object) -> dict[str, str]:
        """FIFO send parameters: one message group per request keeps its progress and result in
        order; a fresh deduplication id per message (SQS must never drop one as a duplicate)."""
        if not self.address.fifo:
            return {}
        group = hashlib.sha256(f"{self.conn}:{request_id!r}".encode()).hexdigest()
        return {"MessageGroupId": group, "MessageDeduplicationId": uuid.uuid4().hex}


@dataclass
class _LoopResources:
    """What a worker keeps open per event loop: the SQS client and the server's lifespan (and a
    DynamoDB client, opened the first time the back channel needs it)."""

    sqs: Any
    replies: ReplyBatcher
    lifespan_state: Any
    stack: AsyncExitStack
    dynamodb: Any = None


@dataclass
class _Running:
    """A request being served in this process, so that a cancellation can reach it."""

    loop: asyncio.AbstractEventLoop
    scope: anyio.CancelScope
    cancel_requested: anyio.Event

    def cancel(self) -> None:
        """Cancel the request's handler (from any thread): it sees `cancel_requested` set."""

        def now() -> None:
            self.cancel_requested.set()
            self.scope.cancel()

        try:
            self.loop.call_soon_threadsafe(now)
        except RuntimeError:  # its loop has closed: the request is no longer running
            logger.debug("a cancelled request's event loop is closed")


@dataclass(frozen=True)
class _Redrive:
    """A request queue's redrive policy: where poison goes and after how many deliveries."""

    dead_letter_url: str
    max_receive_count: int

    @property
    def runs_allowed(self) -> int:
        """Deliveries that may run the request; the rest are the last word (`LAST_WORD_DELIVERIES`)."""
        return max(1, self.max_receive_count - LAST_WORD_DELIVERIES)


class Worker:
    """Serves SQS records with one MCP server; one instance per Lambda function.

    It keeps an SQS client and the server's lifespan open per event loop: in Lambda (and in the
    local poller) the loop lives as long as the execution environment, so they are reused.
    """

    def __init__(
        self,
        server: MCPServer | Server[Any],
        settings: WorkerSettings,
        session: AsyncAwsSession | None = None,
    ) -> None:
        self.server: Server[Any] = server._lowlevel_server if isinstance(server, MCPServer) else server
        self.settings = settings
        self._session = session or ThreadedSession()
        self._per_loop: dict[asyncio.AbstractEventLoop, asyncio.Task[_LoopResources]] = {}
        self._queue_urls: dict[str, str] = {}
        self._redrives: dict[str, _Redrive | None] = {}
        self._hints = ToolHints()
        self._running: dict[str, _Running] = {}
        """Requests being served in this process, by ledger key (all of this process's loops)."""
        self._ledger = (
            RequestLedger(settings.idempotency_table, function_name=self.server.name)
            if settings.idempotency_table
            else None
        )
        self._shared_ledger = (
            RequestLedger(settings.idempotency_table, function_name=SHARED_LEDGER_NAMESPACE)
            if settings.idempotency_table
            else None
        )
        """The same table under one namespace for every worker of the deployment: single-outcome
        claims must meet whichever worker received a copy."""
        self._tasks = _tasks_from_env(server, self._session)
        """The Tasks extension (`dmcp_aws.tasks`); None when the deployment has no task table."""

    @property
    def is_catch_all(self) -> bool:
        return self.server.name == UNROUTED

    async def handle_record(self, record: Any, lambda_context: Any = None) -> None:
        """Serve one SQS record (a powertools `SQSRecord` or the raw Lambda record dict).

        Raises only to leave the record for redelivery (a transient failure, or a duplicate
        deferred while another delivery holds the request).
        """
        raw: Mapping[str, Any] = getattr(record, "raw_event", record)
        resources = await self._resources()
        with resources.replies.handling():
            await asyncio.sleep(0)  # the batch's other records start (and are counted) first
            await self._handle_record(resources, raw, lambda_context)

    async def _handle_record(
        self, resources: _LoopResources, raw: Mapping[str, Any], lambda_context: Any
    ) -> None:
        attributes = from_sqs_attributes(raw.get("messageAttributes"))
        digest = request_digest(raw["body"])
        log = {"message_id": raw.get("messageId"), "dmcp_conn_ref": conn_ref(attributes.get(Attr.CONN))}
        shared = self._shared_ledger
        single = _single_outcome_claim(raw, attributes, digest) if shared is not None else None
        # SNS may have delivered copies of this record to several workers: the first to claim it
        # gives its one outcome; the others step aside once that is done.
        if single is not None and not await self._claim_single_outcome(
            resources.sqs, raw, single, lambda_context, log
        ):
            return
        try:
            await self._handle_decoded(resources, raw, attributes, digest, lambda_context, log)
        except BaseException as problem:
            if single is not None and shared is not None:
                await shared.abandon(single, problem)
            raise
        if single is not None and shared is not None:
            await shared.complete(single, {"handled_by": self.server.name})

    async def _claim_single_outcome(
        self, sqs: Any, raw: Mapping[str, Any], claim: Claim, lambda_context: Any, log: dict[str, Any]
    ) -> bool:
        """Whether this copy is the one to handle; defers it while another copy is handled."""
        assert self._shared_ledger is not None
        budget_ms = _remaining_ms(lambda_context, self.settings.default_timeout_ms)
        try:
            done = await self._shared_ledger.begin(claim, budget_ms)
        except RequestInProgress as busy:
            await self._defer(sqs, raw, busy.remaining_ms)
            record_outcome(Outcome.DEFERRED)
            raise
        if done is not None:
            logger.info("another worker handled this copy (mcp.server is not one String)", extra=log)
            record_outcome(Outcome.ROUTED_ELSEWHERE)
            return False
        return True

    async def _handle_decoded(
        self,
        resources: _LoopResources,
        raw: Mapping[str, Any],
        attributes: Mapping[str, str],
        digest: str,
        lambda_context: Any,
        log: dict[str, Any],
    ) -> None:
        try:
            channel = self._reply_channel(resources, raw["eventSourceARN"], attributes, digest)
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
            await self._handle_notification(resources, channel, message, attributes, lambda_context, log)
        elif isinstance(message, JSONRPCResponse | JSONRPCError):
            await self._take_client_answer(resources, channel, message, raw, attributes, log)
        elif isinstance(message, JSONRPCRequest):
            if not names_one_server(raw):
                error = ErrorData(
                    code=INVALID_REQUEST,
                    message="message attribute mcp.server must be a String naming one server",
                )
                answer = JSONRPCError(jsonrpc="2.0", id=message.id, error=error)
                await self._answer(channel, answer, raw, Outcome.ANSWERED_WITH_ERROR)
                return
            await self._handle_request(resources, channel, message, raw, attributes, lambda_context, log)

    async def _handle_notification(
        self,
        resources: _LoopResources,
        channel: ReplyChannel,
        notification: JSONRPCNotification,
        attributes: Mapping[str, str],
        lambda_context: Any,
        log: dict[str, Any],
    ) -> None:
        """Apply a cancellation, then hand the notification to the server's handlers."""
        if notification.method == "notifications/cancelled":
            await self._cancel(channel, attributes.get(Attr.REQUEST_DIGEST), log)
        limit_s = _seconds(
            _remaining_ms(lambda_context, self.settings.default_timeout_ms) - self.settings.answer_margin_ms
        )
        with anyio.move_on_after(limit_s) as scope:
            await deliver_notification(
                self.server,
                notification,
                lifespan_state=resources.lifespan_state,
                protocol_hint=attributes.get(Attr.PROTOCOL_VERSION),
                declared=parse_client_params(attributes.get(Attr.CLIENT_PARAMS)),
            )
        if scope.cancelled_caught:
            logger.warning("the handler of %s ran out of time", notification.method, extra=log)
        logger.info("client notification %s delivered", notification.method, extra=log)
        record_outcome(Outcome.CLIENT_NOTIFICATION)

    async def _cancel(self, channel: ReplyChannel, digest: str | None, log: dict[str, Any]) -> None:
        """Cancel the request a `notifications/cancelled` names (by its digest, which the client
        transport sends along): here if it runs in this process, and in the ledger, where a
        worker running it elsewhere looks and a delivery that has not started finds it."""
        if not digest:
            logger.info("a cancellation names no request digest: handlers only", extra=log)
            return
        claim = Claim.of(channel.conn, channel.address.url, digest)
        running = self._running.get(claim.key)
        if running is not None:
            running.cancel()
        if self._ledger is not None:
            await self._ledger.cancel(claim)
        logger.info("request %s cancelled by its client", claim.key[:12], extra=log)

    async def _take_client_answer(
        self,
        resources: _LoopResources,
        channel: ReplyChannel,
        answer: JSONRPCResponse | JSONRPCError,
        raw: Mapping[str, Any],
        attributes: Mapping[str, str],
        log: dict[str, Any],
    ) -> None:
        """Put a client's answer to a server-to-client request where its worker waits for it."""
        call_digest = attributes.get(Attr.REQUEST_DIGEST)
        slots = await self._answer_slots(resources)
        if slots is None or not isinstance(answer.id, str) or not call_digest:
            problem = WireError(
                "a client may send only requests, notifications and answers to a server's requests "
                "(with dmcp.request-digest, on a deployment with a ledger table)"
            )
            await self._dead_letter(resources.sqs, raw, problem)
            return
        if not await slots.deliver(answer_key(channel.conn, call_digest, answer.id), dump_message(answer)):
            await self._dead_letter(
                resources.sqs, raw, NoWaitingRequest(f"no request {answer.id!r} waits for this answer")
            )
            return
        logger.info("client answer to %s delivered", answer.id, extra=log)
        record_outcome(Outcome.CLIENT_ANSWER)

    async def _answer_slots(self, resources: _LoopResources) -> AnswerSlots | None:
        """The back channel's answer slots (None without a ledger table: no back channel)."""
        table = self.settings.idempotency_table
        if table is None:
            return None
        if resources.dynamodb is None:
            client = self._session.client("dynamodb", endpoint_url=self.settings.dynamodb_endpoint_url)
            resources.dynamodb = await resources.stack.enter_async_context(client)
        return AnswerSlots(resources.dynamodb, table)

    def _asker(self, resources: _LoopResources, channel: ReplyChannel, call_id: object) -> AskClient | None:
        """Send one server-to-client request over the back channel and wait for the answer
        (None without a ledger table: no back channel)."""
        if self.settings.idempotency_table is None:
            return None

        async def ask(method: str, params: Mapping[str, Any] | None) -> dict[str, Any]:
            slots = await self._answer_slots(resources)
            assert slots is not None
            request_id = new_server_request_id()
            key = answer_key(channel.conn, channel.digest, request_id)
            await slots.open(key, time.time())
            body = dict(params) if params is not None else None
            await self._send(
                channel, JSONRPCRequest(jsonrpc="2.0", id=request_id, method=method, params=body), call_id
            )
            answer = jsonrpc_message_adapter.validate_python(await slots.wait(key))
            if isinstance(answer, JSONRPCError):
                raise MCPError.from_error_data(answer.error)
            if isinstance(answer, JSONRPCResponse):
                return answer.result
            raise MCPError(code=INTERNAL_ERROR, message=f"the client's answer to {method} is not a response")

        return ask

    async def _handle_request(
        self,
        resources: _LoopResources,
        channel: ReplyChannel,
        request: JSONRPCRequest,
        raw: Mapping[str, Any],
        attributes: Mapping[str, str],
        lambda_context: Any,
        log: dict[str, Any],
    ) -> None:
        """Serve a request within its delivery budget; see the module docstring for the outcomes."""
        started = time.monotonic()
        try:
            check_answerable(request.id, server=channel.server, conn=channel.conn, digest=channel.digest)
        except WireError as exc:
            await self._dead_letter(channel.sqs, raw, exc)
            return
        delivery = _delivery(raw)
        redrive = await self._redrive(channel.sqs, raw["eventSourceARN"]) if delivery > 1 else None
        may_run = redrive is None or delivery <= redrive.runs_allowed
        final = redrive is not None and delivery >= redrive.max_receive_count
        if may_run and _past_deadline(attributes):
            # The caller has been told its request timed out: do not start work it gave up on.
            message = "the caller's deadline (dmcp.deadline) passed before the request could run"
            expired = JSONRPCError(
                jsonrpc="2.0", id=request.id, error=ErrorData(code=REQUEST_TIMEOUT, message=message)
            )
            await self._answer(channel, expired, raw, Outcome.EXPIRED)
            return
        if self._tasks is not None and await self._tasks.takes(request, attributes):
            port = await self._task_port(resources, channel, raw, lambda_context, delivery, may_run=may_run)
            task_answer = await self._tasks.handle(request, attributes, port)
            if task_answer is not None:
                await self._answer(channel, task_answer, raw, _with_outcome(task_answer)[1])
            return
        try:
            answer, outcome = await self._serve_once(
                resources, channel, request, attributes, lambda_context, delivery, may_run=may_run
            )
        except RequestInProgress as busy:
            if not final:
                await self._defer(channel.sqs, raw, busy.remaining_ms)
                record_outcome(Outcome.DEFERRED)
                raise
            await self._dead_letter(channel.sqs, raw, busy, note="its last delivery found it still running")
            return
        except _GaveUp as gave_up:
            await self._give_up(channel, request, raw, gave_up)
            return
        except Exception as exc:
            redrive = redrive or await self._redrive(channel.sqs, raw["eventSourceARN"])
            if redrive is not None and delivery >= redrive.runs_allowed:
                await self._give_up(channel, request, raw, exc)
                return
            raise
        if answer is None:
            logger.info("%s was cancelled by its client: not answered", request.method, extra=log)
            record_outcome(outcome)
            return
        # One record per served request (`dmcp dev` prints it as a line): method, server, outcome, ms.
        served: dict[str, Any] = {
            "outcome": outcome.value,
            "mcp_server": channel.server,
            "mcp_name": attributes.get(Attr.NAME),
            "duration_ms": round((time.monotonic() - started) * 1000),
        }
        logger.info("answered %s", request.method, extra=log | served)
        await self._answer(channel, answer, raw, outcome)

    async def aclose(self) -> None:
        """Close the SQS client and server lifespan held for the running event loop."""
        task = self._per_loop.pop(asyncio.get_running_loop(), None)
        if task is not None and not task.cancelled() and task.exception() is None:
            await task.result().stack.aclose()
        if self._tasks is not None:
            await self._tasks.aclose()

    async def _task_port(
        self,
        resources: _LoopResources,
        channel: ReplyChannel,
        raw: Mapping[str, Any],
        lambda_context: Any,
        delivery: int,
        *,
        may_run: bool,
    ) -> TaskPort:
        """What the Tasks extension needs of this worker to handle one request (`dmcp_aws.tasks`)."""
        from dmcp_aws.tasks.runner import TaskPort

        async def send(message: JSONRPCMessage) -> None:
            await self._send(channel, message, getattr(message, "id", None))

        budget_ms = _remaining_ms(lambda_context, self.settings.default_timeout_ms)
        return TaskPort(
            server=self.server,
            lifespan_state=resources.lifespan_state,
            sqs=channel.sqs,
            request_queue_url=await self._queue_url(channel.sqs, QueueArn.parse(raw["eventSourceARN"])),
            receipt_handle=raw["receiptHandle"],
            reply_queue=channel.address.name,
            reply_prefix=self.settings.reply_prefix,
            conn=channel.conn,
            digest=channel.digest,
            body=raw["body"],
            delivery=delivery,
            may_run=may_run,
            budget_ms=budget_ms - self.settings.answer_margin_ms,
            send=send,
        )

    def _reply_channel(
        self, resources: _LoopResources, source_arn: str, attributes: Mapping[str, str], digest: str
    ) -> ReplyChannel:
        """Validate where a request wants its answer; raise a `WireError` if nowhere allowed."""
        source = QueueArn.parse(source_arn)
        rules = ReplyRules(
            source.account, source.region, self.settings.reply_prefix, self.settings.endpoint_url
        )
        address = validate_reply_to(attributes.get(Attr.REPLY_TO), rules)
        conn = attributes.get(Attr.CONN)
        if not conn:
            raise MissingAttribute(f"message attribute {Attr.CONN.value} is required")
        per_connection = address.name.startswith(self.settings.reply_prefix + CONNECTION_QUEUE_PREFIX)
        server = self.server.name if not self.is_catch_all else (attributes.get(Attr.SERVER) or UNROUTED)
        return ReplyChannel(address, conn, server, resources.sqs, resources.replies, digest, per_connection)

    async def _serve_once(
        self,
        resources: _LoopResources,
        channel: ReplyChannel,
        request: JSONRPCRequest,
        attributes: Mapping[str, str],
        lambda_context: Any,
        delivery: int,
        *,
        may_run: bool,
    ) -> tuple[JSONRPCMessage | None, Outcome]:
        """Serve a request unless the ledger holds its answer already (a duplicate delivery).

        The answer is None for a request its client cancelled (nothing is sent). Raises
        `_GaveUp` when the delivery budget is spent (`may_run` false) and no stored answer
        exists, and `RequestInProgress` while another delivery holds the request.
        """
        claim = Claim.of(channel.conn, channel.address.url, channel.digest)
        context = QueueRequest(claim.key, delivery, channel.server)
        budget_ms = _remaining_ms(lambda_context, self.settings.default_timeout_ms)
        if self._ledger is None or not await self._needs_ledger(resources, request):
            if not may_run:
                raise _GaveUp("its worker ended without an outcome on every allowed delivery")
            return _with_outcome(
                await self._serve(resources, channel, request, attributes, context, budget_ms, None)
            )
        stored = await self._ledger.begin(claim, budget_ms)
        if is_cancelled(stored):
            return None, Outcome.CANCELLED
        if stored is not None:
            logger.info("request %r was served already; sending its stored answer", request.id)
            return jsonrpc_message_adapter.validate_python(stored), Outcome.REPLAYED
        try:
            if not may_run:
                raise _GaveUp("its worker ended without an outcome on every allowed delivery")
            answer = await self._serve(resources, channel, request, attributes, context, budget_ms, claim)
            if answer is None:
                await self._ledger.cancel(claim)
                return None, Outcome.CANCELLED
            # What is stored is what is sent: a result too large to send becomes its error.
            wire = encode_answer(answer, server=channel.server, conn=channel.conn, digest=channel.digest)
            await self._ledger.complete(claim, json.loads(wire.body))
        except BaseException as problem:
            await self._ledger.abandon(claim, problem)
            raise
        return _with_outcome(answer)

    async def _needs_ledger(self, resources: _LoopResources, request: JSONRPCRequest) -> bool:
        """Whether running the request twice could do harm (`dmcp_aws.run_once`)."""

        async def list_tools() -> list[Mapping[str, Any]]:
            tools: list[Mapping[str, Any]] = []
            cursor = None
            for page in range(100):
                params: dict[str, Any] = {"_meta": dict(_LISTING_ENVELOPE)}
                if cursor is not None:
                    params["cursor"] = cursor
                listing = JSONRPCRequest(
                    jsonrpc="2.0", id=f"dmcp-hints-{page}", method="tools/list", params=params
                )
                answer = await serve_request(
                    self.server, listing, notify=_ignore, lifespan_state=resources.lifespan_state
                )
                if not isinstance(answer, JSONRPCResponse):
                    return tools  # a server without tools: every call goes through the ledger
                tools += [t for t in answer.result.get("tools", []) if isinstance(t, Mapping)]
                cursor = answer.result.get("nextCursor")
                if not cursor:
                    break
            return tools

        return await self._hints.needs_ledger(request, list_tools)

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
        """Run the request within its time (the function's, and its caller's deadline); None
        when its client cancelled it. `claim` (ledger requests) is watched for a cancellation
        that another worker received."""

        async def notify(notification: JSONRPCNotification) -> None:
            try:
                await self._send(channel, notification, request.id)
            except UndeliverableReply as gone:
                logger.info("could not deliver %s: %s", notification.method, gone)  # the client left
            except Exception:
                # Notifications are advisory: a lost one must not fail the request.
                logger.warning(
                    "could not deliver %s to %s", notification.method, channel.address.name, exc_info=True
                )

        budget_s = _seconds(budget_ms - self.settings.answer_margin_ms)
        caller_s = _seconds_to_deadline(attributes)
        limit_s = min(budget_s, caller_s) if caller_s is not None else budget_s
        ask = self._asker(resources, channel, request.id)
        running = _Running(asyncio.get_running_loop(), anyio.CancelScope(), anyio.Event())
        self._running[context.idempotency_key] = running
        answer: JSONRPCMessage | None = None
        try:
            # The time limit is outside the task group, so its TimeoutError is not wrapped.
            with serving(context), running.scope, anyio.fail_after(limit_s):
                async with anyio.create_task_group() as watchers:
                    if claim is not None and self._ledger is not None:
                        watchers.start_soon(self._watch_for_cancellation, self._ledger, claim, running)
                    answer = await serve_request(
                        self.server,
                        request,
                        notify=notify,
                        lifespan_state=resources.lifespan_state,
                        protocol_hint=attributes.get(Attr.PROTOCOL_VERSION),
                        declared=parse_client_params(attributes.get(Attr.CLIENT_PARAMS)),
                        ask_client=ask,
                        cancel_requested=running.cancel_requested,
                    )
                    watchers.cancel_scope.cancel()
        except TimeoutError:
            if caller_s is None or caller_s > budget_s:
                raise TimeoutError(f"the request ran out of time ({limit_s:.1f} s)") from None
            # Its caller has given up: stop, answer (the late answer is dropped) and never retry.
            message = "the caller's deadline (dmcp.deadline) passed while the request ran: it was stopped"
            return JSONRPCError(
                jsonrpc="2.0", id=request.id, error=ErrorData(code=REQUEST_TIMEOUT, message=message)
            )
        finally:
            if self._running.get(context.idempotency_key) is running:
                del self._running[context.idempotency_key]
        return answer

    async def _watch_for_cancellation(self, ledger: RequestLedger, claim: Claim, running: _Running) -> None:
        """Cancel `running` once the ledger says its client cancelled it (another worker got
        the `notifications/cancelled`); a failed look is only logged."""
        while True:
            await anyio.sleep(CANCELLATION_CHECK_S)
            try:
                cancelled = await ledger.was_cancelled(claim)
            except Exception as exc:
                logger.warning("could not look for a cancellation: %s", exc)
                continue
            if cancelled:
                running.cancel()
                return

    async def _give_up(
        self, channel: ReplyChannel, request: JSONRPCRequest, raw: Mapping[str, Any], problem: BaseException
    ) -> None:
        """The last word on a request out of deliveries: an error to the client, the record to the DLQ."""
        delivery = _delivery(raw)
        message = f"the request failed on delivery {delivery} and will not be retried: {problem}"
        error = ErrorData(code=INTERNAL_ERROR, message=message[:2000])
        try:
            await self._send(channel, JSONRPCError(jsonrpc="2.0", id=request.id, error=error), request.id)
        except (WireError, UndeliverableReply) as exc:
            logger.warning("could not tell the client its request failed: %s", exc)
        reason = _GaveUp(f"{type(problem).__name__}: {problem}")
        await self._dead_letter(channel.sqs, raw, reason)

    async def _defer(self, sqs: Any, raw: Mapping[str, Any], remaining_ms: int) -> None:
        """Hide a duplicate delivery until the holder's claim has ended (it is not deleted)."""
        hidden_s = min(_MAX_VISIBILITY_S, remaining_ms // 1000 + _DEFER_SLACK_S)
        source = QueueArn.parse(raw["eventSourceARN"])
        try:
            await sqs.change_message_visibility(
                QueueUrl=await self._queue_url(sqs, source),
                ReceiptHandle=raw["receiptHandle"],
                VisibilityTimeout=hidden_s,
            )
        except ClientError as exc:
            logger.warning(
                "could not defer a duplicate delivery (it returns after the queue's timeout): %s", exc
            )

    async def _answer(
        self, channel: ReplyChannel, answer: JSONRPCMessage, raw: Mapping[str, Any], outcome: Outcome
    ) -> None:
        try:
            await self._send(channel, answer, getattr(answer, "id", None))
        except UndeliverableReply as exc:
            if exc.queue_gone and channel.per_connection:
                # The client deleted its connection's queue: it left, nobody waits (not poison).
                logger.info("reply queue %s is gone: its client left", channel.address.name)
                record_outcome(Outcome.REPLY_QUEUE_GONE)
                return
            await self._dead_letter(channel.sqs, raw, exc)
        except WireError as exc:
            await self._dead_letter(channel.sqs, raw, exc)
        else:
            record_outcome(outcome)

    async def _send(self, channel: ReplyChannel, message: JSONRPCMessage, request_id: object) -> None:
        """Send one message to the reply queue; raise `UndeliverableReply` if it never can arrive."""
        wire = encode_answer(message, server=channel.server, conn=channel.conn, digest=channel.digest)
        try:
            await channel.replies.send(
                channel.address.url,
                {
                    "MessageBody": wire.body,
                    "MessageAttributes": to_sqs_attributes(wire.attributes),
                    **channel.fifo_parameters(request_id),
                },
            )
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in _QUEUE_GONE or code in _FORBIDDEN:
                raise UndeliverableReply(
                    f"reply queue {channel.address.name}: {code}", queue_gone=code in _QUEUE_GONE
                ) from exc
            raise

    async def _dead_letter(
        self, sqs: Any, raw: Mapping[str, Any], problem: Exception, note: str | None = None
    ) -> None:
        """Move a record to its source queue's DLQ at once, with the reason as an attribute.

        The copy keeps the routing attributes but not the connection's secret (`dmcp.conn`): its
        non-reversible reference goes into the reason instead, to match the workers' logs.
        """
        original = from_sqs_attributes(raw.get("messageAttributes"))
        ref = conn_ref(original.pop(Attr.CONN.value, None))
        detail = f"{problem}; {note}" if note else str(problem)
        reason = f"{getattr(problem, 'reason', 'error')}: {detail}"[:900]
        if ref:
            reason += f" (conn ref {ref})"
        kept = dict(itertools.islice(original.items(), _MAX_ATTRIBUTES - 1))
        kept[Attr.DLQ_REASON.value] = reason
        redrive = await self._redrive(sqs, raw["eventSourceARN"])
        if redrive is None:
            raise RuntimeError(
                f"{raw['eventSourceARN']} has no dead-letter queue to move a poison message to"
            )
        body = raw["body"] or "(empty)"
        await sqs.send_message(
            QueueUrl=redrive.dead_letter_url, MessageBody=body, MessageAttributes=to_sqs_attributes(kept)
        )
        logger.warning("moved message %s to the dead-letter queue: %s", raw.get("messageId"), reason)
        record_outcome(Outcome.DEAD_LETTERED)

    async def _redrive(self, sqs: Any, source_arn: str) -> _Redrive | None:
        """The source queue's redrive policy (looked up once)."""
        if source_arn not in self._redrives:
            source = QueueArn.parse(source_arn)
            source_url = await self._queue_url(sqs, source)
            attributes = await sqs.get_queue_attributes(QueueUrl=source_url, AttributeNames=["RedrivePolicy"])
            policy = attributes.get("Attributes", {}).get("RedrivePolicy")
            if not policy:
                self._redrives[source_arn] = None
            else:
                parsed = json.loads(policy)
                dlq = await self._queue_url(sqs, QueueArn.parse(parsed["deadLetterTargetArn"]))
                self._redrives[source_arn] = _Redrive(dlq, int(parsed["maxReceiveCount"]))
        return self._redrives[source_arn]

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
            return _LoopResources(sqs, ReplyBatcher(sqs), lifespan_state, stack.pop_all())


class NoWaitingRequest(WireError):
    """A client's answer to a server-to-client request that nobody waits for (it was never
    asked, or its call has ended)."""

    reason = "no-waiting-request"


class _GaveUp(Exception):
    """A request out of deliveries: answered with an error and dead-lettered."""

    reason = "retries-exhausted"


def _tasks_from_env(server: MCPServer | Server[Any], session: AsyncAwsSession) -> TaskWorker | None:
    """The Tasks extension's side of the worker, where the deployment has a task table (its code
    is imported only then: every import is paid at each cold start)."""
    if not os.environ.get(TASKS_TABLE_VARIABLE):
        return None
    from dmcp_aws.tasks.runner import TaskWorker

    return TaskWorker.from_env(server, session)


def _delivery(raw: Mapping[str, Any]) -> int:
    """Which delivery this record is (SQS's `ApproximateReceiveCount`; 1 when unknown)."""
    try:
        return max(1, int(raw.get("attributes", {}).get("ApproximateReceiveCount", 1)))
    except (TypeError, ValueError):
        return 1


def _deadline_ms(attributes: Mapping[str, str]) -> int | None:
    """The request's `dmcp.deadline` (ms since the epoch); None without a usable one."""
    try:
        deadline = int(attributes.get(Attr.DEADLINE) or 0)
    except ValueError:
        return None
    return deadline if deadline > 0 else None


def _past_deadline(attributes: Mapping[str, str]) -> bool:
    """Whether the request's `dmcp.deadline` (if it has one) has passed."""
    deadline = _deadline_ms(attributes)
    return deadline is not None and deadline < time.time() * 1000


_LISTING_ENVELOPE: Final = {
    "io.modelcontextprotocol/protocolVersion": LATEST_MODERN_VERSION,
    "io.modelcontextprotocol/clientCapabilities": {},
}
"""The envelope of the worker's own `tools/list` (to read the tools' annotations)."""


async def _ignore(notification: JSONRPCNotification) -> None:
    """Where notifications of the worker's own requests go."""


def _seconds(milliseconds: float) -> float:
    """A time limit in seconds from milliseconds, never below 0.1 s."""
    return max(0.1, milliseconds / 1000)


def _seconds_to_deadline(attributes: Mapping[str, str]) -> float | None:
    """Seconds until the request's `dmcp.deadline` (None without one)."""
    deadline = _deadline_ms(attributes)
    return _seconds(deadline - time.time() * 1000) if deadline is not None else None


def _remaining_ms(lambda_context: Any, default_ms: int) -> int:
    remaining = getattr(lambda_context, "get_remaining_time_in_millis", None)
    return int(remaining()) if remaining else default_ms


def names_one_server(raw: Mapping[str, Any]) -> bool:
    """Whether the record's `mcp.server` is absent or one String (the only forms SNS routes to
    exactly one subscription: a `String.Array` can match a server and the catch-all at once)."""
    value = (raw.get("messageAttributes") or {}).get(Attr.SERVER.value)
    if not isinstance(value, Mapping):
        return True
    return bool(value.get("dataType", value.get("DataType")) == "String")


def _single_outcome_claim(raw: Mapping[str, Any], attributes: Mapping[str, str], digest: str) -> Claim | None:
    """The ledger claim that gives a possibly multi-delivered record one outcome (None: not needed).

    Every copy SNS made of one publish has the same body and attributes, so the same claim."""
    if names_one_server(raw):
        return None
    attribute = (raw.get("messageAttributes") or {}).get(Attr.SERVER.value) or {}
    server = json.dumps(attribute, sort_keys=True, default=repr)  # a Binary value is bytes locally
    where = "\n".join((attributes.get(Attr.REPLY_TO) or "", server))
    return Claim.of(f"single-outcome:{attributes.get(Attr.CONN) or ''}", where, digest)


def _with_outcome(answer: JSONRPCMessage | None) -> tuple[JSONRPCMessage | None, Outcome]:
    if answer is None:
        return None, Outcome.CANCELLED
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
