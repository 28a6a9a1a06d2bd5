"""The domain: orders, money, states, events and errors. Standard library only."""
