"""The catch-all: answers requests for servers nobody serves with a JSON-RPC error.

SNS drops a message no subscription's filter policy matches. The topology subscribes this
worker's queue with `{"mcp.server": [{"anything-but": [<served names>]}]}`, so every request
for an unknown server reaches `dmcp_aws.catch_all.handler`, which replies "no server named ...".
"""

from __future__ import annotations

from constructs import Construct

from dmcp_aws.deployment import CATCH_ALL_HANDLER
from infra.server_worker import ServerWorker, ServerWorkerProps


class UnroutedRequests(ServerWorker):
    """A `ServerWorker` running the catch-all handler behind the `anything-but` subscription."""

    def __init__(self, scope: Construct, construct_id: str, *, props: ServerWorkerProps) -> None:
        if props.worker.handler != CATCH_ALL_HANDLER:
            raise ValueError(f"the catch-all runs {CATCH_ALL_HANDLER}, not {props.worker.handler}")
        if "anything-but" not in str(props.filter_policy):
            raise ValueError(
                "the catch-all's filter policy must match every server nobody serves (anything-but)"
            )
        super().__init__(scope, construct_id, props=props)
