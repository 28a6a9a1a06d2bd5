"""Process groups on this machine: who is in one, stopping one, and a reaper that stops them all
when the process that started them dies.

A run's children (orders.harness.processes) each lead a process group of their
own, in a session of their own: nothing reaches them when the run's process
dies without stopping them (SIGKILL, the OOM killer). The `Reaper`, a small
process per parent (`python -m orders.harness.groups`), does.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import IO

#: Once their parent is gone, how long its children get to stop (SIGTERM) before SIGKILL.
ORPHAN_GRACE_SECONDS = 10.0


def group_stats(pgid: int) -> dict[int, list[str]]:
    """The /proc/<pid>/stat fields after the command name (state first), by pid, of every
    live (not zombie) process of a process group (Linux; empty elsewhere)."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # The command name (field 2) may hold spaces; fields after its ')' are fixed.
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            found[int(stat.parent.name)] = fields
    return found


def group_pids(pgid: int) -> list[int]:
    """Every live (not zombie) process of a process group."""
    return list(group_stats(pgid))


def rss_bytes(pids: Iterable[int]) -> int:
    """Resident memory of `pids` together, from /proc/<pid>/status (0 for vanished ones)."""
    total = 0
    for pid in pids:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) * 1024
    return total


def signal_group(pgid: int, sig: int) -> None:
    """Send `sig` to every process of group `pgid`; nothing if the group is gone already."""
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def stop_groups(pgids: Iterable[int], grace: float = ORPHAN_GRACE_SECONDS) -> None:
    """SIGTERM each group, SIGKILL whatever is left after `grace` seconds."""
    pgids = list(pgids)
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 0.0)):
        for pgid in pgids:
            signal_group(pgid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and any(_group_alive(g) for g in pgids):
            time.sleep(0.1)


def _group_alive(pgid: int) -> bool:
    if Path("/proc").is_dir():
        return bool(group_pids(pgid))  # zombies left out: an orphan's wait on its parent's end
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


class Reaper:
    """A watchdog process that stops this process's children once this process is gone, however it ended.

    The reaper reads a pipe whose only writer is this process: the groups to watch
    (`+pgid`) and to forget (`-pgid`). When this process dies, by any signal, the
    kernel closes the pipe; the reaper reads its end and stops every group still
    watched. It runs in a session of its own, so a signal to this process's group
    (a test's teardown, a terminal's Ctrl-C) does not take it down first. Unlike
    Linux's PR_SET_PDEATHSIG it works on macOS too, reaches a child's whole group,
    and does not fire when the thread that started a child ends.
    """

    def __init__(self) -> None:
        self._proc: subprocess.Popen[str] | None = None
        self._groups: set[int] = set()
        self._lock = threading.Lock()

    def watch(self, pgid: int) -> None:
        """Stop group `pgid` if this process dies before `forget(pgid)`."""
        with self._lock:
            self._groups.add(pgid)
            self._tell(f"+{pgid}")

    def forget(self, pgid: int) -> None:
        with self._lock:
            if pgid in self._groups:
                self._groups.discard(pgid)
                self._tell(f"-{pgid}")

    def _tell(self, line: str) -> None:
        for _ in range(2):  # a reaper that died is replaced
            proc = self._running()
            try:
                assert proc.stdin is not None
                proc.stdin.write(line + "\n")
                proc.stdin.flush()
                return
            except (BrokenPipeError, OSError):
                self._proc = None

    def _running(self) -> subprocess.Popen[str]:
        if self._proc is None or self._proc.poll() is not None:  # (re)started, told every group
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "orders.harness.groups"], stdin=subprocess.PIPE, text=True,
                stdout=subprocess.DEVNULL, start_new_session=True)
            assert self._proc.stdin is not None
            self._proc.stdin.write("".join(f"+{g}\n" for g in self._groups))
            self._proc.stdin.flush()
        return self._proc

    def after_fork_in_child(self) -> None:
        """A forked child must not hold the pipe open (the reaper would outlive this process)."""
        if self._proc is not None and self._proc.stdin is not None:
            try:
                os.close(self._proc.stdin.fileno())
            except OSError:
                pass
        self._proc, self._groups, self._lock = None, set(), threading.Lock()


reaper = Reaper()
os.register_at_fork(after_in_child=reaper.after_fork_in_child)


def watched_groups(lines: Iterable[str]) -> set[int]:
    """The groups still watched at the end of a reaper's input (`+pgid`, `-pgid`, one a line)."""
    groups: set[int] = set()
    for line in lines:
        sign, number = line.strip()[:1], line.strip()[1:]
        if number.isdigit() and sign == "+":
            groups.add(int(number))
        elif number.isdigit() and sign == "-":
            groups.discard(int(number))
    return groups


def reap(stream: IO[str]) -> None:
    """The reaper's loop: follow the watched groups until EOF (the parent is gone), then stop them."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stop_groups(watched_groups(stream))  # reads until EOF


if __name__ == "__main__":
    reap(sys.stdin)
