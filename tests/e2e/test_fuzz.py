"""Fuzz: 600 malformed or hostile messages against the running stack, none dropped.

The cases (`fuzz_cases.py`, seeded, so the same every run) are mutated bodies, ids of every JSON
type, deep and huge payloads, unknown methods, params of wrong shapes, notifications, responses
sent by a client, and odd attributes (wire version, reply addresses that are missing, foreign,
malformed or gone, missing connection ids, `mcp.server` missing, unknown, of other types or an
array). Most go straight to the example server's request queue, some through the topic. Each
has a unique body (answers are matched by the digest they carry, dead letters by their body)
and its expected fate is known before it is sent. The test asserts:

- every case has its outcome: an answer with its own id in the reply queue it named (carrying
  its `dmcp.conn` and digest), or one dead letter with a reason (never the connection's secret),
  or none for a notification or for an answer to a per-connection queue that is gone (counted
  and dropped by design); for those two the worker's own INFO log is the evidence it saw them;
- no case has two outcomes from two workers (copies SNS delivered to two of them); two from one
  worker (moto now and then hands one message to two pollers: at least once) are reported;
- nothing lands in a queue nobody validly named (bystander reply queues stay empty), no answer
  lands in another of the sender's queues, no dead letter carries the connection's secret;
- the request queues drain (nothing left for retry) and no record failed;
- the worker answers an ordinary `mcp.Client` before, between the chunks and after.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import secrets
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import pytest
from aiobotocore.config import AioConfig
from mcp import Client

from dmcp_aws.client import sqs_client_transport
from dmcp_aws.local.stack import RunningStack
from dmcp_aws.wire import from_sqs_attributes
from dmcp_aws.worker import conn_ref

from .fuzz_cases import (
    ANSWER,
    CONN,
    DIGEST,
    DLQ,
    FORGED_REASON,
    GONE,
    NOTIFICATION,
    QUEUE,
    REASON,
    REPLY_TO,
    SERVER,
    TOPIC,
    Case,
    Layout,
    answer_id_matches,
    generate,
)

pytestmark = pytest.mark.anyio

CHUNKS = 5
SETTLE_S = 45
"""Deadline for every outcome, after the last message is sent."""
GRACE_S = 3
"""How long to keep watching once everything arrived, for late duplicates and strays."""
HEALTH_TIMEOUT_S = 30
MAX_BATCH_BYTES = 240 * 1024


@dataclass
class Seen:
    """A message found in one of the watched queues."""

    queue: str
    body: str
    attributes: dict[str, str]


@dataclass
class Observed:
    replies: dict[str, list[Seen]] = field(default_factory=lambda: defaultdict(list))
    """Answers (JSON-RPC responses and errors) by the request digest they carry."""
    progress: dict[str, list[Seen]] = field(default_factory=lambda: defaultdict(list))
    """Request-scoped notifications sent to a reply queue, by request digest."""
    dead: dict[str, list[Seen]] = field(default_factory=lambda: defaultdict(list))
    """Dead letters by body."""
    strays: list[str] = field(default_factory=list)
    """Messages where none may be: each is a violation."""
    foreign_dead: list[tuple[str, str]] = field(default_factory=list)
    """(queue URL, receipt handle) of dead letters of other tests, made visible again at the end."""
    last_at: float = 0.0
    """When the last outcome of a case arrived."""


class WorkerLog(logging.Handler):
    """The worker's own account of what it did with each record (its INFO lines): the only trace
    a notification, or an answer to a gone per-connection queue, leaves."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.notifications: set[str] = set()
        """Conn refs of records the worker took for client notifications."""
        self.elsewhere: set[str] = set()
        """Conn refs of records the worker left to another worker."""
        self.gone: set[str] = set()
        """Reply queues found gone (a per-connection queue whose client left)."""

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        ref = getattr(record, "dmcp_conn_ref", None)
        if message.startswith("client notification") and ref:
            self.notifications.add(ref)
        elif message.startswith("another worker answers this copy") and ref:
            self.elsewhere.add(ref)
        elif match := re.match(r"reply queue (\S+) is gone", message):
            self.gone.add(match[1])


