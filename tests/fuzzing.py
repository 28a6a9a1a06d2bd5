"""Hypothesis profiles of the fuzz tests (every test named `test_fuzz_*`).

`quick` (the default, in `make test`) runs a few hundred examples per property;
`full` runs the issue's 10,000: `ORDERS_FUZZ=full make test ARGS="-k fuzz"`.
No example database is kept (hypothesis's own caches in .hypothesis/ ignore
themselves in git): a failure prints the example and the seed to reproduce it.
"""

from __future__ import annotations

import os
from datetime import timedelta

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

PROFILES = {"quick": 200, "full": 10_000}
PROFILE = os.environ.get("ORDERS_FUZZ", "quick")
EXAMPLES = PROFILES.get(PROFILE, PROFILES["quick"])

for _name, _examples in PROFILES.items():
    # The deadline is the "bounded time" of each example: validation and decoding are linear,
    # so even the largest generated input takes a few milliseconds.
    settings.register_profile(_name, max_examples=_examples, deadline=timedelta(seconds=1), database=None,
                              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.load_profile(PROFILE if PROFILE in PROFILES else "quick")

#: Any JSON value (what a client or a hand-made message can send), a few levels deep.
json_scalars = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
                | st.text(max_size=30))
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=5)
                           | st.dictionaries(st.text(max_size=12), inner, max_size=6), max_leaves=25)
#: Anything Python code can hand to `place_order.delay()`, beyond JSON.
python_values = st.recursive(
    json_scalars | st.floats() | st.decimals() | st.binary(max_size=20) | st.integers(min_value=10**300)
    | st.text(max_size=2000),
    lambda inner: st.lists(inner, max_size=5) | st.tuples(inner, inner)
    | st.dictionaries(st.text(max_size=12), inner, max_size=6), max_leaves=25)
