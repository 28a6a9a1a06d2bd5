"""The Celery and kombu runtime: configuration, routing, the batching SQS transport, the control plane."""
