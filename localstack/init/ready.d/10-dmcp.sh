#!/bin/sh
# LocalStack init hook (Docker): runs once LocalStack is ready. The dMCP resources themselves
# come from `cdklocal deploy` of the CDK app, so this only checks that the services the kit
# needs answer, and says what to do next.
set -e
awslocal sqs list-queues >/dev/null
awslocal sns list-topics >/dev/null
awslocal lambda list-functions >/dev/null
echo "dmcp: LocalStack is ready; deploy with: npx cdklocal bootstrap && npx cdklocal deploy --require-approval never"
