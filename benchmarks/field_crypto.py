"""What the sensitive fields' encryption costs: KMS calls per N orders, and time per seal and open.

The door seals N orders' three fields (orders.aws.field_crypto), then each step's process opens
its own field of every order (charge the token, shipping the address, notify the contact), each
starting with an empty key cache as a fresh worker process does. The KMS calls are the
emulator's own counts (`/_orders/calls`), not the client's.

    python -m benchmarks.field_crypto [--orders 1000] [--processes 4]

`--processes` opening processes per step: each unwraps every data key it meets once.
"""

from __future__ import annotations

import argparse
import time
import uuid

from orders.domain.order import Order, validate
from orders.domain.sensitive import Field

#: Which step's process opens which field.
OPENERS = {"charge": Field.PAYMENT_TOKEN, "ship": Field.SHIPPING_ADDRESS, "notify": Field.CONTACT}


def orders_of(n: int) -> list[Order]:
    from orders.harness.order_mix import OrderMix

    mix = OrderMix(seed=1, run_id=uuid.uuid4().hex[:6])
    found: list[Order] = []
    while len(found) < n:
        found += [validate(p.order) for p in mix.orders(n) if p.kind == "regular"]
    return found[:n]


def main(argv: list[str] | None = None) -> None:
    from orders.aws import field_crypto
    from orders.aws.field_crypto import FieldCrypto, forget_keys
    from orders.emulator.server import EmulatorProcess, call_counts
    from orders.infra import provisioning

    parser = argparse.ArgumentParser(prog="python -m benchmarks.field_crypto")
    parser.add_argument("--orders", type=int, default=1000)
    parser.add_argument("--processes", type=int, default=4, help="opening processes per step")
    args = parser.parse_args(argv)
    emulator = EmulatorProcess(with_redis=False).start()
    try:
        settings = emulator.settings({"ORDERS_ENV": "fe-" + uuid.uuid4().hex[:6]})
        provisioning.up(settings)
        orders, crypto = orders_of(args.orders), FieldCrypto(settings)
        forget_keys()
        call_counts(emulator.endpoint, reset=True)
        started = time.perf_counter()
        sealed = [o.sealed(crypto.seal) for o in orders]
        seal_ms = 1000 * (time.perf_counter() - started) / len(orders)
        at_door = call_counts(emulator.endpoint)
        call_counts(emulator.endpoint, reset=True)
        started = time.perf_counter()
        for field in OPENERS.values():
            share = -(-len(sealed) // args.processes)
            for p in range(args.processes):
                forget_keys()  # a fresh worker process
                for order in sealed[p * share:(p + 1) * share]:
                    order.opened(field, crypto.open)
        open_ms = 1000 * (time.perf_counter() - started) / len(orders)
        in_steps = call_counts(emulator.endpoint)
    finally:
        emulator.stop()
    kms = {k: v for k, v in {**{f"door {k}": v for k, v in at_door.items()},
                             **{f"steps {k}": v for k, v in in_steps.items()}}.items() if "kms:" in k}
    print(f"{args.orders} orders sealed by one process, opened by {args.processes} process(es) per step "
          f"(data key bounds: {field_crypto.DATA_KEY_MAX_USES} uses, {field_crypto.DATA_KEY_MAX_AGE:.0f} s)")
    for call, n in sorted(kms.items()):
        print(f"  {call:32}{n:>6}")
    print(f"  KMS calls per order: {sum(kms.values()) / args.orders:.4f}")
    print(f"  seal, 3 fields: {seal_ms:.3f} ms/order; open, 3 fields (3 steps): {open_ms:.3f} ms/order")


if __name__ == "__main__":
    main()
