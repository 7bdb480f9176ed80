"""Lambda entry point of the example server (`functions.example.handler.handler`)."""

from dmcp_aws.lambda_handler import make_lambda_handler
from functions.example.server import mcp

handler = make_lambda_handler(mcp)
