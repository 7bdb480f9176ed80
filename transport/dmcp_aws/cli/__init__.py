"""The `dmcp` command: the embedded local stack, MCP verbs against it or a deployed stack, and
the operator's tools. A module per group of verbs:

- `stack`: `demo`, `dev`, `worker`, `sweep`
- `mcp_verbs`: `tools`, `call`, `resources`, `read`, `prompts`, `prompt`, `ping` (as MCP
  Inspector's CLI has them)
- `dlq`: `dlq` (dead letters and their redrive)
- `bridges`: `stdio` (a stdio MCP server relaying to a dMCP server, for any MCP host)
- `tasks`: `task get|wait|cancel` (and `call --task`), the Tasks extension

Modules import what a verb needs when it runs, so `dmcp --help` is quick, and nothing here is
imported by a Lambda function. Every error is one or two lines on stderr and a non-zero exit;
`dmcp --debug …` adds the traceback.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer
from typer.main import get_command

from dmcp_aws.cli import _common, bridges, dlq, mcp_verbs, stack, tasks
from dmcp_aws.cli._common import CliError, report
from dmcp_aws.cli.stack import DEV_SWEEP_INTERVAL_S, client_settings, sweep_periodically

__all__ = ["DEV_SWEEP_INTERVAL_S", "CliError", "app", "client_settings", "main", "sweep_periodically"]


class _Dmcp(typer.Typer):
    """The command, with errors shown as short messages (`report`) instead of tracebacks."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        arguments = kwargs.get("args", args[0] if args else sys.argv[1:])
        if list(arguments or [])[:1] == ["--debug"]:
            _common.state.debug = True  # before the callback runs, for errors while parsing too
        try:
            return get_command(self)(*args, **kwargs)
        except SystemExit:
            raise
        except BaseException as exc:
            sys.exit(report(exc))


app = _Dmcp(
    name="dmcp",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            found = version("dmcp-aws")
        except PackageNotFoundError:
            from dmcp_aws import __version__ as found
        _common.out.print(f"dmcp {found}")
        raise typer.Exit()


@app.callback()
def main(
    debug: Annotated[
        bool, typer.Option("--debug", envvar="DMCP_DEBUG", help="Show the traceback of an error.")
    ] = False,
    version: Annotated[
        bool, typer.Option("--version", is_eager=True, callback=_version, help="Show the version and exit.")
    ] = False,
) -> None:
    """dMCP on AWS: MCP over SNS/SQS with Lambda workers.

    Start the embedded stack with `dmcp dev`; in another terminal, `dmcp tools`, `dmcp call TOOL
    --arg KEY=VALUE`, `dmcp read URI`, `dmcp prompt NAME`, `dmcp ping`. Against a deployed stack,
    add `--stack NAME`.
    """
    _common.state.debug = debug or _common.state.debug


for verb in (
    stack.demo,
    stack.dev,
    stack.worker,
    mcp_verbs.tools,
    mcp_verbs.call,
    mcp_verbs.resources,
    mcp_verbs.read,
    mcp_verbs.prompts,
    mcp_verbs.prompt,
    mcp_verbs.ping,
    dlq.dlq,
    stack.sweep,
    bridges.stdio,
):
    app.command()(verb)
app.add_typer(tasks.app, name="task")
