"""Crash test harness: tool calls through a deployment whose workers are SIGKILLed under load.

    >>> figures = await run_crash("http://127.0.0.1:5000", "us-east-1", calls=300, clients=3)
    >>> print(figures.table())

It provisions a deployment of its own (`crash-<random>`, one server `example`, timeout 5 s so
the request queue's visibility timeout is 30 s, `max_receive_count` 3, request ledger on) on the
given moto endpoint, starts `workers` container workers (`python -m dmcp_aws worker`) as
subprocesses, and SIGKILLs a random one every `kill_every` seconds (uniform), restarting it at
once. Meanwhile `clients` `mcp.Client`s, each on its own per-connection reply queue, make `calls`
tool calls with at most `in_flight` outstanding per client: `take_ticket` (a side effect kept in
DynamoDB under the request's idempotency key) and `echo` with a unique text (a wrong answer shows).

When every call has an outcome the killing stops, the workers drain the request queue, and the
figures are collected from the calls' outcomes, the dead-letter queues and the ledger table.
Every wait is bounded; every subprocess is killed on the way out, whatever happens.

Run it standalone against an embedded moto (prints the figures as a table):

    python -m tests.e2e.crash_harness --calls 2000
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import random
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final

import aioboto3
import anyio
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp_types import REQUEST_TIMEOUT

from dmcp_aws.client import TopicTarget, sqs_client_transport
from dmcp_aws.deployment import VISIBILITY_PER_TIMEOUT, Deployment, topology
from dmcp_aws.local.provision import Provisioned, provision
from dmcp_aws.naming import LAST_WORD_DELIVERIES
from dmcp_aws.wire import Attr

logger = logging.getLogger("crash")

ROOT: Final = Path(__file__).resolve().parents[2]
SERVER: Final = "example"
CALL_META: Final = "crash.dmcp/call"
"""`_meta` key carrying the call's number, so a dead-lettered request is traced to its call."""
_TRANSPORT_TIMEOUT_PREFIX: Final = "no answer to"
"""How the client transport's deadline error begins (the SDK's own read timeout says otherwise)."""
_CREDENTIALS: Final = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
_TICKET_PREFIX: Final = "example#ticket#"
_COUNTER_KEY: Final = "example#tickets"


class Outcome:
    """How a call ended, as its caller saw it."""

    RESULT = "result"
    TOOL_ERROR = "tool-error"
    """A result with `isError` (the tool failed)."""
    WORKER_ERROR = "worker-error"
    """A JSON-RPC error sent by a worker (e.g. its last delivery gave up)."""
    TIMEOUT = "timeout"
    """The client transport's deadline error (-32001): no worker answered in time."""
    SESSION_TIMEOUT = "session-timeout"
    """The SDK session's own read timeout fired before the transport's deadline (must not happen)."""
    NO_OUTCOME = "no-outcome"
    """The harness's last-resort bound fired: neither a result nor an error came (must not happen)."""
    LOST = "lost"
    """The call raised something that is neither a result nor an MCP error."""


@dataclass
class CallRecord:
    index: int
    client: int
    tool: str
    text: str | None = None
    outcome: str = Outcome.NO_OUTCOME
    ticket: int | None = None
    wrong: bool = False
    detail: str = ""
    seconds: float = 0.0


