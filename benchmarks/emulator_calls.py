"""What one DynamoDB call of the pipeline costs the embedded emulator, with and without its fixes.

The emulator (moto, one Python process) is what limits the pipeline on one
machine, and DynamoDB is most of its work. This replays one order's store calls
(the same functions the tasks call), one call at a time, first against moto as
shipped, then against the emulator as the project runs it (orders.emulator.moto_dynamodb,
orders.emulator.server's dispatcher), then as a single-region run starts it (the same,
`--no-stream-records`: the tables' streams record nothing), and prints the emulator's CPU
milliseconds per call of each kind: CPU time, not wall time, so another busy process moves
the figures little.

    python -m benchmarks.emulator_calls [--orders 200]
"""

from __future__ import annotations

import argparse
import uuid
from collections.abc import Callable
from typing import Any

from benchmarks.measure import cpu_seconds

#: The calls measured, in the order an order makes them.
CALLS = ("PutItem (place)", "GetItem (each step)", "TransactWriteItems (reserve)",
         "BatchGetItem (stock levels)", "UpdateItem (ship)", "UpdateItem (notify claim)")


def measure(as_shipped: bool, n_orders: int, stream_records: bool = True) -> dict[str, float]:
    """Emulator CPU ms per call of each kind, for `n_orders` orders of the demo's mix."""
    from orders.aws import stock
    from orders.domain.order import validate
    from orders.domain.records import Change
    from orders.domain.states import OrderState, Step
    from orders.emulator.server import EmulatorProcess
    from orders.harness.order_mix import OrderMix
    from orders.infra import provisioning
    from orders.runtime.dependencies import dependencies
    from orders.steps.reservation import take

    emulator = EmulatorProcess(with_redis=False, as_shipped=as_shipped, stream_records=stream_records).start()
    try:
        settings = emulator.settings({"ORDERS_ENV": "calls-" + uuid.uuid4().hex[:6]})
        provisioning.up(settings)
        mix = OrderMix(seed=1, run_id=uuid.uuid4().hex[:6])
        orders = [validate(p.order) for p in mix.orders(n_orders * 2) if p.kind == "regular"][:n_orders]
        for sku in {i.sku for o in orders for i in o.items}:
            stock.set_stock(settings, sku, 10 * n_orders)
        deps = dependencies(settings)
        store = deps.orders
        assert emulator._proc is not None
        pid = emulator._proc.pid

        def per_call(action: Callable[[Any], Any], items: list[Any]) -> tuple[float, list[Any]]:
            before = cpu_seconds(pid)
            results = [action(item) for item in items]
            return 1000 * (cpu_seconds(pid) - before) / len(items), results

        figures: dict[str, float] = {}
        figures[CALLS[0]], created = per_call(
            lambda o: store.create(o, "2026-01-01T00:00:00.000000Z", "bench", False)[0], orders)
        figures[CALLS[1]], records = per_call(lambda r: store.load(r.order_id), created)
        pairs = list(zip(records, orders, strict=True))
        figures[CALLS[2]], reserved = per_call(lambda p: take(deps, p[0], p[1])[0], pairs)  # the record
        figures[CALLS[3]], _ = per_call(lambda o: stock.stock_levels(settings, o.skus), orders)
        shipped = Change(OrderState.COMPLETED, Step.SHIP, via=(OrderState.SHIPPED,))
        figures[CALLS[4]], _ = per_call(lambda r: store.transition(r, shipped), reserved)
        figures[CALLS[5]], _ = per_call(lambda r: store.claim_notification(r.order_id, "OrderShipped"),
                                        reserved)
        return figures
    finally:
        emulator.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.emulator_calls")
    parser.add_argument("--orders", type=int, default=200, help="orders replayed per configuration")
    args = parser.parse_args(argv)
    shipped = measure(True, args.orders)
    ours = measure(False, args.orders)
    unrecorded = measure(False, args.orders, stream_records=False)
    print(f"Emulator CPU ms per call, {args.orders} orders each (moto as shipped, then as the project "
          "runs it, then as a single-region run starts it: --no-stream-records)\n")
    print(f"{'call':32}{'as shipped':>12}{'ours':>8}{'ratio':>8}{'no stream records':>19}")
    rows = [(call, shipped[call], ours[call], unrecorded[call]) for call in CALLS]
    rows.append(("one of each", sum(shipped.values()), sum(ours.values()), sum(unrecorded.values())))
    for call, before, after, single in rows:
        ratio = f"{before / after:>7.1f}x" if after else "      -"
        print(f"{call:32}{before:>12.2f}{after:>8.2f}{ratio}{single:>19.2f}")


if __name__ == "__main__":
    main()
