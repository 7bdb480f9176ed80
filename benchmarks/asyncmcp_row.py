"""The benchmark's row for the nearest peer library, asyncmcp, measured on the benchmark's own stack.

asyncmcp needs `mcp<2`, so it runs in a venv of its own (`peer_python`: built once from
benchmarks/peer/requirements.txt, cached under `~/.cache/dmcp-aws/asyncmcp-venv-<hash>`) as a
subprocess (benchmarks/peer/asyncmcp_peer.py) that serves `echo` over asyncmcp's SNS+SQS
transport on the same moto. `Peer.callers` turns it into lanes like the other variants': each
call is one line to the subprocess and one line back, so performance.py interleaves it with the
floor and dMCP call by call. Each reply carries the subprocess's AWS calls so far (its clients and
its server), which are added to the benchmark's own count.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager, suppress
from dataclasses import dataclass, field
from itertools import count as numbers
from pathlib import Path
from typing import IO, Any

import anyio
from anyio.abc import ByteSendStream, Process
from anyio.streams.buffered import BufferedByteReceiveStream

from dmcp_aws.local.stack import RunningStack

PEER = Path(__file__).resolve().parent / "peer"
REQUIREMENTS = PEER / "requirements.txt"
SCRIPT = PEER / "asyncmcp_peer.py"
KEY = "asyncmcp"
"""The peer's name among the benchmark's variants."""
READY_SECONDS = 120
PIP_SECONDS = 900

Call = Callable[[], Awaitable[Any]]
Pipes = tuple[ByteSendStream, BufferedByteReceiveStream]
"""The peer's stdin, and its stdout read line by line."""


class PeerUnavailable(Exception):
    """Why the asyncmcp row is left out."""


def pinned_version(requirements: str, package: str = "asyncmcp") -> str:
    """The version `requirements` pins `package` to (`name==version`)."""
    for line in requirements.splitlines():
        name, _, pinned = line.partition("==")
        if name.strip().lower() == package and pinned:
            return pinned.strip()
    raise PeerUnavailable(f"{package} is not pinned in {REQUIREMENTS.name}")


@dataclass(frozen=True)
class Reply:
    """One line from the peer: the answer to request `id`, with the peer's AWS calls so far."""

    id: int
    aws_calls: Counter[str]
    error: str | None = None


def parse_reply(line: bytes | str) -> Reply:
    """A reply line (`{"id": 7, "aws_calls": {...}}` or `{"id": 7, "error": "..."}`)."""
    message = json.loads(line)
    return Reply(int(message["id"]), Counter(message.get("aws_calls", {})), message.get("error"))


def _cache_dir() -> Path:
    """`$DMCP_AWS_CACHE_DIR`, else `$XDG_CACHE_HOME/dmcp-aws`, else `~/.cache/dmcp-aws`."""
    if os.environ.get("DMCP_AWS_CACHE_DIR"):
        return Path(os.environ["DMCP_AWS_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dmcp-aws"


def _run(command: list[str], what: str) -> None:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=PIP_SECONDS)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise PeerUnavailable(f"{what}: {error}") from error
    if done.returncode != 0:
        last = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()[-1]
        raise PeerUnavailable(f"{what}: {last}")


def peer_python() -> Path:
    """The peer venv's interpreter: built with this interpreter's `venv` and pip from
    requirements.txt on first use (in a staging folder renamed into place when complete), then
    reused; a new hash of the requirements or of the Python version makes a new one."""
    key = hashlib.sha256(REQUIREMENTS.read_bytes() + sys.version.encode()).hexdigest()[:12]
    target = _cache_dir() / f"asyncmcp-venv-{key}"
    if not (target / ".complete").exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=target.name + ".build-", dir=target.parent))
        try:
            _run([sys.executable, "-m", "venv", str(staging)], "python -m venv failed")
            pip = [str(staging / "bin" / "python"), "-m", "pip", "install", "--quiet"]
            _run([*pip, "--disable-pip-version-check", "-r", str(REQUIREMENTS)], "pip install failed")
            (staging / ".complete").touch()
            staging.rename(target)
        except OSError:  # another run renamed its own into place first
            if not (target / ".complete").exists():
                raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return target / "bin" / "python"


