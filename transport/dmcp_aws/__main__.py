"""`python -m dmcp_aws` is the `dmcp` command."""

from dmcp_aws.cli import app

app(prog_name="dmcp")
