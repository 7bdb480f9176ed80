"""The real `dmcp` command in a subprocess, for what needs no running stack (issue 8): each bad
input is a short error (at most three lines, no traceback, a non-zero exit); `--help` and
`--version` are quick and import nothing heavy."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOPIC = "arn:aws:sns:us-east-1:123456789012:dmcp-requests"


def clean_env(**extra: str) -> dict[str, str]:
    """The caller's environment without AWS or dMCP settings; AWS config files and the instance
    metadata service out of reach (nothing but 127.0.0.1 is ever contacted)."""
    kept = {
        k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "DMCP_", "POWERTOOLS_", "LAMBDA_"))
    }
    return kept | {
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": "/nonexistent/config",
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/credentials",
        "COLUMNS": "200",
    } | extra  # fmt: skip


def dmcp(*arguments: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dmcp_aws", *arguments],
        cwd=cwd,
        env=env or clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )


def assert_short_error(done: subprocess.CompletedProcess[str], *expected: str) -> None:
    lines = done.stderr.strip().splitlines()
    assert done.returncode != 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr and "Traceback" not in done.stdout, done.stderr
    assert 1 <= len(lines) <= 3, done.stderr
    assert lines[0].startswith("error: "), done.stderr
    for text in expected:
        assert text in done.stderr, done.stderr


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_malformed_json(tmp_path: Path) -> None:
    assert_short_error(dmcp("call", "add", "--json", "{bad", cwd=tmp_path), "--json is not valid JSON")
    assert_short_error(dmcp("call", "add", "--json", "[1, 2]", cwd=tmp_path), "must be a JSON object")
    assert_short_error(dmcp("call", "add", "--arg", "oops", cwd=tmp_path), "--arg takes KEY=VALUE")


def test_no_stack_running(tmp_path: Path) -> None:
    done = dmcp("tools", cwd=tmp_path)
    assert_short_error(done, ".dmcp/dev.env does not exist", "start `dmcp dev`")


def test_a_stale_settings_file(tmp_path: Path) -> None:
    settings = tmp_path / ".dmcp" / "dev.env"
    settings.parent.mkdir()
    settings.write_text(
        f"export AWS_ENDPOINT_URL=http://127.0.0.1:{free_port()}\n"
        f"export DMCP_TOPIC_ARN={TOPIC}\nexport DMCP_REPLY_PREFIX=dmcp-reply-conn-laptop_\n"
    )
    for verb in (["tools"], ["call", "add", "--arg", "a=1"], ["dlq", "example"], ["sweep"]):
        assert_short_error(dmcp(*verb, cwd=tmp_path), ".dmcp/dev.env is stale", "start `dmcp dev`")


def test_sourced_settings_of_a_stopped_stack(tmp_path: Path) -> None:
    env = clean_env(
        AWS_ENDPOINT_URL=f"http://127.0.0.1:{free_port()}",
        DMCP_TOPIC_ARN=TOPIC,
        DMCP_REPLY_PREFIX="dmcp-reply-conn-laptop_",
    )
    assert_short_error(dmcp("ping", cwd=tmp_path, env=env), "no stack answers at", "start `dmcp dev`")


def test_an_invalid_deployment_description_shows_the_pattern_whole(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text(json.dumps({"name": "Bad_Name", "servers": [{"name": "example"}]}))
    for verb in ("dev", "demo", "worker"):
        done = dmcp(verb, "-d", "bad.json", cwd=tmp_path)
        assert_short_error(
            done, "bad.json is invalid", "String should match pattern '^[a-z][a-z0-9-]{0,30}$'"
        )
    (tmp_path / "broken.json").write_text("{")
    assert_short_error(dmcp("dev", "-d", "broken.json", cwd=tmp_path), "broken.json is not valid JSON")
    assert_short_error(dmcp("dev", "-d", "absent.json", cwd=tmp_path), "absent.json does not exist")


def test_a_server_the_description_does_not_have(tmp_path: Path) -> None:
    (tmp_path / "one.json").write_text(json.dumps({"servers": [{"name": "search"}]}))
    done = dmcp("worker", "-d", "one.json", "--server", "nope", cwd=tmp_path)
    assert_short_error(done, "deployment 'dmcp' has no server 'nope'; it has search")


def test_a_missing_extra(tmp_path: Path) -> None:
    """Without moto (the `local` extra) the embedded stack cannot start: say how to install it."""
    code = "import sys; sys.modules['moto'] = None\nfrom dmcp_aws.cli import app\napp(prog_name='dmcp')"
    done = subprocess.run(
        [sys.executable, "-c", code, "dev", "--env-file", str(tmp_path / "dev.env")],
        cwd=ROOT,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert_short_error(done, "needs moto", "pip install 'dmcp-aws[local]'")


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    done = dmcp("--debug", "call", "add", "--json", "{bad", cwd=tmp_path)
    assert done.returncode != 0 and "Traceback (most recent call last)" in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("hint: ")


def test_version_and_help_are_quick_and_import_little(tmp_path: Path) -> None:
    done = dmcp("--version", cwd=tmp_path)
    assert done.returncode == 0 and done.stdout.strip() == "dmcp 0.1.0"
    for verb in ("tools", "call", "resources", "read", "prompts", "prompt", "ping", "dlq", "dev", "worker"):
        done = dmcp(verb, "--help", cwd=tmp_path)
        assert done.returncode == 0 and "Usage: dmcp" in done.stdout, done.stderr
    probe = (
        "import sys, dmcp_aws.cli\n"
        "heavy = {'botocore', 'aioboto3', 'mcp', 'moto', 'pydantic', 'aws_lambda_powertools'}\n"
        "heavy &= set(sys.modules)\n"
        "assert not heavy, heavy"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_the_entry_point_is_the_package() -> None:
    import tomllib

    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"dmcp": "dmcp_aws.cli:app"}


@pytest.mark.parametrize(
    "module", ["dmcp_aws.lambda_handler", "dmcp_aws.catch_all", "functions.example.handler"]
)
def test_a_lambda_never_imports_the_command_line(module: str) -> None:
    probe = f"import sys, {module}\nassert not [m for m in sys.modules if m.startswith('dmcp_aws.cli')]"
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
