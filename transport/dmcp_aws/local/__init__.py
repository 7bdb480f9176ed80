"""The embedded local stack: moto's server on 127.0.0.1 plus Lambda-faithful SQS pollers."""
