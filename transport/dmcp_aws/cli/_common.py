"""What every verb of the `dmcp` command shares: the consoles, logging, and how errors are shown.

An error is one or two lines on stderr (`error: …`, then perhaps `hint: …`) and a non-zero exit;
the traceback only with `dmcp --debug`. User text is printed as `rich.text.Text`, never parsed as
markup, so nothing in it (`[a-z]`, `[local]`) is eaten.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
import warnings
from dataclasses import dataclass
from typing import Final

from rich.console import Console
from rich.text import Text

out = Console(highlight=False, soft_wrap=True)
"""Results: stdout."""
err = Console(stderr=True, highlight=False, soft_wrap=True)
"""Errors, progress, status: stderr."""

LOCAL_EXTRA: Final = "pip install 'dmcp-aws[local]'"
_LOCAL_MODULES: Final = frozenset({"moto", "flask", "flask_cors", "werkzeug"})
"""Top-level modules the embedded stack needs from the `local` extra."""


@dataclass
class _State:
    debug: bool = False


state = _State(debug=os.environ.get("DMCP_DEBUG", "") not in ("", "0", "false"))


class CliError(Exception):
    """An error the user can act on: `message` (what went wrong), `hint` (what to do)."""

    def __init__(self, message: str, hint: str | None = None, *, code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.code = code


def configure_logging(level: int = logging.WARNING) -> None:
    """Log records at `level` and above to stderr as `level name: message`; `--debug` adds the
    kit's own debug records."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.DEBUG if state.debug else level)
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(min(level, logging.DEBUG) if state.debug else level)
    if state.debug:
        logging.getLogger("dmcp_aws").setLevel(logging.DEBUG)
    else:
        warnings.simplefilter("ignore")  # libraries' deprecation notes are not the user's business
    # moto's HTTP server: its request log and its tracebacks (an API moto lacks) are noise here.
    logging.getLogger("werkzeug").setLevel(logging.INFO if level <= logging.INFO else logging.CRITICAL)


def show_error(error: CliError) -> None:
    err.print(Text.assemble(("error: ", "bold red"), error.message))
    if error.hint:
        err.print(Text.assemble(("hint: ", "yellow"), error.hint))


def report(exc: BaseException) -> int:
    """Show `exc` the way the command line shows errors; return the exit code."""
    if state.debug:
        traceback.print_exception(exc, file=sys.stderr)
    error = explain(exc)
    show_error(error)
    return error.code


def innermost(exc: BaseException) -> BaseException:
    """The exception that matters inside task-group exception groups (not a cancellation)."""
    while isinstance(exc, BaseExceptionGroup):
        real = [e for e in exc.exceptions if not _is_cancellation(e)]
        exc = (real or list(exc.exceptions))[0]
    return exc


def _is_cancellation(exc: BaseException) -> bool:
    import asyncio

    return isinstance(exc, asyncio.CancelledError | KeyboardInterrupt) or type(exc).__name__ == "Cancelled"


def _loaded(module: str, name: str) -> type[BaseException] | None:
    """A class of a module already imported (an exception of a module never imported cannot occur)."""
    found = getattr(sys.modules.get(module), name, None)
    return found if isinstance(found, type) and issubclass(found, BaseException) else None


def _instance(exc: BaseException, module: str, name: str) -> bool:
    cls = _loaded(module, name)
    return cls is not None and isinstance(exc, cls)


_DEBUG_HINT: Final = "run `dmcp --debug …` to see the traceback"
START_DEV: Final = "start `dmcp dev` in another terminal (it writes .dmcp/dev.env), or pass --stack NAME"