@pytest.fixture
def worker_log() -> Any:
    logger = logging.getLogger("dmcp_aws.worker")
    handler, level = WorkerLog(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


@pytest.mark.timeout(240)
async def test_hostile_messages_are_each_answered_or_dead_lettered_and_none_is_dropped(
    stack: RunningStack,
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    worker_log: WorkerLog,
) -> None:
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    capfd.readouterr()
    started = time.monotonic()
    session = stack.session()
    config = AioConfig(max_pool_connections=50)
    async with (
        session.client("sqs", endpoint_url=stack.endpoint_url, config=config) as sqs,
        session.client("sns", endpoint_url=stack.endpoint_url) as sns,
    ):
        layout, senders, bystanders = await _create_queues(sqs, stack)
        try:
            cases = generate(layout)
            await _run(stack, sqs, sns, layout, senders, bystanders, cases, capfd, worker_log, started)
        finally:
            for url in [*senders.values(), *bystanders.values()]:
                await sqs.delete_queue(QueueUrl=url)


async def _run(
    stack: RunningStack,
    sqs: Any,
    sns: Any,
    layout: Layout,
    senders: dict[str, str],
    bystanders: dict[str, str],
    cases: list[Case],
    capfd: pytest.CaptureFixture[str],
    worker_log: WorkerLog,
    started: float,
) -> None:
    violations: list[str] = []
    health: list[float] = []
    example, unrouted = stack.worker("example"), stack.worker("unrouted")
    requests_url = stack.queue_url(example.request_queue)
    request_queues = [requests_url, stack.queue_url(unrouted.request_queue)]
    dead_letter_queues = {
        example.dead_letter_queue: stack.queue_url(example.dead_letter_queue),
        unrouted.dead_letter_queue: stack.queue_url(unrouted.dead_letter_queue),
    }
    provisioned = [stack.queue_url(q.name) for q in stack.topology.queues if q.role == "reply"]
    provisioned_before = {url: await _depth(sqs, url) for url in provisioned}
    by_digest = {case.digest: case for case in cases}
    by_body = {case.body: case for case in cases}
    by_ref = {f"(conn ref {conn_ref(case.conn)})": case for case in cases if case.conn}
    observed = Observed()
    stop = anyio.Event()

    def on_reply(queue: str, body: str, attributes: dict[str, str]) -> bool:
        case = by_digest.get(attributes.get(DIGEST, ""))
        if case is None:
            observed.strays.append(f"{queue}: a message that answers no fuzz case: {body[:200]!r}")
        elif _is_notification(body):
            observed.progress[case.digest].append(Seen(queue, body, attributes))
        else:
            observed.replies[case.digest].append(Seen(queue, body, attributes))
            observed.last_at = time.monotonic()
        return True

    def on_bystander(queue: str, body: str, attributes: dict[str, str]) -> bool:
        case = by_digest.get(attributes.get(DIGEST, ""))
        what = case.describe() if case else repr(body[:200])
        observed.strays.append(f"bystander {queue} received a message: {what}")
        return True

    def on_dead_letter(queue: str, body: str, attributes: dict[str, str]) -> bool:
        case = by_body.get(body)
        if case is not None:
            observed.dead[body].append(Seen(queue, body, attributes))
            observed.last_at = time.monotonic()
            return True
        if (digest := attributes.get(DIGEST)) in by_digest:
            observed.strays.append(
                f"{queue} holds a reply to a fuzz case: {by_digest[digest].describe()} -> {body[:200]!r}"
            )
            return True
        reference = re.search(r"\(conn ref [0-9a-f]{12}\)$", attributes.get(REASON, ""))
        if reference and (case := by_ref.get(reference[0])) is not None:
            observed.strays.append(
                f"{queue}: dead letter of {case.describe()} with another body: {body[:200]!r}"
            )
            return True
        return False  # another test's dead letter: leave it

    async with anyio.create_task_group() as watchers:
        for name, url in senders.items():
            watchers.start_soon(_watch, sqs, url, name, on_reply, stop, observed)
        for name, url in bystanders.items():
            watchers.start_soon(_watch, sqs, url, name, on_bystander, stop, observed)
        for name, url in dead_letter_queues.items():
            watchers.start_soon(_watch, sqs, url, name, on_dead_letter, stop, observed)

        transport = sqs_client_transport(stack.topic_target("example"), **stack.client_options())
        async with Client(transport) as client:
            await _health(client, "before the fuzz", health, violations)
            size = -(-len(cases) // CHUNKS)
            for number, start in enumerate(range(0, len(cases), size), 1):
                violations += await _send(sqs, sns, stack, requests_url, cases[start : start + size])
                sent_at = time.monotonic()
                await _health(client, f"after chunk {number} of {CHUNKS}", health, violations)
            drained = await _settle(sqs, cases, observed, request_queues, sent_at + SETTLE_S)
            settled_s = max(0.0, observed.last_at - sent_at)
        async with Client(
            sqs_client_transport(stack.topic_target("example"), **stack.client_options())
        ) as fresh:
            await _health(fresh, "a new client after the fuzz", health, violations)
        stop.set()

    for url, handle in observed.foreign_dead:
        with contextlib.suppress(Exception):  # best effort: another test's message, gone or not
            await sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=handle, VisibilityTimeout=0)
    if not drained:
        violations.append("the request queues did not drain: records are left for retry (see FailedRecords)")
    for url, before in provisioned_before.items():
        if (after := await _depth(sqs, url)) != before:
            violations.append(f"provisioned reply queue {url} went from {before} to {after} messages")
    violations += observed.strays
    outcomes, duplicates, case_violations = _judge(cases, observed, dead_letter_queues, worker_log)
    violations += case_violations
    metrics = _metrics(capfd.readouterr().out)
    # A deferred copy (another copy of it was being handled) is reported failed on purpose, so
    # that it comes back; any other failure would be a record left to retry for no reason.
    failed_records = sum(m["FailedRecords"] - m["DeferredWhileInProgress"] for m in metrics.values())
    if failed_records:
        violations.append(f"{failed_records} records failed and were left for retry: {dict(metrics)}")

    report = _report(
        cases, outcomes, duplicates, observed.progress, metrics, health, started, settled_s, violations
    )
    with capfd.disabled():
        print(report)
    assert not violations, report


# ---------------------------------------------------------------------------------------------
# setup and sending


async def _create_queues(sqs: Any, stack: RunningStack) -> tuple[Layout, dict[str, str], dict[str, str]]:
    tag = secrets.token_hex(3)
    prefix, per_connection = stack.reply_prefix, stack.client_connection_prefix()
    sender_names = [f"{prefix}fuzz-sender{i}-{tag}" for i in range(4)]
    sender_names += [f"{per_connection}fuzzsender{tag}", f"{prefix}fuzz-fifo-{tag}.fifo"]
    bystander_names = [f"{prefix}fuzz-bystander{i}-{tag}" for i in range(2)]
    bystander_names += [f"{per_connection}bystander{tag}", f"{prefix}fuzz-bystander-{tag}.fifo"]
    urls: dict[str, str] = {}
    for name in sender_names + bystander_names:
        attributes = {"FifoQueue": "true"} if name.endswith(".fifo") else {}
        urls[name] = str((await sqs.create_queue(QueueName=name, Attributes=attributes))["QueueUrl"])
    sample = urls[sender_names[0]]
    endpoint, account, _ = sample.rsplit("/", 2)
    provisioned = [q.name for q in stack.topology.queues if q.role == "reply"]
    layout = Layout(
        endpoint=endpoint,
        account=account,
        region=stack.region,
        reply_prefix=prefix,
        connection_prefix=per_connection,
        senders=tuple(sender_names),
        bystanders=tuple(bystander_names + provisioned),
        not_reply_queues=tuple(q.name for q in stack.topology.queues if q.role != "reply"),
    )
    return (
        layout,
        {n: urls[n] for n in sender_names},
        {n: urls[n] for n in bystander_names},
    )


def _batches(cases: list[Case], limit: int) -> list[list[Case]]:
    batches: list[list[Case]] = []
    current: list[Case] = []
    size = 0
    for case in cases:
        weight = len(case.body.encode("utf-8", "surrogatepass")) + sum(
            len(k) + len(a.value) + 10 for k, a in case.attributes.items()
        )
        if current and (len(current) == 10 or size + weight > limit):
            batches.append(current)
            current, size = [], 0
        current.append(case)
        size += weight
    if current:
        batches.append(current)
    return batches


async def _send(sqs: Any, sns: Any, stack: RunningStack, requests_url: str, chunk: list[Case]) -> list[str]:
    """Send a chunk in batches; a message SQS or SNS refuses is a broken case (a violation)."""
    problems: list[str] = []
    by_id = {f"m{case.index}": case for case in chunk}
    direct = [case for case in chunk if case.via == QUEUE]
    for batch in _batches(direct, MAX_BATCH_BYTES * 4):
        response = await sqs.send_message_batch(
            QueueUrl=requests_url,
            Entries=[
                {
                    "Id": f"m{case.index}",
                    "MessageBody": case.body,
                    "MessageAttributes": {k: a.to_sqs() for k, a in case.attributes.items()},
                }
                for case in batch
            ],
        )
        problems += [f"SQS refused {by_id[f['Id']].describe()}: {f}" for f in response.get("Failed", [])]
    published = [case for case in chunk if case.via == TOPIC]
    for batch in _batches(published, MAX_BATCH_BYTES):
        response = await sns.publish_batch(
            TopicArn=stack.topic_arn,
            PublishBatchRequestEntries=[
                {
                    "Id": f"m{case.index}",
                    "Message": case.body,
                    "MessageAttributes": {k: a.to_sqs() for k, a in case.attributes.items()},
                }
                for case in batch
            ],
        )
        problems += [f"SNS refused {by_id[f['Id']].describe()}: {f}" for f in response.get("Failed", [])]
    return problems


async def _health(client: Client, label: str, timings: list[float], violations: list[str]) -> None:
    """An ordinary call through the stack must succeed: the worker is up."""
    started = time.monotonic()
    try:
        with anyio.fail_after(HEALTH_TIMEOUT_S):
            result = await client.call_tool("echo", {"text": label})
        text = result.content[0].text  # type: ignore[union-attr]
        if text != label:
            violations.append(f"health check {label!r} got {text!r}")
    except Exception as exc:
        violations.append(f"health check {label!r} failed: {type(exc).__name__}: {exc}")
    timings.append(time.monotonic() - started)


# ---------------------------------------------------------------------------------------------
# watching the queues


async def _watch(
    sqs: Any,
    url: str,
    name: str,
    sink: Callable[[str, str, dict[str, str]], bool],
    stop: anyio.Event,
    observed: Observed,
) -> None:
    """Receive until `stop`; delete what `sink` claims, keep the rest hidden until the end.

    Short polls only (1 s): a long poll cancelled client-side lives on in the service."""
    while not stop.is_set():
        response = await sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=1,
            MessageAttributeNames=["All"],
            VisibilityTimeout=120,
        )
        claimed = []
        for message in response.get("Messages", []):
            attributes = from_sqs_attributes(message.get("MessageAttributes"))
            if sink(name, message["Body"], attributes):
                claimed.append(message["ReceiptHandle"])
            else:
                observed.foreign_dead.append((url, message["ReceiptHandle"]))
        for start in range(0, len(claimed), 10):
            entries = [{"Id": str(i), "ReceiptHandle": h} for i, h in enumerate(claimed[start : start + 10])]
            await sqs.delete_message_batch(QueueUrl=url, Entries=entries)


