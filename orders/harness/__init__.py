"""The demo and benchmark harness: a whole stack on this machine, order mixes, runs, reports.

Production code never imports it.
"""
