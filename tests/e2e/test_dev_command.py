"""`dmcp dev` in one process, the README's client example in another, then Ctrl-C."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def readme_client_example() -> str:
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"<!-- client-example -->\n```python\n(.*?)```", readme, re.S)
    assert match, "README.md must keep its client example after <!-- client-example -->"
    return match.group(1)


def load_env_file(path: Path) -> dict[str, str]:
    pairs = (line.removeprefix("export ").split("=", 1) for line in path.read_text().splitlines() if line)
    return {key: value for key, value in pairs}


def test_readme_client_example_against_dmcp_dev(tmp_path: Path) -> None:
    env_file = tmp_path / "dev.env"
    dev = subprocess.Popen(
        [sys.executable, "-m", "dmcp_aws", "dev", "--env-file", str(env_file)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not env_file.exists():
            assert dev.poll() is None, dev.stdout.read() if dev.stdout else ""
            assert time.monotonic() < deadline, "dmcp dev did not start within 60 s"
            time.sleep(0.2)
        settings = load_env_file(env_file)
        assert settings["DMCP_ENDPOINT_URL"].startswith("http://127.0.0.1:")
        client_env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "DMCP_"))} | settings
        client = subprocess.run(
            [sys.executable, "-c", readme_client_example()],
            cwd=tmp_path,
            env=client_env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert client.returncode == 0, client.stderr
        assert client.stdout.strip() == "{'a': 2.0, 'b': 3.0, 'sum': 5.0}"

        def dmcp_call(tool: str, arguments: str) -> subprocess.CompletedProcess[str]:
            command = [sys.executable, "-m", "dmcp_aws", "call", tool, "--json", arguments]
            return subprocess.run(command, env=client_env, capture_output=True, text=True, timeout=60)

        added = dmcp_call("add", '{"a": 20, "b": 22}')
        assert added.returncode == 0, added.stderr
        assert json.loads(added.stdout) == {"a": 20.0, "b": 22.0, "sum": 42.0}
        failing = dmcp_call("divide", '{"a": 1, "b": 0}')
        assert failing.returncode == 1 and "cannot divide by zero" in failing.stdout
    finally:
        dev.send_signal(signal.SIGINT)
        output, _ = dev.communicate(timeout=60)
    assert dev.returncode == 0, output
    assert "dMCP dev stack is running" in output and "stopped." in output
