"""Create the task table on an AWS endpoint (the embedded stack; the CDK stack has its construct)."""

from __future__ import annotations

from typing import Any

from dmcp_aws.tasks.store import TTL_ATTRIBUTE


async def create_task_table(dynamodb: Any, name: str) -> None:
    """Key `id`, TTL on `expiresAt`, on demand, encrypted: as `infra.task_store.TaskStore` makes it."""
    await dynamodb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
        SSESpecification={"Enabled": True},
    )
    await dynamodb.update_time_to_live(
        TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": TTL_ATTRIBUTE}
    )