@dataclass
class CrashFigures:
    """What the crash run measured. `table()` renders it for a report."""

    deployment: str
    seconds: float
    workers: int
    kill_every: tuple[float, float]
    request_timeout: float
    visibility_timeout_s: int
    max_receive_count: int
    kills: int = 0
    worker_starts: int = 0
    unexpected_worker_exits: int = 0
    calls: list[CallRecord] = field(default_factory=list, repr=False)
    # dead-letter queues
    dlq_messages: int = 0
    dlq_with_reason: int = 0
    dlq_reasons: Counter[str] = field(default_factory=Counter)
    dlq_call_outcomes: Counter[str] = field(default_factory=Counter)
    """Outcome of the call each dead-lettered request belongs to."""
    dlq_spent_without_reason: int = 0
    """Dead letters SQS moved itself (no reason) after every allowed delivery was received by a
    worker that was killed before it could finish: the kit could not label them."""
    dlq_unknown_call: int = 0
    dlq_samples: list[str] = field(default_factory=list)
    left_in_request_queue: int = 0
    # ledger table
    ledger_records: Counter[str] = field(default_factory=Counter)
    tickets_stored: int = 0
    stored_numbers: Counter[int] = field(default_factory=Counter)
    """Each stored ticket number and how many requests' keys hold it."""
    ticket_counter: int = 0
    tickets_not_stored: int = 0
    """Tickets handed to callers that the ticket table does not hold (must be 0)."""
    errors_seen: Counter[str] = field(default_factory=Counter)

    # -- derived figures --------------------------------------------------------------------------

    @property
    def sent(self) -> int:
        return len(self.calls)

    def _count(self, outcome: str) -> int:
        return sum(1 for c in self.calls if c.outcome == outcome)

    @property
    def answered(self) -> int:
        """Calls answered with a result (including tool errors, which are results)."""
        return self._count(Outcome.RESULT) + self._count(Outcome.TOOL_ERROR)

    @property
    def tool_errors(self) -> int:
        return self._count(Outcome.TOOL_ERROR)

    @property
    def worker_errors(self) -> int:
        return self._count(Outcome.WORKER_ERROR)

    @property
    def timeouts(self) -> int:
        return self._count(Outcome.TIMEOUT)

    @property
    def answered_with_error(self) -> int:
        """Calls that ended in a JSON-RPC error: from a worker or the transport's deadline."""
        return self.worker_errors + self.timeouts

    @property
    def lost(self) -> int:
        """Calls with no outcome at all: something unexpected was raised, or nothing came."""
        return self._count(Outcome.LOST) + self._count(Outcome.NO_OUTCOME)

    @property
    def unanswered_without_error(self) -> int:
        """Calls that ended with neither a result nor an error from the transport or a worker."""
        return self.lost + self._count(Outcome.SESSION_TIMEOUT)

    @property
    def wrong_answers(self) -> int:
        return sum(1 for c in self.calls if c.wrong)

    @property
    def ticket_calls(self) -> int:
        return sum(1 for c in self.calls if c.tool == "take_ticket")

    @property
    def tickets_returned(self) -> int:
        return sum(1 for c in self.calls if c.ticket is not None)

    @property
    def shared_tickets(self) -> int:
        """Calls handed a ticket number that another call was handed too."""
        counts = Counter(c.ticket for c in self.calls if c.ticket is not None)
        return sum(n for n in counts.values() if n > 1)

    @property
    def counter_collisions(self) -> int:
        """Ticket numbers the counter issued to more than one request: moto's UpdateItem is not
        atomic under concurrent requests (real DynamoDB's is), so two increments can return the
        same number. Each such request was served once; reported, not counted as a fault."""
        return sum(n - 1 for n in self.stored_numbers.values() if n > 1)

    @property
    def executed_twice(self) -> int:
        """Side-effecting calls whose effect happened twice, as far as anyone can see: one
        request's ticket handed to two calls (a number more callers hold than requests' keys
        do), or more tickets stored than there were ticket calls."""
        held = Counter(c.ticket for c in self.calls if c.ticket is not None)
        shared = sum(max(0, n - max(1, self.stored_numbers.get(ticket, 0))) for ticket, n in held.items())
        return shared + max(0, self.tickets_stored - self.ticket_calls)

    @property
    def ticket_gaps(self) -> int:
        """Numbers the counter issued that no request holds: the worker died between issuing and
        storing (the retry issued another number). Invisible to callers; reported, not a fault."""
        return max(0, self.ticket_counter - len(self.stored_numbers))

    @property
    def late_answers(self) -> int:
        """Requests the workers completed (the ledger holds their answer) whose callers got no
        result: their answer came after the caller's deadline and was dropped. Each tools/call
        request has one ledger record; read-only methods have none."""
        return max(0, self.ledger_records.get("COMPLETED", 0) - self.answered)

    @property
    def tickets_for_failed_calls(self) -> int:
        """Tickets issued (stored) for calls whose callers got an error: the side effect happened
        although the caller was told the call failed."""
        return max(0, self.tickets_stored - self.tickets_returned)

    @property
    def dlq_without_reason(self) -> int:
        return self.dlq_messages - self.dlq_with_reason

    @property
    def timeouts_not_dead_lettered(self) -> int:
        """Timed-out calls whose request is in no DLQ: only the client's deadline told anyone."""
        return self.timeouts - self.dlq_call_outcomes.get(Outcome.TIMEOUT, 0)

    def latency(self) -> tuple[float, float, float]:
        """Median, 99th percentile and largest seconds to an outcome."""
        seconds = sorted(c.seconds for c in self.calls) or [0.0]
        p99 = seconds[min(len(seconds) - 1, int(len(seconds) * 0.99))]
        return statistics.median(seconds), p99, seconds[-1]

    def summary(self) -> dict[str, Any]:
        """The headline figures, as the issue's report lists them."""
        return {
            "sent": self.sent,
            "answered": self.answered,
            "answered_with_error": self.answered_with_error,
            "worker_errors": self.worker_errors,
            "transport_timeouts": self.timeouts,
            "lost": self.lost,
            "unanswered_without_error": self.unanswered_without_error,
            "wrong_answers": self.wrong_answers,
            "executed_twice": self.executed_twice,
            "ticket_gaps": self.ticket_gaps,
            "counter_collisions": self.counter_collisions,
            "dlq": self.dlq_messages,
            "dlq_with_reason": self.dlq_with_reason,
            "dlq_reasons": dict(self.dlq_reasons),
            "dlq_call_outcomes": dict(self.dlq_call_outcomes),
            "timeouts_not_dead_lettered": self.timeouts_not_dead_lettered,
            "late_answers": self.late_answers,
            "tickets_for_failed_calls": self.tickets_for_failed_calls,
            "kills": self.kills,
            "seconds": round(self.seconds, 1),
        }

    def table(self) -> str:
        median, p99, longest = self.latency()
        rows: list[tuple[str, object]] = [
            ("deployment", self.deployment),
            (
                "setup",
                f"{self.workers} workers, SIGKILL every {self.kill_every[0]:g}-{self.kill_every[1]:g} s, "
                f"visibility {self.visibility_timeout_s} s, max_receive_count {self.max_receive_count} "
                f"(+{LAST_WORD_DELIVERIES} last word), request timeout {self.request_timeout:g} s",
            ),
            ("duration s", f"{self.seconds:.1f}"),
            ("kills / worker starts", f"{self.kills} / {self.worker_starts}"),
            ("workers that died on their own", self.unexpected_worker_exits),
            ("sent", f"{self.sent} ({self.ticket_calls} take_ticket, {self.sent - self.ticket_calls} echo)"),
            ("answered (result)", f"{self.answered} (of which tool errors: {self.tool_errors})"),
            (
                "answered with error",
                f"{self.answered_with_error} (worker errors {self.worker_errors}, "
                f"transport timeouts {self.timeouts})",
            ),
            ("lost (no outcome)", self.lost),
            ("unanswered without error", self.unanswered_without_error),
            ("wrong answers", self.wrong_answers),
            ("executed twice", self.executed_twice),
            (
                "tickets returned / stored / counter",
                f"{self.tickets_returned} / {self.tickets_stored} / {self.ticket_counter} "
                f"(gaps {self.ticket_gaps}, shared {self.shared_tickets}, "
                f"counter collisions {self.counter_collisions}, not stored {self.tickets_not_stored})",
            ),
            ("in DLQ", self.dlq_messages),
            ("in DLQ with reason", self.dlq_with_reason),
            ("in DLQ without, every delivery spent", self.dlq_spent_without_reason),
            ("DLQ reasons", dict(self.dlq_reasons) or "-"),
            ("DLQ'd calls ended as", dict(self.dlq_call_outcomes) or "-"),
            ("timeouts in no DLQ", self.timeouts_not_dead_lettered),
            ("answered after the caller's deadline", self.late_answers),
            ("tickets issued to calls that failed", self.tickets_for_failed_calls),
            ("left in request queue", self.left_in_request_queue),
            ("ledger records", dict(self.ledger_records) or "-"),
            ("latency s (median / p99 / max)", f"{median:.2f} / {p99:.2f} / {longest:.2f}"),
        ]
        width = max(len(name) for name, _ in rows)
        lines = [f"{name.ljust(width)}  {value}" for name, value in rows]
        if self.errors_seen:
            lines.append("errors seen by callers:")
            lines += [f"  {n:5d}  {text}" for text, n in self.errors_seen.most_common(8)]
        if self.dlq_samples:
            lines.append("dead letters without a reason (samples):")
            lines += [f"  {sample}" for sample in self.dlq_samples]
        return "\n".join(lines)


