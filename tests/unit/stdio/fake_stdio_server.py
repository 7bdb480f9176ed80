"""A minimal stdio MCP server (stdlib only) for the relay's unit tests.

Tools: `echo-id` answers with the JSON-RPC id it saw (and one progress notification when asked),
`ask` sends a sampling request to its client and answers with the reply it got, `hang` never
answers.
"""

import json
import sys


def send(message: dict) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def text(request_id: object, value: str) -> None:
    send({"jsonrpc": "2.0", "id": request_id, "result": {"content": [{"type": "text", "text": value}]}})


for line in sys.stdin:
    message = json.loads(line)
    method, request_id = message.get("method"), message.get("id")
    if method == "initialize":
        result = {
            "protocolVersion": message["params"]["protocolVersion"],
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "fake", "version": "1.2.3"},
            "instructions": "be kind",
        }
        send({"jsonrpc": "2.0", "id": request_id, "result": result})
    elif method == "tools/call":
        name, meta = message["params"]["name"], message["params"].get("_meta") or {}
        if name == "echo-id":
            if "progressToken" in meta:
                progress = {"progressToken": meta["progressToken"], "progress": 1, "total": 1}
                send({"jsonrpc": "2.0", "method": "notifications/progress", "params": progress})
            text(request_id, json.dumps({"id": request_id, "meta": meta}))
        elif name == "ask":
            send(
                {"jsonrpc": "2.0", "id": "s1", "method": "sampling/createMessage", "params": {"messages": []}}
            )
            for reply in sys.stdin:
                answer = json.loads(reply)
                if answer.get("id") == "s1":
                    text(request_id, json.dumps(answer))
                    break
        # `hang`: no answer