async def _depth(sqs: Any, url: str) -> int:
    attributes = (
        await sqs.get_queue_attributes(
            QueueUrl=url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(
        attributes["ApproximateNumberOfMessagesNotVisible"]
    )


def _has_outcome(case: Case, observed: Observed) -> bool:
    wanted = {case.expect} | case.also
    return (ANSWER in wanted and bool(observed.replies.get(case.digest))) or (
        DLQ in wanted and bool(observed.dead.get(case.body))
    )


async def _settle(
    sqs: Any, cases: list[Case], observed: Observed, request_queues: list[str], deadline: float
) -> bool:
    """Wait until every visible outcome arrived and the request queues drained (then a grace
    period for late duplicates), or the deadline. Returns whether the queues drained."""
    visible = [case for case in cases if case.expect in (ANSWER, DLQ)]
    drained = False
    while time.monotonic() < deadline:
        await anyio.sleep(0.5)
        if not all(_has_outcome(case, observed) for case in visible):
            continue
        drained = all([await _depth(sqs, url) == 0 for url in request_queues])
        if drained:
            await anyio.sleep(GRACE_S)
            return True
    return all([await _depth(sqs, url) == 0 for url in request_queues])


# ---------------------------------------------------------------------------------------------
# judging


def _judge(
    cases: list[Case], observed: Observed, dead_letter_queues: dict[str, str], log: WorkerLog
) -> tuple[Counter[str], Counter[str], list[str]]:
    """Each case's outcome, the duplicates tolerated, and the violations."""
    outcomes: Counter[str] = Counter()
    duplicates: Counter[str] = Counter()
    violations: list[str] = []
    for case in cases:
        replies = observed.replies.get(case.digest, [])
        dead = observed.dead.get(case.body, [])
        problems: list[str] = []
        for reply in replies:
            problems += _check_reply(case, reply)
        for letter in dead:
            problems += _check_dead_letter(case, letter)
        for note in observed.progress.get(case.digest, []):
            if note.queue != case.reply_queue or note.attributes.get(CONN) != case.conn:
                problems.append(f"a notification for it landed in {note.queue} with another dmcp.conn")
        wanted = {case.expect} | case.also
        got = ANSWER if replies else DLQ if dead else None
        if replies and dead:
            problems.append(f"both answered and dead-lettered ({len(replies)} + {len(dead)})")
        elif got is None and case.expect in (ANSWER, DLQ):
            problems.append("dropped: neither answered nor dead-lettered")
            if case.conn and conn_ref(case.conn) in log.elsewhere:
                problems.append("its worker logged 'another worker answers this copy' (and none did)")
        elif got is None and case.expect == NOTIFICATION and conn_ref(case.conn) not in log.notifications:
            # A worker that leaves a notification to "another worker" saw it too: no answer is due.
            if conn_ref(case.conn) not in log.elsewhere:
                problems.append("no worker logged it as a client notification: never seen by a worker")
        elif got is None and case.expect == GONE and _queue_name(case) not in log.gone:
            problems.append(f"no worker found its reply queue {_queue_name(case)} gone (not answered)")
        elif got is not None and got not in wanted:
            problems.append(f"{got} but expected {case.expect}: {(replies or dead)[0].body[:300]!r}")
        workers = {_worker_of(seen, dead_letter_queues) for seen in [*replies, *dead]}
        if len(workers) > 1:
            problems.append(
                f"{len(replies) + len(dead)} outcomes from {len(workers)} workers: {sorted(workers)}"
            )
        elif len(replies) + len(dead) > 1:
            duplicates[f"#{case.index} {case.via}: {got}"] += 1  # one worker, the record delivered twice
        if problems:
            violations.append(f"{case.describe()}\n      -> " + "\n      -> ".join(problems))
        outcomes[_outcome_name(case, replies, dead)] += 1
    return outcomes, duplicates, violations


def _check_reply(case: Case, reply: Seen) -> list[str]:
    problems = []
    if case.reply_queue is not None and reply.queue != case.reply_queue:
        problems.append(f"answer landed in {reply.queue}, not in the queue it named ({case.reply_queue})")
    if reply.attributes.get(CONN) != case.conn:
        problems.append(f"answer carries dmcp.conn {reply.attributes.get(CONN)!r}, not the sender's")
    if reply.attributes.get("dmcp.version") != "1":
        problems.append(f"answer carries dmcp.version {reply.attributes.get('dmcp.version')!r}")
    try:
        answer = json.loads(reply.body)
    except ValueError:
        return [*problems, f"answer is not JSON: {reply.body[:200]!r}"]
    if ("result" in answer) == ("error" in answer):
        problems.append(f"answer is neither a result nor an error: {reply.body[:200]!r}")
    if case.has_id and not answer_id_matches(case.request_id, answer.get("id")):
        problems.append(f"answer id {answer.get('id')!r:.80} is not the request's {case.request_id!r:.80}")
    if case.error_code is not None and (answer.get("error") or {}).get("code") != case.error_code:
        problems.append(f"expected error {case.error_code}, got {reply.body[:300]!r}")
    return problems


def _check_dead_letter(case: Case, letter: Seen) -> list[str]:
    problems = []
    reason = letter.attributes.get(REASON, "")
    if not reason:
        problems.append("dead letter without dmcp.dlq-reason")
    elif reason.startswith(FORGED_REASON):
        problems.append("dead letter kept the reason the client forged")
    elif case.expect == DLQ and case.reason and not reason.startswith(case.reason):
        problems.append(f"dead letter reason {reason[:200]!r}, expected {case.reason}")
    if CONN in letter.attributes:
        problems.append("dead letter carries the connection's secret dmcp.conn")
    if case.conn and f"(conn ref {conn_ref(case.conn)})" not in reason:
        problems.append(f"dead letter reason does not end with the conn ref: {reason[-80:]!r}")
    return problems


def _queue_name(case: Case) -> str:
    reply_to = case.attributes[REPLY_TO].text or ""
    return reply_to.rsplit("/", 1)[-1]


def _is_notification(body: str) -> bool:
    try:
        message = json.loads(body)
    except ValueError:
        return False
    return isinstance(message, dict) and "method" in message and "id" not in message


def _worker_of(seen: Seen, dead_letter_queues: dict[str, str]) -> str:
    if seen.queue in dead_letter_queues:
        return seen.queue.removesuffix("-dlq").rsplit("-", 1)[-1]
    server = seen.attributes.get(SERVER, "")
    return "example" if server == "example" else "unrouted"


def _outcome_name(case: Case, replies: list[Seen], dead: list[Seen]) -> str:
    if replies:
        try:
            return "answered: error" if "error" in json.loads(replies[0].body) else "answered: result"
        except ValueError:
            return "answered: not JSON"
    if dead:
        reason = dead[0].attributes.get(REASON, "")
        return f"dead-lettered: {re.split(r'[: ]', reason, maxsplit=1)[0] or '(no reason)'}"
    if case.expect == NOTIFICATION:
        return "notification (no answer needed)"
    if case.expect == GONE:
        return "answer to a gone per-connection queue (dropped by design)"
    return "DROPPED"


def _metrics(output: str) -> dict[str, Counter[str]]:
    """Sum the EMF metrics the workers printed, per service (worker threads print concurrently:
    a line may hold two documents)."""
    totals: dict[str, Counter[str]] = defaultdict(Counter)
    decoder = json.JSONDecoder()
    for start in (m.start() for m in re.finditer(re.escape('{"_aws"'), output)):
        try:
            document, _ = decoder.raw_decode(output, start)
        except ValueError:
            continue
        service = document.get("service", "?")
        for directive in document["_aws"]["CloudWatchMetrics"]:
            for metric in directive["Metrics"]:
                value = document.get(metric["Name"], 0)
                totals[service][metric["Name"]] += int(sum(value) if isinstance(value, list) else value)
    return totals


def _report(
    cases: list[Case],
    outcomes: Counter[str],
    duplicates: Counter[str],
    progress: dict[str, list[Seen]],
    metrics: dict[str, Counter[str]],
    health: list[float],
    started: float,
    settled_s: float,
    violations: list[str],
) -> str:
    lines = [
        "",
        f"fuzz: {len(cases)} messages ({sum(c.via == QUEUE for c in cases)} straight to the request queue, "
        f"{sum(c.via == TOPIC for c in cases)} through the topic) in {time.monotonic() - started:.1f} s; "
        f"outcomes settled {settled_s:.1f} s after the last send",
        "  expected: " + ", ".join(f"{k} {v}" for k, v in sorted(Counter(c.expect for c in cases).items())),
        "  outcomes:",
        *[f"    {count:4d}  {name}" for name, count in sorted(outcomes.items())],
        "  families: " + ", ".join(f"{k} {v}" for k, v in sorted(Counter(c.family for c in cases).items())),
        f"  duplicate deliveries (one worker, tolerated): {dict(duplicates) or 0}",
        f"  request-scoped notifications received: {sum(len(v) for v in progress.values())}",
        f"  health checks: {len(health)}, slowest {max(health, default=0):.2f} s",
        "  worker metrics: "
        + "; ".join(f"{s}: {dict(sorted(m.items()))}" for s, m in sorted(metrics.items())),
        f"  violations: {len(violations)}",
        *[f"    {v}" for v in violations[:40]],
    ]
    if len(violations) > 40:
        lines.append(f"    … and {len(violations) - 40} more")
    return "\n".join(lines)