# -- worker processes ------------------------------------------------------------------------------


_DIE_WITH_PARENT: Final = """
import ctypes, os, sys
ctypes.CDLL(None).prctl(1, 9)  # PR_SET_PDEATHSIG = 1, SIGKILL = 9; kept across exec
if os.getppid() != int(sys.argv[1]):
    sys.exit("the harness is gone")
os.execv(sys.executable, [sys.executable, *sys.argv[2:]])
"""
"""Runs a worker so that the kernel SIGKILLs it when the harness process dies (Linux)."""


class WorkerPool:
    """`count` `dmcp worker` subprocesses for one deployment; kill and restart them by slot."""

    def __init__(
        self,
        count: int,
        description: Path,
        endpoint_url: str,
        region: str,
        log_dir: Path,
        *,
        verbose: bool = False,
    ) -> None:
        self.description = description
        self.verbose = verbose
        self.endpoint_url = endpoint_url
        self.log_dir = log_dir
        self.environment = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("AWS_", "DMCP_", "LAMBDA_", "POWERTOOLS_"))
        } | {
            "AWS_ACCESS_KEY_ID": _CREDENTIALS["aws_access_key_id"],
            "AWS_SECRET_ACCESS_KEY": _CREDENTIALS["aws_secret_access_key"],
            "AWS_DEFAULT_REGION": region,
            "PYTHONPATH": str(ROOT),
            "POWERTOOLS_LOG_LEVEL": "INFO" if verbose else "WARNING",
            "POWERTOOLS_METRICS_DISABLED": "true",
            "POWERTOOLS_TRACE_DISABLED": "true",
        }
        self.processes: list[subprocess.Popen[bytes] | None] = [None] * count
        self._logs: list[IO[bytes] | None] = [None] * count
        self.starts = 0
        self.kills = 0
        self.unexpected_exits = 0

    def start(self, slot: int) -> None:
        log = self._logs[slot]
        if log is None:
            log = self._logs[slot] = open(self.log_dir / f"worker-{slot}.log", "ab")  # noqa: SIM115
        log.write(f"--- start {self.starts} at {time.time():.3f}\n".encode())
        log.flush()
        command = [
            "-m",
            "dmcp_aws",
            "worker",
            "--server",
            SERVER,
            "--deployment",
            str(self.description),
            "--endpoint-url",
            self.endpoint_url,
            *(["--verbose"] if self.verbose else []),
        ]
        if sys.platform == "linux":  # the worker dies with the harness, even if it is SIGKILLed
            command = ["-c", _DIE_WITH_PARENT, str(os.getpid()), *command]
        self.processes[slot] = subprocess.Popen(
            [sys.executable, *command],
            env=self.environment, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            cwd=ROOT,
        )  # fmt: skip
        self.starts += 1

    def kill(self, slot: int) -> None:
        process = self.processes[slot]
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            self.kills += 1
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=5)
        self.processes[slot] = None

    def revive(self) -> None:
        """Restart every worker that is not running (counting those that died on their own)."""
        for slot, process in enumerate(self.processes):
            if process is None:
                self.start(slot)
            elif process.poll() is not None:
                self.unexpected_exits += 1
                logger.warning("worker %d exited on its own (code %s); restarting", slot, process.returncode)
                self.start(slot)

    def close(self) -> None:
        for slot in range(len(self.processes)):
            with contextlib.suppress(Exception):
                self.kill(slot)
        for slot, log in enumerate(self._logs):
            if log is not None:
                log.close()
                self._logs[slot] = None

    def tail(self, lines: int = 20) -> str:
        out = []
        for path in sorted(self.log_dir.glob("worker-*.log")):
            text = path.read_text(errors="replace").splitlines()[-lines:]
            out.append(f"== {path.name}\n" + "\n".join(text))
        return "\n".join(out)