@dataclass
class Peer:
    """The asyncmcp row's state: its interpreter, or why it is left out."""

    python: Path | None = None
    skipped: str | None = None
    version: str = field(default_factory=lambda: pinned_version(REQUIREMENTS.read_text()))

    @classmethod
    def prepare(cls, wanted: bool) -> Peer:
        """Build or reuse the venv (before any measuring: pip is slow); never raises."""
        if not wanted:
            return cls(skipped="--no-peer")
        try:
            return cls(python=peer_python())
        except (PeerUnavailable, OSError) as why:
            return cls(skipped=str(why))

    @property
    def label(self) -> str:
        return f"asyncmcp {self.version}"

    @asynccontextmanager
    async def callers(
        self, stack: RunningStack, lanes: int, count: Callable[[Counter[str]], None]
    ) -> AsyncIterator[dict[str, list[Call]]]:
        """`{KEY: lanes}`: `lanes` asyncmcp clients calling `echo`; `{}` if the peer cannot run
        (the reason is kept in `skipped`). `count` receives the peer's AWS calls as they come."""
        async with AsyncExitStack() as exits:
            callers: dict[str, list[Call]] = {}
            if self.python is not None:
                try:
                    pipes = await exits.enter_async_context(self._process(stack, lanes))
                    callers[KEY] = await exits.enter_async_context(_lanes(pipes, lanes, count))
                except PeerUnavailable as why:
                    self.skipped = str(why)
            yield callers

    @asynccontextmanager
    async def _process(self, stack: RunningStack, lanes: int) -> AsyncIterator[Pipes]:
        """The peer subprocess, ready (its clients connected); stdin closed and waited for on exit."""
        assert self.python is not None
        credentials = await (await stack.session().get_credentials()).get_frozen_credentials()
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")} | {
            "AWS_ACCESS_KEY_ID": credentials.access_key,
            "AWS_SECRET_ACCESS_KEY": credentials.secret_key,
        }
        command = [str(self.python), str(SCRIPT), "--endpoint-url", stack.endpoint_url]
        command += ["--region", stack.region, "--clients", str(lanes)]
        with tempfile.TemporaryFile() as stderr:
            process = await anyio.open_process(command, stderr=stderr, env=env)
            assert process.stdin is not None and process.stdout is not None
            pipes = process.stdin, BufferedByteReceiveStream(process.stdout)
            try:
                with anyio.fail_after(READY_SECONDS):
                    ready = await pipes[1].receive_until(b"\n", 1 << 16)
                if "ready" not in json.loads(ready):
                    raise ValueError(ready[:200])
            except (anyio.EndOfStream, anyio.IncompleteRead, TimeoutError, ValueError) as error:
                await _end(process, 0)
                raise PeerUnavailable(f"the peer did not start: {_tail(stderr) or repr(error)}") from error
            try:
                yield pipes
            finally:
                await process.stdin.aclose()  # the peer leaves at the end of its stdin
                await _end(process, 5)


async def _end(process: Process, grace: float) -> None:
    """Wait up to `grace` seconds for `process` to exit, then kill it."""
    with anyio.move_on_after(grace):
        await process.wait()
    with suppress(ProcessLookupError):
        process.kill()
    await process.wait()


def _tail(stderr: IO[bytes]) -> str:
    stderr.seek(0)
    lines = stderr.read().decode(errors="replace").strip().splitlines()
    return " / ".join(lines[-3:])


@asynccontextmanager
async def _lanes(
    pipes: Pipes, lanes: int, count: Callable[[Counter[str]], None]
) -> AsyncIterator[list[Call]]:
    """One `Call` per peer client; a reader task matches replies to calls by id."""
    stdin, stdout = pipes
    waiting: dict[int, anyio.Event] = {}
    replies: dict[int, Reply] = {}
    seen: Counter[str] = Counter()
    ids = numbers()

    async def read() -> None:
        nonlocal seen
        try:
            while True:
                reply = parse_reply(await stdout.receive_until(b"\n", 1 << 20))
                count(reply.aws_calls - seen)
                seen = reply.aws_calls
                replies[reply.id] = reply
                waiting.pop(reply.id).set()
        except (anyio.EndOfStream, anyio.IncompleteRead, anyio.ClosedResourceError):
            for id, done in waiting.items():  # the peer is gone: fail whoever waits
                replies[id] = Reply(id, Counter(), "the asyncmcp peer exited")
                done.set()

    def lane(number: int) -> Call:
        async def call() -> None:
            id = next(ids)
            waiting[id] = done = anyio.Event()
            await stdin.send(json.dumps({"id": id, "lane": number}).encode() + b"\n")
            await done.wait()
            if (error := replies.pop(id).error) is not None:
                raise RuntimeError(f"asyncmcp peer, call {id} on client {number}: {error}")

        return call

    async with anyio.create_task_group() as tg:
        tg.start_soon(read)
        yield [lane(number) for number in range(lanes)]
        tg.cancel_scope.cancel()
