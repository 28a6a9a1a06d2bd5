"""The live progress of a run: one updating line on a terminal, a line every few seconds elsewhere."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from orders.harness.runner import Progress
from orders.harness.summary import FINAL_STATES_SHOWN


def progress_line(p: Progress) -> str:
    """'  12.3 s  placed 120/300  refused 6  in flight 14  completed 90 ...'."""
    finals = "  ".join(f"{s} {p.by_state.get(s, 0)}" for s in FINAL_STATES_SHOWN)
    return (f"{p.elapsed:6.1f} s  placed {p.placed}/{p.total}  refused {p.refused}  "
            f"in flight {p.in_flight}  {finals}")


class ProgressPrinter:
    """Callable for `run_orders(progress=...)`."""

    def __init__(self, stream: TextIO = sys.stdout, every: float = 2.0):
        self.stream = stream
        self.live = stream.isatty()
        self.every = every
        self.last_printed = 0.0
        self.last: Progress | None = None

    def __call__(self, p: Progress) -> None:
        self.last = p
        if self.live:
            self.stream.write("\r" + progress_line(p) + "\x1b[K")
            self.stream.flush()
        elif time.monotonic() - self.last_printed >= self.every:
            self.last_printed = time.monotonic()
            print(progress_line(p), file=self.stream, flush=True)

    def finish(self) -> None:
        """End the live line (or print the final state of a periodic one)."""
        if self.last is None:
            return
        if self.live:
            self.stream.write("\n")
        else:
            print(progress_line(self.last), file=self.stream)
        self.stream.flush()
