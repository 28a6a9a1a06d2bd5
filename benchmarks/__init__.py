"""Benchmarks of the order pipeline (`orders bench`)."""
