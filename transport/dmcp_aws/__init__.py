"""dMCP on AWS: Model Context Protocol carried over SNS and SQS.

The public surface:

- `sqs_client_transport` — the client transport, for `mcp.Client(...)` and `ClientSession`.
- `QueueTarget` / `TopicTarget` — where a client sends its requests.
- `Worker` — serves a batch of SQS records (the Lambda event shape) with an `MCPServer`.
- `make_lambda_handler` — the Lambda entry point built on aws-lambda-powertools.
"""

from dmcp_aws.client import QueueTarget, TopicTarget, sqs_client_transport
from dmcp_aws.worker import Worker, WorkerSettings

__all__ = ["QueueTarget", "TopicTarget", "Worker", "WorkerSettings", "sqs_client_transport"]
__version__ = "0.1.0"
