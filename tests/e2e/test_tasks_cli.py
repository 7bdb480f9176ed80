"""`dmcp call --task` and `dmcp task get|wait|cancel` against a running `dmcp dev`: each command a
separate process (a new connection and reply queue), as in separate shells."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.e2e.test_cli import Dev, running_dev

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dev]:
    with running_dev(tmp_path_factory.mktemp("dmcp-dev-tasks")) as (running, _):
        yield running


def _submit(dev: Dev, topic: str, seconds: float) -> str:
    done = dev.dmcp(
        "call", "slow_report", "--arg", f"topic={topic}", "--arg", f"seconds={seconds}", "--task", "--no-wait"
    )
    assert done.returncode == 0, done.stderr
    task_id = done.stdout.strip()
    assert task_id and " " not in task_id, done.stdout
    return task_id


def test_no_wait_prints_the_task_id_and_another_process_waits_for_the_result(dev: Dev) -> None:
    task_id = _submit(dev, "shells", 2)
    shown = dev.dmcp("task", "get", task_id)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["taskId"] == task_id
    waited = dev.dmcp("task", "wait", task_id)
    assert waited.returncode == 0, waited.stderr
    assert waited.stdout.strip().endswith("on shells: 10 sections"), waited.stdout
    assert f"task {task_id[:12]}… working" in waited.stderr or "completed" in waited.stderr, waited.stderr
    log = dev.log.read_text()  # `dmcp dev` printed a line for each: created, run, asked
    for line in ("tools/call slow_report → example TaskCreated", "task work slow_report → example TaskRun"):
        assert line in log, log
    assert f"tasks/get {task_id} → example Answered" in log, log


def test_call_task_waits_with_a_status_line(dev: Dev) -> None:
    done = dev.dmcp("call", "slow_report", "--arg", "topic=inline", "--arg", "seconds=1", "--task")
    assert done.returncode == 0, done.stderr
    task_id, result = done.stdout.strip().splitlines()
    assert result.endswith("on inline: 10 sections")
    assert f"task {task_id} is working" in done.stderr


def test_a_cancelled_task_waits_to_an_error(dev: Dev) -> None:
    task_id = _submit(dev, "stop", 20)
    cancelled = dev.dmcp("task", "cancel", task_id)
    assert cancelled.returncode == 0, cancelled.stderr
    waited = dev.dmcp("task", "wait", task_id)
    assert waited.returncode == 1 and "was cancelled" in waited.stderr, (waited.stdout, waited.stderr)


def test_an_unknown_task_is_a_short_error(dev: Dev) -> None:
    done = dev.dmcp("task", "get", "no-such-task")
    assert done.returncode != 0 and "Task not found" in done.stderr and "Traceback" not in done.stderr