def explain(exc: BaseException) -> CliError:
    """The one-or-two-line account of an exception."""
    exc = innermost(exc)
    if isinstance(exc, CliError):
        return exc
    if isinstance(exc, KeyboardInterrupt):
        return CliError("interrupted", code=130)
    if _instance(exc, "dmcp_aws.deployment", "DeploymentError"):
        return CliError(str(exc), code=2)
    if _instance(exc, "dmcp_aws.local.stack", "HandlerError"):
        return CliError(
            str(exc), "a handler is `module.attribute`, importable from the description's folder", code=2
        )
    if isinstance(exc, ModuleNotFoundError) and (exc.name or "").split(".")[0] in _LOCAL_MODULES:
        missing = (exc.name or "").split(".")[0]
        return CliError(f"the embedded local stack needs moto ({missing} is not installed)", LOCAL_EXTRA)
    if _instance(exc, "mcp.shared.exceptions", "MCPError"):
        return _mcp_error(exc)
    if _instance(exc, "dmcp_aws.deployed", "StackNotFound"):
        return CliError(str(exc), "check the name and the region (AWS_REGION, --region)")
    if _instance(exc, "dmcp_aws.client", "ReplyQueueError") and exc.__cause__ is not None:
        cause = explain(exc.__cause__)
        return CliError(f"{exc}", cause.hint)
    botocore = _botocore_error(exc)
    if botocore is not None:
        return botocore
    if isinstance(exc, KeyError) and exc.args and isinstance(exc.args[0], str) and " " in exc.args[0]:
        return CliError(exc.args[0])  # the kit's lookups say what is missing and what exists
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return CliError(f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__, _DEBUG_HINT)


def _mcp_error(exc: BaseException) -> CliError:
    code = getattr(exc, "code", None)
    message = str(getattr(exc, "message", exc))
    data = getattr(exc, "data", None)
    if code == -32601 and isinstance(data, dict) and "server" in data:
        return CliError(
            f"{message} (the catch-all answered: JSON-RPC {code}, method not found)",
            "`--server NAME` names a server of the deployment; `dmcp tools --server NAME` lists its tools",
        )
    if code == -32001:
        return CliError(f"{message} (JSON-RPC {code})", "wait longer with --timeout SECONDS")
    return CliError(f"{message} (JSON-RPC error {code})")


def _botocore_error(exc: BaseException) -> CliError | None:
    module = "botocore.exceptions"
    if _instance(exc, module, "NoCredentialsError") or _instance(exc, module, "PartialCredentialsError"):
        return CliError(
            "no AWS credentials found",
            "for `dmcp dev`, run where its .dmcp/dev.env is (or source it); "
            "for AWS, configure credentials (AWS_PROFILE, `aws configure`)",
        )
    if _instance(exc, module, "NoRegionError"):
        return CliError(
            "no AWS region is configured", "set AWS_REGION (or AWS_DEFAULT_REGION), or pass --region"
        )
    if _instance(exc, module, "EndpointConnectionError") or _instance(exc, module, "ConnectionClosedError"):
        endpoint = getattr(exc, "kwargs", {}).get("endpoint_url", "the AWS endpoint")
        return CliError(f"cannot reach {endpoint}", START_DEV)
    if _instance(exc, module, "ClientError"):
        response = getattr(exc, "response", {}) or {}
        code = response.get("Error", {}).get("Code", "")
        message = response.get("Error", {}).get("Message", "") or str(exc)
        operation = getattr(exc, "operation_name", "")
        hint = None
        if code in (
            "ExpiredToken",
            "ExpiredTokenException",
            "InvalidClientTokenId",
            "UnrecognizedClientException",
        ):
            hint = "refresh your AWS credentials"
        elif "AccessDenied" in code:
            hint = "the identity lacks a permission the deployment grants its clients (see docs/security.md)"
        return CliError(f"AWS {operation} failed: {code}: {message}".strip(), hint)
    if _instance(exc, module, "BotoCoreError"):
        return CliError(str(exc), _DEBUG_HINT)
    return None


def parse_assignments(pairs: list[str], *, option: str = "--arg", as_json: bool = True) -> dict[str, object]:
    """`KEY=VALUE` pairs as a dict; a value that parses as JSON is that JSON (`3`, `true`, `[1]`,
    `{"a": 1}`), otherwise the string itself (with `as_json` false, always the string)."""
    import json

    result: dict[str, object] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CliError(f"{option} takes KEY=VALUE; got {pair!r}", code=2)
        if as_json:
            try:
                result[key] = json.loads(value)
                continue
            except json.JSONDecodeError:
                pass
        result[key] = value
    return result


def parse_json_object(text: str | None, *, option: str = "--json") -> dict[str, object]:
    """A JSON object given on the command line, or a short error."""
    import json

    if text is None:
        return {}
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CliError(
            f"{option} is not valid JSON: {exc}", f"e.g. {option} '{{\"a\": 1}}'", code=2
        ) from None
    if not isinstance(parsed, dict):
        raise CliError(f"{option} must be a JSON object, not {type(parsed).__name__}", code=2)
    return parsed
