"""Subcommands of `orders`, one module per area; each exposes `commands`."""
