"""The CloudFormation stack of an environment, one module per part (orders.infra.template assembles them)."""
