"""LocalStack in host mode: no Docker, Lambda handlers as host processes.

    >>> from dmcp_localstack import host_localstack
    >>> with host_localstack(port=0) as stack:
    ...     stack.endpoint                      # 'http://127.0.0.1:40123'

- `runner` — start / stop LocalStack (Python API, context manager).
- `venv` — the cached Python 3.13 venv LocalStack runs in.
- `plugin_wheel` — packages `plugin/` (the `dmcp-host` Lambda executor) for that venv.
- `processes` — finds a run's processes, so nothing outlives it.
- `__main__` — `python -m dmcp_localstack start|stop|status|env|run|venv`.

Development tooling, not part of the `dmcp_aws` wheel: the package lives in the repository's
`localstack/` folder, next to LocalStack's pins, and is imported from a checkout with that folder
on the path (`export PYTHONPATH="$PWD/localstack"` at the repository's root; pytest's
`pythonpath` setting does it for the tests). See docs/localstack.md.
"""

from dmcp_localstack.runner import (
    HostLocalStack,
    LocalStackError,
    PortInUseError,
    host_localstack,
    start_localstack,
    stop_localstack,
)

__all__ = [
    "HostLocalStack",
    "LocalStackError",
    "PortInUseError",
    "host_localstack",
    "start_localstack",
    "stop_localstack",
]
