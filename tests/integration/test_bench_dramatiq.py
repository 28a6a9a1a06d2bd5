"""The chain suite's peer configuration, dramatiq on dramatiq-sqs, runs: every chain done, calls counted.

Correctness of the run only; its speed is what `orders bench --suite chain` prints.
"""

from benchmarks.chain import LoadPlan
from benchmarks.dramatiq_chain import NOTE, run_dramatiq
from benchmarks.timelines import STAGES


def test_dramatiq_chains_all_complete_with_their_calls_counted_at_the_emulator():
    run = run_dramatiq("dramatiq", LoadPlan(orders=10, timeout=120), concurrency=2)

    assert (run.orders, run.completed) == (10, 10)
    assert [run.stages[stage].n for stage in STAGES] == [10] * len(STAGES)
    # Each chain: its placement and four hand-offs are one SendMessage each, its five
    # messages one DeleteMessage each (dramatiq-sqs batches neither).
    assert run.calls.get("sqs:SendMessage", 0) >= 50 and run.calls.get("sqs:DeleteMessage", 0) >= 50
    assert run.calls.get("sqs:ReceiveMessage", 0) > 0 and run.calls_per_order is not None
    assert {f"worker {stage}" for stage in STAGES} <= set(run.cpu_seconds)
    assert NOTE in run.notes
