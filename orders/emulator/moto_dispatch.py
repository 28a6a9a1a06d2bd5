"""A fix to moto's request dispatch for the emulator's load (applied by orders.emulator.server).

moto finds the method an action calls by listing its response class's functions with
`inspect.getmembers` on every request: about 4% of the front process's CPU in a 20 orders/s run
(py-spy, docs/performance.md, "sixth round"). A class's functions do not change while it
serves, so the list is made once per class.
"""

from __future__ import annotations

import functools


def install() -> None:
    """Patch moto's dispatch in this process (the emulator's)."""
    from moto.core import responses, utils

    listed = getattr(utils.method_names_from_class, "__wrapped__", utils.method_names_from_class)
    responses.method_names_from_class = functools.lru_cache(maxsize=None)(listed)  # type: ignore[assignment]

