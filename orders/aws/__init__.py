"""Adapters to AWS: clients, the order store, stock, the gateway, SNS, CloudWatch, batching."""
