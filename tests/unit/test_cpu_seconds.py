"""The benchmarks' CPU reading of another process group, the figure every CPU-per-order and idle figure is."""

import subprocess
import sys

import pytest

from benchmarks.measure import cpu_seconds

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc, Linux's CPU clocks")

# The child spends `burn` seconds of its own CPU (by its own clock), says how much, waits on stdin.
BURN = """
import sys, time
burn = float(sys.argv[1])
start = time.process_time()
while time.process_time() - start < burn:
    pass
print(time.process_time(), flush=True)
sys.stdin.read()
"""


@pytest.mark.parametrize("burn", [0.004, 0.3])
def test_a_groups_cpu_is_read_to_below_a_clock_tick(burn):
    # 4 ms is under /proc's 10 ms tick: read from utime and stime it would as often be 0 as 10 ms.
    child = subprocess.Popen([sys.executable, "-c", BURN, str(burn)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        own = float(child.stdout.readline())
        read = cpu_seconds(child.pid)
        # The child's own clock counts its whole life to the print (its interpreter's start-up too); it
        # has since only written a line and blocked on stdin: microseconds. Counted in 10 ms ticks the
        # two would be up to a tick apart.
        assert own <= read < own + 0.002, (own, read)
        assert cpu_seconds(child.pid) >= read  # a clock, never back
    finally:
        child.communicate("")


def test_a_group_with_no_live_process_spends_nothing():
    child = subprocess.Popen([sys.executable, "-c", "pass"], start_new_session=True)
    child.wait()
    assert cpu_seconds(child.pid) == 0
