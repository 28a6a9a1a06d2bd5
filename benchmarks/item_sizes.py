"""How big the pipeline's DynamoDB items are once its orders are final: what DynamoDB bills a write by.

DynamoDB on demand bills a write by the item's size (one write unit per KB, rounded up;
two in a transaction) and not by the call, so the size of an order item, written at every
step, weighs on the bill more than the number of calls. This places orders of the demo's
mix through the whole pipeline on the embedded emulator, then reads every item of the
orders, stock and gateway tables and prints their sizes by kind, computed as DynamoDB
counts them (attribute names and values; AWS's "Item sizes and formats").

    python -m benchmarks.item_sizes [--orders 150] [--rate 10]
"""

from __future__ import annotations

import argparse
import statistics
from typing import Any


def value_size(value: dict[str, Any]) -> int:
    """Bytes of one DynamoDB-JSON value, as DynamoDB counts them."""
    (kind, data), = value.items()
    if kind == "S":
        return len(data.encode())
    if kind == "N":  # about one byte per two significant digits, and one more
        return len(data.lstrip("-").replace(".", "").strip("0")) // 2 + 1
    if kind == "B":
        return len(data)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "L":
        return 3 + sum(1 + value_size(e) for e in data)
    if kind == "M":
        return 3 + sum(1 + len(k.encode()) + value_size(e) for k, e in data.items())
    if kind in ("SS", "NS", "BS"):
        return sum(value_size({kind[0]: e}) for e in data)
    raise ValueError(f"not a DynamoDB value type: {kind}")


def item_size(item: dict[str, Any]) -> int:
    """Bytes of one item: each attribute's name and value."""
    return sum(len(name.encode()) + value_size(value) for name, value in item.items())


def kind_of(table: str, item: dict[str, Any]) -> str:
    """`orders: completed order`, `orders: reservation`, `stock`, ..."""
    if table != "orders":
        return table
    sk = item["sk"]["S"]
    return f"orders: {item['status']['S']} order" if sk == "order" else f"orders: {sk}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.item_sizes")
    parser.add_argument("--orders", type=int, default=150)
    parser.add_argument("--rate", type=float, default=10.0)
    args = parser.parse_args(argv)
    from orders.aws import clients
    from orders.aws.tables import table_name
    from orders.harness.order_mix import MIXES, OrderMix
    from orders.harness.runner import run_orders, seed_catalogue
    from orders.harness.stack import Stack

    with Stack() as stack:
        settings = stack.settings
        mix = OrderMix(seed=7, run_id="sizes", review_threshold=settings.review_threshold,
                       weights=MIXES["demo"])
        seed_catalogue(settings, mix.stock(args.orders))
        run_orders(settings, mix.orders(args.orders), args.rate, timeout=60)
        ddb = clients.client("dynamodb", settings)
        sizes: dict[str, list[int]] = {}
        for table in ("orders", "stock", "gateway"):
            for page in ddb.get_paginator("scan").paginate(TableName=table_name(settings, table)):
                for item in page["Items"]:
                    sizes.setdefault(kind_of(table, item), []).append(item_size(item))
    print(f"Item sizes after {args.orders} orders of the demo's mix (bytes, as DynamoDB counts them):")
    for kind, found in sorted(sizes.items()):
        median = statistics.median(found)
        print(f"  {kind:28} {len(found):>5} items   median {median:>6.0f}   max {max(found):>6}")


if __name__ == "__main__":
    main()
