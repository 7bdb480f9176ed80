"""dMCP on AWS: Model Context Protocol carried over SNS and SQS.

The public surface:

- `sqs_client_transport` — the client transport, for `mcp.Client(...)` and `ClientSession`.
- `QueueTarget` / `TopicTarget` — where a client sends its requests.
- `connect` — a connected `mcp.Client` that probes a server once per process (`dmcp_aws.connect`).
- `Worker` — serves a batch of SQS records (the Lambda event shape) with an `MCPServer`.
- `make_lambda_handler` — the Lambda entry point built on aws-lambda-powertools.

The names are imported on first use, so `import dmcp_aws.cli` (the `dmcp` command) or a Lambda
importing only `dmcp_aws.lambda_handler` pays for nothing else.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dmcp_aws.client import QueueTarget, TopicTarget, sqs_client_transport
    from dmcp_aws.connect import connect
    from dmcp_aws.worker import Worker, WorkerSettings

__all__ = ["QueueTarget", "TopicTarget", "Worker", "WorkerSettings", "connect", "sqs_client_transport"]
__version__ = "0.1.0"

_HOMES = {
    "QueueTarget": "dmcp_aws.client",
    "TopicTarget": "dmcp_aws.client",
    "sqs_client_transport": "dmcp_aws.client",
    "connect": "dmcp_aws.connect",
    "Worker": "dmcp_aws.worker",
    "WorkerSettings": "dmcp_aws.worker",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'dmcp_aws' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value
