"""The order-submission HTTP API."""
