"""Which worker answers a request, when SNS may have delivered copies to several (pure).

SNS matches a `String.Array` attribute if any element matches a filter policy, so a request whose
`mcp.server` is `["example", "nope"]` reaches both `example` and the catch-all. Exactly one of
them must answer (with an error: a request names one server), and a copy sent straight to a
request queue, which no other worker sees, must still be answered:

    >>> route(("example", "String"), "example", served=None)
    <Routing.SERVE: 'serve'>
    >>> route(('["example", "nope"]', "String.Array"), "example", served=frozenset({"example"}))
    <Routing.ELSEWHERE: 'elsewhere'>
"""

from __future__ import annotations

import json
from collections.abc import Set
from enum import StrEnum

from dmcp_aws.deployment import UNROUTED


class Routing(StrEnum):
    """What a worker does with the copy it received."""

    SERVE = "serve"
    REFUSE = "refuse"
    """Answer with an error: `mcp.server` is not a single String."""
    ELSEWHERE = "elsewhere"
    """Another worker received a copy and answers it: drop this one."""


def route(attribute: tuple[str | None, str | None], me: str, served: Set[str] | None) -> Routing:
    """Decide for worker `me` given `mcp.server`'s (value, data type) and the served names."""
    value, data_type = attribute
    if value is None or data_type is None or data_type == "String":
        return Routing.SERVE
    if data_type != "String.Array":
        return Routing.REFUSE  # SNS never string-matches a Number: this copy is the only one
    names = _names(value)
    if names is None or served is None:
        return Routing.REFUSE
    unserved = any(name not in served for name in names)
    if me == UNROUTED:
        # The catch-all answers when a name is not served. When every name is served, a named
        # worker answers: AWS does not deliver such a copy to the catch-all, moto does.
        return Routing.REFUSE if unserved or not names else Routing.ELSEWHERE
    if me not in names:
        return Routing.REFUSE  # sent straight to this worker's queue: nobody else sees it
    if unserved:
        return Routing.ELSEWHERE  # the catch-all received a copy too, and answers
    return Routing.REFUSE if me == min(names) else Routing.ELSEWHERE


def _names(value: str) -> list[str] | None:
    try:
        decoded = json.loads(value)
    except ValueError:
        return None
    if not isinstance(decoded, list) or not all(isinstance(n, str) for n in decoded):
        return None
    return decoded
