"""Names and numbers every part of a deployment agrees on: the description (`dmcp_aws.deployment`),
the CDK stack, clients and workers. Plain constants, so a Lambda worker imports them without the
deployment description's models.
"""

from __future__ import annotations

from typing import Final

CONNECTION_QUEUE_PREFIX: Final = "conn-"
"""Per-connection reply queues are named `<reply prefix>conn-<client>_<random>`: a client may create
and delete only those under its own `<reply prefix>conn-<client>_`, which can never be another
client's provisioned queue `<reply prefix><client name>` nor another client's connection queue
(client names have no `_`)."""

CONNECTION_QUEUE_SEPARATOR: Final = "_"
CONNECTION_QUEUE_RANDOM_CHARS: Final = 16
"""Hex digits of randomness the client transport appends to its connection-queue prefix (the
name is not a secret: the connection's secret `dmcp.conn` is minted separately)."""
MAX_QUEUE_NAME: Final = 80

UNROUTED: Final = "unrouted"
"""Reserved server name of the catch-all that answers requests for servers nobody serves."""

LAST_WORD_DELIVERIES: Final = 3
"""Deliveries a request queue allows beyond a server's `max_receive_count` (see there): each is
cheap (nothing runs), and SQS counts receives that no worker ever saw."""

TASKS_TABLE_VARIABLE: Final = "DMCP_TASKS_TABLE"
"""The environment variable naming a worker's task table (the Tasks extension is on where set)."""
