"""The MCP Tasks extension (`io.modelcontextprotocol/tasks`, 2026-07-28), durable over the queue.

For server authors:

    >>> from dmcp_aws.tasks import task_tool, task_cancelled
    >>> @mcp.tool(meta=task_tool())            # a declaring client gets a task, others a plain answer
    ... async def report(topic: str) -> str:
    ...     ...                                 # check task_cancelled() between steps

For clients: `dmcp_aws.tasks.client.TaskClient`. The parts: `model` (pure rules and wire shapes),
`store` (DynamoDB), `runner` (the worker's side), `context` (what a running tool may know).
"""

from __future__ import annotations

from dmcp_aws.tasks.context import current_task, task_cancelled
from dmcp_aws.tasks.model import TASKS_EXTENSION, task_tool

__all__ = ["TASKS_EXTENSION", "current_task", "task_cancelled", "task_tool"]
