"""What the commands that run a whole platform on this machine share (`orders demo`, `orders chaos`):
how such a run ends when it is interrupted or when the platform does not start."""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

from orders.harness.processes import StartupError

#: Signals that stop a run as Ctrl-C does (a supervisor's stop, a closed terminal).
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


def _interrupt(signum: int, _frame: Any) -> NoReturn:
    raise KeyboardInterrupt(f"signal {signum}")


@contextmanager
def stack_run(command: str, say: Callable[[str], None]) -> Iterator[None]:
    """Around a run that stops its stack on the way out (a `finally`): Ctrl-C, SIGTERM and SIGHUP
    end it with exit status 130, a platform that did not start with 2, each with one line said."""
    previous = {sig: signal.signal(sig, _interrupt) for sig in STOP_SIGNALS}
    try:
        yield
    except KeyboardInterrupt:
        say("\nInterrupted: every process of the run was stopped.")
        sys.exit(130)
    except StartupError as exc:
        say(f"orders {command}: the platform did not start: {exc}")
        sys.exit(2)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
