"""The Lambda entry point: a worker behind aws-lambda-powertools.

In `functions/<server>/handler.py`:

    >>> from dmcp_aws.lambda_handler import make_lambda_handler
    >>> from functions.example.server import mcp
    >>> handler = make_lambda_handler(mcp)

Records are processed concurrently by powertools' `AsyncBatchProcessor`; the function returns
the partial-batch response (`{"batchItemFailures": [...]}`), so only failed records are retried.
Logs are structured JSON with each record's correlation ids (`dmcp_conn_ref`, a hash of the
connection's secret, and `jsonrpc_id`).
Each invocation is traced with X-Ray (powertools `Tracer`) where a daemon receives traces (Lambda
with active tracing sets `AWS_XRAY_DAEMON_ADDRESS`; elsewhere tracing is off, see
`tracing_enabled`) and emits
CloudWatch metrics (namespace `dMCP`, dimension `service`) in the embedded metric format: one
count per record outcome (the names in `dmcp_aws.outcomes.Outcome`) and `FailedRecords`, the
records left for retry.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit
from aws_lambda_powertools.utilities.batch import (
    AsyncBatchProcessor,
    EventType,
    async_process_partial_response,
)
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from mcp.server.lowlevel.server import Server
from mcp.server.mcpserver import MCPServer

from dmcp_aws.outcomes import outcome_sink
from dmcp_aws.worker import Worker, WorkerSettings

METRICS_NAMESPACE = "dMCP"


def tracing_enabled(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether X-Ray tracing can work here: only where a daemon listens for it.

    Lambda sets `AWS_XRAY_DAEMON_ADDRESS` when the function's tracing is active; a container
    worker, `dmcp worker` or the local stack have no daemon unless one is configured the same
    way, and a tracer without one logs a warning for every AWS call. `POWERTOOLS_TRACE_DISABLED`
    still switches tracing off where a daemon exists.
    """
    return bool(environ.get("AWS_XRAY_DAEMON_ADDRESS"))


class LambdaHandler:
    """A Lambda handler serving one MCP server; settings come from the environment on first use."""

    def __init__(
        self,
        server: MCPServer | Server[Any],
        settings: WorkerSettings | None = None,
        worker_class: type[Worker] = Worker,
    ) -> None:
        self.server = server
        self._settings = settings
        self._worker_class = worker_class
        self._worker: Worker | None = None
        self._worker_lock = threading.Lock()
        self.service = f"dmcp-{server.name}"
        self.logger = Logger(service=self.service)
        self._traced = self._handle_batch
        if tracing_enabled():
            # Only then: the X-Ray SDK costs about 50 ms of every cold start to import. The worker
            # calls AWS with boto3 (dmcp_aws.threaded_aws): botocore is what to patch.
            tracer = Tracer(service=self.service, patch_modules=["botocore"])
            self._traced = tracer.capture_lambda_handler(self._handle_batch, capture_response=False)
        copy_config_to_registered_loggers(source_logger=self.logger, include={"dmcp_aws.worker"})

    @property
    def worker(self) -> Worker:
        with self._worker_lock:  # local pollers call one handler from several threads
            if self._worker is None:
                self._worker = self._worker_class(self.server, self._settings or WorkerSettings.from_env())
            return self._worker

    def __call__(self, event: dict[str, Any], context: Any = None) -> PartialItemFailureResponse:
        return self._traced(event, context)  # type: ignore[no-any-return]

    def _handle_batch(self, event: dict[str, Any], context: Any = None) -> PartialItemFailureResponse:
        if context is not None:
            self.logger.structure_logs(
                append=True, function_request_id=getattr(context, "aws_request_id", None)
            )
        metrics = EphemeralMetrics(namespace=METRICS_NAMESPACE, service=self.service)
        # Every record failing is still a partial-batch answer (all ids), not an exception.
        processor = AsyncBatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
        with outcome_sink(lambda outcome: metrics.add_metric(name=outcome, unit=MetricUnit.Count, value=1)):
            response = async_process_partial_response(event, self.worker.handle_record, processor, context)
        metrics.add_metric(
            name="FailedRecords", unit=MetricUnit.Count, value=len(response["batchItemFailures"])
        )
        metrics.flush_metrics()
        return response

    async def aclose(self) -> None:
        """Release what the worker holds for the running event loop (used by local pollers)."""
        if self._worker is not None:
            await self._worker.aclose()

    def reset(self) -> None:
        """Forget the worker, so the next invocation reads its settings from the environment
        again (a local stack that ends and another that starts in the same process)."""
        with self._worker_lock:
            self._worker = None


def make_lambda_handler(
    server: MCPServer | Server[Any], settings: WorkerSettings | None = None
) -> LambdaHandler:
    """The Lambda handler for `server` (see the module docstring)."""
    return LambdaHandler(server, settings)
