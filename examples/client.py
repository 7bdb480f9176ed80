"""Call the example server's `add` tool through `dmcp dev` (run: .venv/bin/python examples/client.py)."""

import asyncio
import os

from mcp import Client

from dmcp_aws import TopicTarget, sqs_client_transport


async def main() -> None:
    target = TopicTarget(os.environ["DMCP_TOPIC_ARN"], server="example")
    transport = sqs_client_transport(
        target, endpoint_url=os.environ.get("DMCP_ENDPOINT_URL"), reply_prefix=os.environ["DMCP_REPLY_PREFIX"]
    )
    async with Client(transport) as client:
        result = await client.call_tool("add", {"a": 2, "b": 3})
        print(result.structured_content)


asyncio.run(main())
