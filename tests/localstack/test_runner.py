"""The host-mode runner: loopback only, ports, and nothing left running after errors or kills."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import boto3
import pytest

from dmcp_localstack import HostLocalStack, PortInUseError, host_localstack, start_localstack
from dmcp_localstack.processes import run_processes
from dmcp_localstack.runner import health, port_is_free, still_running
from dmcp_localstack.venv import LOCALSTACK_DIR
from tests.localstack.support import ROLE, wait_for, zip_of

pytestmark = pytest.mark.localstack
ROOT = Path(__file__).resolve().parents[2]


def listeners(port: int) -> set[str]:
    """Local addresses listening on `port` (IPv4), from /proc/net/tcp."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, port_hex = local.split(":")
        if state == "0A" and int(port_hex, 16) == port:
            found.add(".".join(str(b) for b in bytes.fromhex(address)[::-1]))
    return found


def start_function(stack: HostLocalStack) -> None:
    """Create and invoke a function, so a function process is running too."""
    lam = boto3.client("lambda", **stack.boto_kwargs())
    lam.create_function(
        FunctionName="probe",
        Runtime="python3.13",
        Handler="app.handler",
        Role=ROLE,
        Code={"ZipFile": zip_of({"app.py": "def handler(e, c):\n    return 'ok'\n"})},
    )
    wait_for(lambda: lam.get_function_configuration(FunctionName="probe")["State"] == "Active")
    assert json.loads(lam.invoke(FunctionName="probe")["Payload"].read()) == "ok"


def test_gateway_listens_on_loopback_only(localstack: HostLocalStack) -> None:
    assert listeners(localstack.port) == {"127.0.0.1"}
    assert health(localstack.port) is not None


def test_taken_port_is_refused(localstack: HostLocalStack) -> None:
    with pytest.raises(PortInUseError):
        start_localstack(localstack.port)


def test_error_in_the_block_still_stops_everything() -> None:
    with pytest.raises(RuntimeError, match="test failed"), host_localstack(port=0) as stack:
        start_function(stack)
        assert len(still_running(stack)) >= 2  # LocalStack and the function's process
        raise RuntimeError("test failed")
    assert still_running(stack) == []
    assert port_is_free(stack.port)
    assert not stack.workdir.exists()


def test_killed_owner_takes_localstack_and_functions_down(tmp_path: Path) -> None:
    script = textwrap.dedent(f"""
        import json, sys, time
        sys.path[:0] = [{str(ROOT)!r}, {str(LOCALSTACK_DIR)!r}]
        from dmcp_localstack import host_localstack
        from tests.localstack.test_runner import start_function
        with host_localstack(port=0) as stack:
            start_function(stack)
            info = {{"run_id": stack.run_id, "port": stack.port, "workdir": str(stack.workdir)}}
            print(json.dumps(info), flush=True)
            time.sleep(600)
    """)
    owner = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert owner.stdout is not None
    started = json.loads(owner.stdout.readline())
    assert len(run_processes(started["run_id"])) >= 2
    os.kill(owner.pid, signal.SIGKILL)  # no finally, no atexit: only LocalStack's watchdog is left
    owner.wait()
    wait_for(lambda: run_processes(started["run_id"]) == [], timeout=20)
    assert port_is_free(started["port"])
    wait_for(lambda: not Path(started["workdir"]).exists(), timeout=5)


def test_cli_start_status_stop() -> None:
    from dmcp_localstack.runner import free_port

    port = str(free_port())

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "dmcp_localstack", *args, "--port", port],
            env={**os.environ, "PYTHONPATH": str(LOCALSTACK_DIR)},
            capture_output=True,
            text=True,
            timeout=90,
        )

    assert cli("start").returncode == 0
    try:
        status = cli("status")
        assert status.returncode == 0 and "running" in status.stdout
        assert f"AWS_ENDPOINT_URL=http://127.0.0.1:{port}" in cli("env").stdout
    finally:
        assert cli("stop").returncode == 0
    assert cli("status").returncode == 1
    assert port_is_free(int(port))
