"""`orders status ORDER_ID` and `orders inventory set|show|restock`."""

from __future__ import annotations

import json
import uuid
from typing import Any

import click

from orders.settings import get_settings


@click.command("status")
@click.argument("order_id")
@click.option("--json", "as_json", is_flag=True,
              help='Print the order record as JSON, with its gateway entries as "ledger".')
def status_cmd(order_id: str, as_json: bool) -> None:
    """Show an order's state, reason, history and gateway entries (exit 1 if there is no such order)."""
    from orders.aws.gateway import Gateway
    from orders.aws.store import OrderStore

    record = OrderStore(get_settings()).get(order_id)
    if record is None:
        click.echo(f"no order {order_id!r} in environment {get_settings().env!r}", err=True)
        raise SystemExit(1)
    record["ledger"] = [entry.to_json() for entry in Gateway(get_settings()).entries(order_id)]
    if as_json:
        click.echo(json.dumps(record, indent=2, sort_keys=True))
        return
    click.echo(_describe(record))


def _describe(record: dict[str, Any]) -> str:
    lines = [f"order {record['orderId']}: {record['status']}"
             + (f" ({record['reason']})" if record.get("reason") else "")]
    if record.get("totalAmount"):
        lines.append(f"  customer {record['customerId']} ({record['customerTier']}), "
                     f"total {record['totalAmount']} {record['currency']}")
    lines += [f"  problem: {p}" for p in record.get("problems") or []]
    for entry in record["history"]:
        extra = f"  {entry['reason']}" if entry.get("reason") else ""
        lines.append(f"  {entry['at']}  {entry['status']:<10} by {entry.get('step', '?')}{extra}")
    if record.get("shipment", {}) and record["shipment"].get("trackingNumber"):
        lines.append(f"  tracking number {record['shipment']['trackingNumber']}")
    for kind, at in sorted((record.get("notifications") or {}).items(), key=lambda kv: kv[1]):
        lines.append(f"  customer told of {kind} at {at}")
    lines += [f"  gateway {e['kind']} {e['id']}: {e['amount']} {e['currency']}"
              + (f" at {e['at']}" if e["at"] else "") for e in record.get("ledger") or []]
    return "\n".join(lines)


@click.group("inventory")
def inventory_group() -> None:
    """Manage stock: set a level, show it, or restock through the inventory FIFO queue."""


@inventory_group.command("set")
@click.argument("sku")
@click.argument("quantity", type=click.IntRange(min=0))
def set_cmd(sku: str, quantity: int) -> None:
    """Set SKU's available quantity (directly in the stock table)."""
    from orders.aws.stock import set_stock

    level = set_stock(get_settings(), sku, quantity)
    click.echo(f"{sku}: {level['available']} available, {level['reserved']} reserved")


@inventory_group.command("show")
@click.argument("sku")
@click.option("--json", "as_json", is_flag=True, help='Print {"sku", "available", "reserved"}.')
def show_cmd(sku: str, as_json: bool) -> None:
    """Show SKU's available and reserved quantity (exit 1 if the product is unknown)."""
    from orders.aws.stock import get_stock

    level = get_stock(get_settings(), sku)
    if level is None:
        click.echo(f"unknown sku {sku!r}", err=True)
        raise SystemExit(1)
    if as_json:
        click.echo(json.dumps(level, sort_keys=True))
    else:
        click.echo(f"{sku}: {level['available']} available, {level['reserved']} reserved")


@inventory_group.command("restock")
@click.argument("sku")
@click.argument("quantity", type=click.IntRange(min=1))
@click.option("--id", "restock_id", default=None,
              help="Idempotency key: the same id adds the stock once (default: a new one).")
def restock_cmd(sku: str, quantity: int, restock_id: str | None) -> None:
    """Add QUANTITY to SKU through the inventory FIFO queue (in order with its reservations)."""
    from orders.celery import app

    restock_id = restock_id or f"restock-{uuid.uuid4().hex[:16]}"
    app.send_task("inventory.restock", args=(sku, quantity, restock_id),
                  MessageGroupId=sku, MessageDeduplicationId=restock_id)
    click.echo(f"restock {restock_id}: {quantity} x {sku} sent to inventory.fifo")


commands = [status_cmd, inventory_group]
