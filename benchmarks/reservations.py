"""One inventory worker on one product's FIFO message group: how many reservations a second it reaches.

    .venv/bin/python -m benchmarks.reservations [--orders 600] [--latency-ms 0] [--rounds 2]

The exercise asks for 200 inventory updates a second; a flash sale puts them on one product,
which is one message group of inventory.fifo, and SQS hands out at most ten messages of a
group at a time (the next ten once those are deleted). Each configuration gets a fresh
embedded emulator and one inventory worker (`--pool threads --concurrency 10`, the benchmark's
usual); `--orders` orders of one product are recorded and sealed as the door leaves them, and
their reservations (`inventory.reserve`, the rest of each chain after it) are queued in one
message group, each carrying its order as the placement step would (no read before the
write). The worker drains them; printed per configuration: reservations a second (from the
first reservation to the last, as the orders' histories record them), TransactWriteItems and
all DynamoDB calls per reservation, the worker's CPU per reservation and its tasks' run time.

Configurations, alternated `--rounds` times: `together` (ORDERS_RESERVE_LINGER's default: a
receive's reservations are one transaction, orders.aws.reservations) and `alone`
(ORDERS_RESERVE_LINGER=0: one transaction each, as before). The charge messages the worker
hands on wait in the payments queue: no payments worker runs.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from benchmarks.measure import ALL_TASKS, PeakMemory, Percentiles, task_runs
from orders.aws.stock import set_stock
from orders.aws.store import OrderStore
from orders.domain.order import validate
from orders.domain.states import OrderState, Step
from orders.domain.times import now_iso, parse_time
from orders.harness.stack import Stack, worker_args
from orders.runtime import carried, pipeline
from orders.runtime.dependencies import dependencies
from orders.runtime.transport import batched_sends
from orders.steps.admission import seal

QUEUE = "inventory.fifo"
SKU = "SKU-FLASH"
CONFIGURATIONS: dict[str, dict[str, str]] = {"together": {}, "alone": {"ORDERS_RESERVE_LINGER": "0"}}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.reservations",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--orders", type=int, default=600)
    parser.add_argument("--latency-ms", type=float, default=0.0, help="injected into every AWS call")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=10)
    args = parser.parse_args(argv)
    print(f"{'round':<6} {'config':<9} {'reserved':>9} {'per s':>7} {'TWI/res':>8} {'DDB/res':>8} "
          f"{'CPU ms/res':>10} {'run P50 ms':>10} {'run P95 ms':>10}")
    for n in range(1, args.rounds + 1):
        for name, env in CONFIGURATIONS.items():
            row = measure(args.orders, args.latency_ms, args.concurrency, env)
            print(f"{n:<6} {name:<9} {row['reserved']:>9} {row['rate']:>7.1f} {row['transactions']:>8.2f} "
                  f"{row['dynamodb']:>8.2f} {row['cpu_ms']:>10.1f} {(row['run'].p50 or 0) * 1000:>10.0f} "
                  f"{(row['run'].p95 or 0) * 1000:>10.0f}", flush=True)


def measure(orders: int, latency_ms: float, concurrency: int, env: dict[str, str]) -> dict[str, Any]:
    with Stack(latency_ms=latency_ms, queues=[QUEUE], beat=False, extra_env=env,
               worker_args=worker_args(concurrency)) as stack:
        settings = stack.settings
        set_stock(settings, SKU, orders * 10)
        store, fields = OrderStore(settings), dependencies(settings).fields
        records = []
        for n in range(orders):
            raw = flash_order(f"{stack.namespace}-{n}")
            records.append(store.create(seal(fields, validate(raw)), now_iso(), raw["orderId"], False)[0])
        stack.reset_calls()
        with PeakMemory(stack.children) as memory:
            with batched_sends():
                for record in records:
                    headers: dict[str, Any] = {carried.HEADER: record.carried()}
                    pipeline.resume(stack_app(), record, Step.RESERVE).apply_async(headers=headers)
            times = wait_reserved(store, [r.order_id for r in records], timeout=120 + orders)
        calls = stack.calls() or {}
        runs = task_runs(stack.children)
    worker = f"worker {QUEUE}"
    dynamodb = sum(v for k, v in calls.items() if k.startswith("dynamodb:"))
    span = max(times) - min(times) if len(times) > 1 else 0.0
    return {"reserved": len(times), "rate": (len(times) - 1) / span if span else 0.0,
            "transactions": calls.get("dynamodb:TransactWriteItems", 0) / max(len(times), 1),
            "dynamodb": dynamodb / max(len(times), 1),
            "cpu_ms": memory.cpu.get(worker, 0.0) * 1000 / max(len(times), 1),
            "run": runs.get(worker, {}).get(ALL_TASKS, Percentiles.of([]))}


def flash_order(order_id: str) -> dict[str, Any]:
    """A valid order of one unit of the flash sale's product."""
    return {"orderId": order_id, "customerId": "cust-flash", "customerTier": "standard",
            "items": [{"sku": SKU, "quantity": 1, "unitPrice": "10.00"}], "totalAmount": "10.00",
            "currency": "USD", "payment": {"method": "card", "token": "tok_visa"},
            "shippingAddress": {"line1": "1 Main St", "city": "Springfield", "postalCode": "12345",
                                "country": "US"},
            "contact": {"email": "pat@example.com"}}


def stack_app() -> Any:
    from orders.celery import app

    return app


def wait_reserved(store: OrderStore, order_ids: list[str], timeout: float) -> list[float]:
    """When each order was reserved (epoch seconds, from its history), once all are past it or in time."""
    deadline, left, found = time.monotonic() + timeout, list(order_ids), {}
    while left and time.monotonic() < deadline:
        time.sleep(1.0)
        for order_id, record in store.load_many(left).items():
            past = (OrderState.RESERVED, OrderState.CANCELLED)
            at = next((e.at for e in record.history if e.status in past), None)
            if at is not None:
                found[order_id] = parse_time(at).timestamp()
        left = [i for i in left if i not in found]
    return list(found.values())


if __name__ == "__main__":
    main()
