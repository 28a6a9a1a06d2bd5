"""`orders bench`: the pipeline under load, beside stock Celery on SQS and the raw boto3 ceiling."""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

SUITES = ("pipeline", "chain")


@click.command("bench")
@click.option("--suite", type=click.Choice([*SUITES, "tracing", "all"]), default="all", show_default=True,
              help="pipeline: the order mix through every service; chain: five-hop chains of no-op "
                   "tasks (the transport alone), with dramatiq-sqs and the raw boto3 ceiling; "
                   "tracing: the pipeline untraced and traced (OTLP to a local receiver), to show "
                   "what tracing costs.")
@click.option("--orders", "n_orders", type=click.IntRange(min=10), default=600, show_default=True,
              help="Orders (chains) per configuration.")
@click.option("--rate", type=click.FloatRange(min=0), default=20.0, show_default=True,
              help="Orders placed per second; 0 places them all at once (throughput).")
@click.option("--mix", type=click.Choice(["demo", "hot"]), default="demo", show_default=True,
              help="Pipeline suite: the demo's order mix, or hot: nine orders in ten for one product "
                   "(a flash sale: one FIFO message group on the inventory queue).")
@click.option("--chain-rate", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Chains placed per second in the chain suite; 0: all at once.")
@click.option("--latency-ms", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Delay the embedded emulator adds to every AWS call (AWS: 10-20 ms).")
@click.option("--compare/--no-compare", default=True, show_default=True,
              help="Also run stock Celery on SQS (ORDERS_STOCK_TRANSPORT=1) and, in the chain suite, "
                   "dramatiq on dramatiq-sqs and the raw ceiling.")
@click.option("--endpoint", default=None, metavar="URL",
              help="An emulator already running, instead of a fresh embedded one per configuration.")
@click.option("--concurrency", type=click.IntRange(min=1), default=10, show_default=True,
              help="Threads per worker process (one worker per queue).")
@click.option("--timeout", type=click.FloatRange(min=1), default=300.0, show_default=True,
              help="Seconds to wait for the last orders of a configuration.")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
def bench(suite: str, n_orders: int, rate: float, mix: str, chain_rate: float, latency_ms: float,
          compare: bool, endpoint: str | None, concurrency: int, timeout: float, as_json: bool) -> None:
    """Measure throughput, latency, SQS+SNS calls per order and worker memory, side by side.

    Each configuration runs on a fresh embedded emulator (or --endpoint) with one
    worker process per queue: ours (orders.runtime.transport), stock kombu SQS with the
    same polling settings, and, in the chain suite, dramatiq actors on dramatiq-sqs and a
    plain boto3 loop with batch send, receive and delete. Calls are counted at the
    emulator's server.
    """
    require_checkout()
    from benchmarks.report import as_json as to_json
    from benchmarks.report import format_suite, machine

    out = sys.stderr if as_json else sys.stdout
    context = {"machine": machine(), "orders": n_orders, "rate": rate, "mix": mix, "chain_rate": chain_rate,
               "latency_ms": latency_ms, "concurrency": concurrency, "endpoint": endpoint or "embedded"}
    options: dict[str, Any] = {"n_orders": n_orders, "latency_ms": latency_ms, "compare": compare,
                               "endpoint": endpoint, "concurrency": concurrency, "timeout": timeout,
                               "say": lambda text: click.echo(text, file=out)}
    results: dict[str, dict[str, Any]] = {}
    if suite in ("pipeline", "all"):
        results["pipeline"] = pipeline_suite(rate=rate, mix=mix, **options)
    if suite in ("chain", "all"):
        results["chain"] = chain_suite(rate=chain_rate, **options)
    if suite == "tracing":
        results["tracing"] = tracing_suite(rate=rate, mix=mix, **options)
    if as_json:
        click.echo(json.dumps(to_json(results, context), indent=2, default=str))
        return
    click.echo(f"\nMachine: {context['machine']}; injected latency {latency_ms:g} ms per call\n")
    for name, runs in results.items():
        click.echo(format_suite(f"== {name} ==", runs) + "\n")
    if "tracing" in results:
        from benchmarks.tracing_cost import format_cost

        click.echo("== what tracing costs ==\n" + format_cost(results["tracing"]))


def pipeline_suite(n_orders: int, rate: float, mix: str, latency_ms: float, compare: bool,
                   endpoint: str | None, concurrency: int, timeout: float,
                   say: Callable[[str], None]) -> dict[str, Any]:
    """The order mix through every service, with our transport and (compare) the stock one."""
    from benchmarks.pipeline import PipelinePlan, run_pipeline

    plan = PipelinePlan(orders=n_orders, rate=rate, timeout=timeout, mix=mix)
    runs = {}
    for label, batch in modes(compare):
        say(f"pipeline/{label}: {n_orders} orders ({mix} mix) at {rate:g}/s ...")
        runs[label] = run_pipeline(label, plan, batch, latency_ms, endpoint, concurrency)
    return runs


def tracing_suite(n_orders: int, rate: float, mix: str, latency_ms: float, compare: bool,
                  endpoint: str | None, concurrency: int, timeout: float,
                  say: Callable[[str], None]) -> dict[str, Any]:
    """The pipeline with tracing off, then on (benchmarks.tracing_cost)."""
    from benchmarks.pipeline import PipelinePlan
    from benchmarks.tracing_cost import run_tracing_cost

    plan = PipelinePlan(orders=n_orders, rate=rate, timeout=timeout, mix=mix)
    return run_tracing_cost(plan, latency_ms, endpoint, concurrency, say)


def chain_suite(n_orders: int, rate: float, latency_ms: float, compare: bool, endpoint: str | None,
                concurrency: int, timeout: float, say: Callable[[str], None]) -> dict[str, Any]:
    """Five-hop no-op chains: ours, stock, dramatiq on dramatiq-sqs (the peer), and the same
    messages through a plain boto3 loop (the ceiling)."""
    from benchmarks.chain import LoadPlan, run_chains
    from benchmarks.dramatiq_chain import run_dramatiq
    from benchmarks.raw import run_raw

    plan = LoadPlan(orders=n_orders, rate=rate, timeout=timeout)
    runs = {}
    for label, batch in modes(compare):
        say(f"chain/{label}: {n_orders} chains ...")
        runs[label] = run_chains(label, plan, batch, latency_ms, endpoint, concurrency)
    if compare:
        say(f"chain/dramatiq: {n_orders} chains of dramatiq actors on dramatiq-sqs ...")
        runs["dramatiq"] = run_dramatiq("dramatiq", plan, latency_ms, endpoint, concurrency)
        say("chain/raw: the same messages through a boto3 loop ...")
        runs["raw"] = run_raw("raw", plan, latency_ms, endpoint)
    return runs


def require_checkout() -> None:
    """Make the repository's benchmarks/ importable, as `python -m` would from its root.

    benchmarks/ is kept out of the wheel (production images do not carry it), so
    `orders bench` runs from a checkout: the current directory or one of its parents.
    """
    if importlib.util.find_spec("benchmarks") is not None:
        return
    for folder in (Path.cwd(), *Path.cwd().parents):
        if (folder / "benchmarks" / "__init__.py").is_file() and (folder / "tasks").is_dir():
            sys.path.insert(0, str(folder))
            return
    raise click.ClickException("orders bench runs from a checkout of the repository "
                               "(benchmarks/ is not installed with the package): cd into it first")


def modes(compare: bool) -> list[tuple[str, bool]]:
    """(label, batch_acks) of each configuration to run."""
    return [("ours", True), ("stock", False)] if compare else [("ours", True)]


commands = [bench]
