"""Code that runs inside LocalStack's own Python 3.13 virtualenv, not in the project's.

The runner copies this folder into a wheel named `dmcp_localstack_host` and installs it into the
LocalStack venv, so nothing here may import `dmcp_aws` (or anything but the standard library and
`localstack`):

- `executor` — the `dmcp-host` Lambda runtime executor (entry point group
  `localstack.lambda.runtime_executor`): a function's handler runs as a host Python process.
- `lambda_bootstrap` — the program that process runs: imports the handler, serves invocations.
- `launcher` — starts `localstack.runtime.main` bound to loopback and tied to its parent's life.
- `native_check` — finds compiled modules in a code bundle that this host cannot load.
"""