# -- the run ---------------------------------------------------------------------------------------


async def run_crash(
    endpoint_url: str,
    region: str,
    calls: int,
    clients: int,
    kill_every: tuple[float, float] = (1.0, 3.0),
    workers: int = 2,
    *,
    in_flight: int = 10,
    ticket_share: float = 0.5,
    timeout_s: int = 5,
    max_receive_count: int = 3,
    slots_per_worker: int = 2,
    request_timeout: float | None = None,
    drain_timeout: float | None = None,
    kill_for_s: float | None = None,
    call_phase_s: float | None = None,
    seed: int | None = None,
    log_dir: Path | None = None,
    verbose_workers: bool = False,
) -> CrashFigures:
    """Run the crash test against a moto endpoint and return what it measured.

    Args:
        calls: tool calls to make, spread over `clients` connections (round robin).
        kill_every: seconds between kills (uniform in this range); one random worker each time.
        workers: worker processes kept running (each killed one is restarted at once).
        in_flight: most outstanding calls per client.
        ticket_share: share of calls that are `take_ticket` (the rest are `echo`).
        timeout_s: the server's function timeout (visibility = 6 x that).
        max_receive_count: deliveries that may run a request (the queue allows one more).
        slots_per_worker: poll loops per worker process (the server's `max_concurrency`).
        request_timeout: the client transport's deadline; default: every allowed delivery's
            visibility timeout plus 15 s, so a request nobody answers still gets its error.
        drain_timeout: how long to wait for the request queue to empty after the calls.
        kill_for_s: stop killing after this many seconds even if calls are outstanding.
        call_phase_s: calls still without an outcome this long after the first was made are
            cut off and count as lost (a last resort: the transport's deadline comes first).
        seed: for the random choices (tools, kill times, victims).
        log_dir: where worker logs go (a temporary directory otherwise; kept).
        verbose_workers: workers log every record they serve (INFO), for diagnosis.
    """
    rng = random.Random(seed)
    name = f"crash-{secrets.token_hex(4)}"
    spec = {
        "name": name,
        "servers": [
            {
                "name": SERVER,
                "timeout_s": timeout_s,
                "max_receive_count": max_receive_count,
                "max_concurrency": slots_per_worker,
            }
        ],
        "idempotency": True,
    }
    deployment = Deployment.parse(spec)
    shape = topology(deployment)
    visibility = VISIBILITY_PER_TIMEOUT * timeout_s
    deliveries = max_receive_count + LAST_WORD_DELIVERIES
    if request_timeout is None:
        request_timeout = visibility * deliveries + 15.0
    if drain_timeout is None:
        drain_timeout = 2.0 * visibility + 15.0
    if call_phase_s is None:
        call_phase_s = request_timeout + 60.0 + calls / 2
    log_dir = log_dir or Path(tempfile.mkdtemp(prefix="dmcp-crash-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    description = log_dir / f"{name}.json"
    description.write_text(json.dumps(spec))
    figures = CrashFigures(
        deployment=name,
        seconds=0.0,
        workers=workers,
        kill_every=kill_every,
        request_timeout=request_timeout,
        visibility_timeout_s=visibility,
        max_receive_count=max_receive_count,
    )
    plan = [
        CallRecord(index=i, client=i % clients, tool="take_ticket" if rng.random() < ticket_share else "echo")
        for i in range(calls)
    ]
    for call in plan:
        if call.tool == "echo":
            call.text = f"{name} call {call.index} {secrets.token_hex(6)}"
    figures.calls = plan
    session = aioboto3.Session(region_name=region, **_CREDENTIALS)
    pool = WorkerPool(workers, description, endpoint_url, region, log_dir, verbose=verbose_workers)
    started = time.monotonic()
    logger.info(
        "crash run %s: %d calls, %d clients, %d workers; logs in %s", name, calls, clients, workers, log_dir
    )
    created: Provisioned | None = None
    async with _aws(session, endpoint_url) as aws:
        try:
            created = await provision(shape, aws["sqs"], aws["sns"], aws["dynamodb"])
            pool.revive()
            target = TopicTarget(created.topic_arn, SERVER)
            options = {
                "session": session,
                "endpoint_url": endpoint_url,
                "reply_prefix": deployment.connection_queue_prefix,
                "request_timeout": request_timeout,
            }
            run = _Run(plan, clients, in_flight, request_timeout, pool, rng, kill_every, kill_for_s)
            run.call_phase_s = call_phase_s
            with anyio.fail_after(_Run.CONNECT_TIMEOUT_S + call_phase_s + drain_timeout + 60):
                async with anyio.create_task_group() as tg:
                    for number in range(clients):
                        tg.start_soon(run.client, number, sqs_client_transport(target, **options))
                    await run.drive()
                    figures.left_in_request_queue = await _drain(
                        aws["sqs"], created.queue_urls[shape.workers[0].request_queue], drain_timeout, pool
                    )
                    run.close.set()
            figures.kills, figures.worker_starts = pool.kills, pool.starts
            figures.unexpected_worker_exits = pool.unexpected_exits
            pool.close()
            await _read_dead_letters(aws["sqs"], created, shape.workers, figures)
            await _read_ledger(aws["dynamodb"], shape.idempotency_table or "", figures)
        finally:
            pool.close()
            with anyio.move_on_after(30, shield=True):
                await _remove(aws, shape.idempotency_table, created)
    figures.seconds = time.monotonic() - started
    for call in plan:
        if call.outcome in (Outcome.WORKER_ERROR, Outcome.LOST, Outcome.SESSION_TIMEOUT, Outcome.TOOL_ERROR):
            figures.errors_seen[f"{call.outcome}: {call.detail[:100]}"] += 1
    return figures


@asynccontextmanager
async def _aws(session: aioboto3.Session, endpoint_url: str) -> AsyncIterator[dict[str, Any]]:
    async with AsyncExitStack() as stack:
        clients = {}
        for service in ("sqs", "sns", "dynamodb"):
            clients[service] = await stack.enter_async_context(
                session.client(service, endpoint_url=endpoint_url)
            )
        yield clients


class _Run:
    """The clients, their callers and the killer of one crash run."""

    CONNECT_TIMEOUT_S: Final = 60.0

    def __init__(
        self,
        plan: list[CallRecord],
        clients: int,
        in_flight: int,
        request_timeout: float,
        pool: WorkerPool,
        rng: random.Random,
        kill_every: tuple[float, float],
        kill_for_s: float | None,
    ) -> None:
        self.plan = plan
        self.clients = clients
        self.in_flight = in_flight
        self.request_timeout = request_timeout
        self.pool = pool
        self.rng = rng
        self.kill_every = kill_every
        self.kill_for_s = kill_for_s
        self.connected = 0
        self.ready = anyio.Event()
        self.go = anyio.Event()
        self.close = anyio.Event()
        self.done = 0
        self.all_done = anyio.Event()
        self.call_phase_s = math.inf
        self._callers: list[anyio.CancelScope] = []

    async def client(self, number: int, transport: Any) -> None:
        """One connection: connect and list the tools before any kill, make its calls, stay open
        until the run is over (late answers to it are then dropped by its transport)."""
        with anyio.CancelScope() as scope:
            scope.deadline = anyio.current_time() + self.CONNECT_TIMEOUT_S
            try:
                async with Client(transport, read_timeout_seconds=self.request_timeout + 20) as client:
                    await client.list_tools()  # call_tool validates results against the listing
                    scope.deadline = math.inf
                    self.connected += 1
                    if self.connected == self.clients:
                        self.ready.set()
                    await self.go.wait()
                    queue = [c for c in reversed(self.plan) if c.client == number]
                    async with anyio.create_task_group() as callers:
                        self._callers.append(callers.cancel_scope)
                        for _ in range(self.in_flight):
                            callers.start_soon(self._caller, client, queue)
                    await self.close.wait()
            except BaseException:
                if not self.ready.is_set():
                    logger.error("client %d could not connect; worker logs:\n%s", number, self.pool.tail())
                raise
        if scope.cancelled_caught:
            raise TimeoutError(f"client {number} could not connect within {self.CONNECT_TIMEOUT_S:g} s")

    async def _caller(self, client: Client, queue: list[CallRecord]) -> None:
        outer_bound = self.request_timeout + 40
        while queue:
            call = queue.pop()
            await _call(client, call, outer_bound)
            self.done += 1
            if self.done == len(self.plan):
                self.all_done.set()

    async def drive(self) -> None:
        """Start killing once every client is connected; stop when every call has an outcome."""
        with anyio.fail_after(self.CONNECT_TIMEOUT_S + 5):
            while not self.ready.is_set():
                self.pool.revive()
                if self.pool.unexpected_exits >= 2 * len(self.pool.processes):
                    raise RuntimeError(f"the workers keep exiting on their own:\n{self.pool.tail()}")
                with anyio.move_on_after(0.5):
                    await self.ready.wait()
        if not self.plan:
            self.go.set()
            return
        async with anyio.create_task_group() as background:
            background.start_soon(self._kill)
            background.start_soon(self._report)
            self.go.set()
            with anyio.move_on_after(self.call_phase_s) as bound:
                await self.all_done.wait()
            background.cancel_scope.cancel()
        if bound.cancelled_caught:
            logger.error("calls still open after %g s are cut off", self.call_phase_s)
            for scope in self._callers:
                scope.cancel()
            for call in self.plan:
                if call.outcome == Outcome.NO_OUTCOME and not call.detail:
                    call.detail = f"no outcome within the call phase ({self.call_phase_s:g} s)"
        self.pool.revive()
        logger.info(
            "all %d calls have an outcome; killing stopped after %d kills", self.done, self.pool.kills
        )

    async def _kill(self) -> None:
        ends = time.monotonic() + self.kill_for_s if self.kill_for_s is not None else math.inf
        while time.monotonic() < ends:
            await anyio.sleep(self.rng.uniform(*self.kill_every))
            self.pool.kill(self.rng.randrange(len(self.pool.processes)))
            self.pool.revive()

    async def _report(self) -> None:
        while True:
            await anyio.sleep(5)
            logger.info(
                "%d/%d calls have an outcome; %d kills so far", self.done, len(self.plan), self.pool.kills
            )


async def _call(client: Client, call: CallRecord, outer_bound: float) -> None:
    arguments = {"text": call.text} if call.tool == "echo" else {}
    began = time.monotonic()
    try:
        with anyio.fail_after(outer_bound):
            result = await client.call_tool(call.tool, arguments, meta={CALL_META: call.index})
    except TimeoutError:
        call.outcome, call.detail = Outcome.NO_OUTCOME, f"no outcome within {outer_bound:g} s"
    except MCPError as exc:
        if exc.code == REQUEST_TIMEOUT:
            timed_out_here = exc.message.startswith(_TRANSPORT_TIMEOUT_PREFIX)
            call.outcome = Outcome.TIMEOUT if timed_out_here else Outcome.SESSION_TIMEOUT
        else:
            call.outcome = Outcome.WORKER_ERROR
        call.detail = f"{exc.code} {exc.message}"
    except Exception as exc:
        call.outcome, call.detail = Outcome.LOST, repr(exc)
    else:
        text = next((getattr(c, "text", None) for c in result.content), None)
        if result.is_error:
            call.outcome, call.detail = Outcome.TOOL_ERROR, str(text)
            return
        call.outcome = Outcome.RESULT
        if call.tool == "echo":
            call.wrong = text != call.text
        else:
            try:
                call.ticket = int(str(text))
            except ValueError:
                call.wrong = True
        if call.wrong:
            call.detail = f"wrong answer {text!r}"
    finally:
        call.seconds = time.monotonic() - began


async def _drain(sqs: Any, queue_url: str, timeout: float, pool: WorkerPool) -> int:
    """Wait (bounded) until the request queue holds nothing; return what is left in it."""
    left = 0
    with anyio.move_on_after(timeout):
        while True:
            pool.revive()
            attributes = (
                await sqs.get_queue_attributes(
                    QueueUrl=queue_url,
                    AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
                )
            )["Attributes"]
            left = sum(int(v) for v in attributes.values())
            if left == 0:
                return 0
            await anyio.sleep(1)
    logger.warning("%d requests still in the request queue after %g s", left, timeout)
    return left


async def _read_dead_letters(sqs: Any, created: Provisioned, workers: Any, figures: CrashFigures) -> None:
    """Read every dead letter of the deployment's DLQs, match each to its call by `_meta`."""
    by_index = {c.index: c for c in figures.calls}
    for worker in workers:
        url = created.queue_urls[worker.dead_letter_queue]
        for _ in range(figures.sent // 10 + 50):
            response = await sqs.receive_message(
                QueueUrl=url,
                MaxNumberOfMessages=10,
                WaitTimeSeconds=0,
                VisibilityTimeout=600,
                MessageAttributeNames=["All"],
                AttributeNames=["All"],
            )
            messages = response.get("Messages", [])
            if not messages:
                break
            for message in messages:
                figures.dlq_messages += 1
                attributes = message.get("MessageAttributes") or {}
                reason = (attributes.get(Attr.DLQ_REASON.value) or {}).get("StringValue")
                index = _call_index(message.get("Body", ""))
                call = by_index.get(index) if index is not None else None
                if call is None:
                    figures.dlq_unknown_call += 1
                else:
                    figures.dlq_call_outcomes[call.outcome] += 1
                if reason:
                    figures.dlq_with_reason += 1
                    figures.dlq_reasons[reason.split(":", 1)[0]] += 1
                else:
                    receives = message.get("Attributes", {}).get("ApproximateReceiveCount")
                    if int(receives or 0) >= figures.max_receive_count + LAST_WORD_DELIVERIES:
                        figures.dlq_spent_without_reason += 1
                if not reason and len(figures.dlq_samples) < 20:
                    outcome = call.outcome if call else "?"
                    figures.dlq_samples.append(
                        f"call {index} ({outcome}), message {message.get('MessageId')}, receives {receives}"
                    )


def _call_index(body: str) -> int | None:
    with contextlib.suppress(ValueError, TypeError, AttributeError):
        index = json.loads(body)["params"]["_meta"][CALL_META]
        return index if isinstance(index, int) else None
    return None


async def _read_ledger(dynamodb: Any, table: str, figures: CrashFigures) -> None:
    """The example's tickets and counter and the request ledger's records, from the ledger table."""
    arguments: dict[str, Any] = {"TableName": table}
    for _ in range(10_000):
        page = await dynamodb.scan(**arguments)
        for item in page.get("Items", []):
            key = item["id"]["S"]
            if key == _COUNTER_KEY:
                figures.ticket_counter = int(item["issued"]["N"])
            elif key.startswith(_TICKET_PREFIX):
                figures.tickets_stored += 1
                figures.stored_numbers[int(item["ticket"]["N"])] += 1
            else:
                figures.ledger_records[item.get("status", {}).get("S", "?")] += 1
        if "LastEvaluatedKey" not in page:
            break
        arguments["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    figures.tickets_not_stored = sum(
        1 for c in figures.calls if c.ticket is not None and c.ticket not in figures.stored_numbers
    )


async def _remove(aws: dict[str, Any], table: str | None, created: Provisioned | None) -> None:
    """Delete what the run created (best effort): it lives in a shared moto server."""
    if created is not None:
        for url in created.queue_urls.values():
            with contextlib.suppress(Exception):
                await aws["sqs"].delete_queue(QueueUrl=url)
        with contextlib.suppress(Exception):
            await aws["sns"].delete_topic(TopicArn=created.topic_arn)
    if table:
        with contextlib.suppress(Exception):
            await aws["dynamodb"].delete_table(TableName=table)


# -- standalone ------------------------------------------------------------------------------------


@contextlib.contextmanager
def _moto() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--in-flight", type=int, default=20, help="outstanding calls per client")
    parser.add_argument("--kill-min", type=float, default=1.0)
    parser.add_argument("--kill-max", type=float, default=3.0)
    parser.add_argument("--timeout-s", type=int, default=5, help="server timeout (visibility = 6x)")
    parser.add_argument("--slots", type=int, default=2, help="poll loops per worker process")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--log-dir", type=Path, default=None)
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    parser.add_argument("--verbose-workers", action="store_true", help="workers log every record")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logger.setLevel(logging.INFO)
    with _moto() as endpoint:
        figures = anyio.run(
            lambda: run_crash(
                endpoint,
                "us-east-1",
                args.calls,
                args.clients,
                (args.kill_min, args.kill_max),
                args.workers,
                in_flight=args.in_flight,
                timeout_s=args.timeout_s,
                slots_per_worker=args.slots,
                seed=args.seed,
                log_dir=args.log_dir,
                verbose_workers=args.verbose_workers,
            )
        )
    print(figures.table())
    if args.json:
        print(json.dumps(figures.summary()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
