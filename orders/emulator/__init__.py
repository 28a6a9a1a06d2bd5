"""The embedded AWS emulator (moto's server with our fixes) and control-plane Redis.

For development, the demo and the tests: production code never imports it.
"""
