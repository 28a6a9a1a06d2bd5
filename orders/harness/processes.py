"""Child processes of a run, each the leader of its own process group.

A Celery worker forks or spawns helpers of its own; signalling the whole group
(not only the leader) is what guarantees that stopping a run leaves no orphan,
on success, on failure and on Ctrl-C alike. Each child also starts a new
session, so the terminal's Ctrl-C reaches only the run's own process, which
then stops its children in order.

A new session also means that nothing reaches a child when the run's process
dies without stopping it (SIGKILL, OOM killer): a `Reaper` process, one per
parent, stops the children of a parent that is gone.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import IO

#: Once their parent is gone, how long its children get to stop (SIGTERM) before SIGKILL.
ORPHAN_GRACE_SECONDS = 10.0


class StartupError(RuntimeError):
    """A child process exited or never became ready; the message carries its log's tail."""


class ChildProcess:
    """One command in its own process group, its output in a log file."""

    def __init__(self, name: str, cmd: Sequence[str], env: dict[str, str], log_path: Path,
                 ready_text: str | None = None):
        self.name = name
        self.cmd = list(cmd)
        self.env = env
        self.log_path = log_path
        self.ready_text = ready_text
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_start = 0  # where this run's output begins in the log (a restart appends)

    def start(self) -> ChildProcess:
        """Start the command; returns at once (see `wait_ready`)."""
        if self.proc is not None and not group_pids(self.proc.pid):
            reaper.forget(self.proc.pid)  # a restart: the previous group is gone
        with open(self.log_path, "ab") as log:  # a restart appends to the crash's log
            self._log_start = log.tell()
            self.proc = subprocess.Popen(self.cmd, env=self.env, stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        reaper.watch(self.proc.pid)
        return self

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def exit_status(self) -> int | None:
        return self.proc.poll() if self.proc else None

    def last_error(self) -> str:
        """The last line of this run's output that looks like an error (or its last line).

        A fatal error comes first: a worker may log its tasks' errors while it shuts down after one.
        """
        try:
            text = self.log_path.read_bytes()[self._log_start:].decode(errors="replace")
        except FileNotFoundError:
            text = ""
        lines = [line for line in text.splitlines() if line.strip()]
        fatal = [line for line in lines if "CRITICAL" in line]
        errors = [line for line in lines if any(w in line for w in ("ERROR", "Error"))]
        return (fatal or errors or lines or ["(empty log)"])[-1].strip()

    def is_ready(self) -> bool:
        """Whether the log shows the ready text; StartupError if the process exited."""
        if self.proc is None:
            return False
        if self.proc.poll() is not None:
            raise StartupError(f"{self.name} exited with status {self.proc.returncode}:\n"
                               + self.log_tail())
        return self.ready_text is None or self.ready_text in self.log_text()

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 15) -> str:
        return "\n".join("    " + line for line in self.log_text().splitlines()[-lines:])

    def rss(self) -> int:
        """Resident memory of the whole group in bytes (a worker and its pool), for benchmarks."""
        return rss_bytes(group_pids(self.proc.pid)) if self.running and self.proc else 0

    def signal_group(self, sig: int) -> None:
        """Send `sig` to every process of the group (the leader and whatever it started)."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass  # the whole group is gone already


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


def wait_ready(children: Iterable[ChildProcess], timeout: float) -> None:
    """Wait until every child logged its ready text; StartupError names the first that did not."""
    pending = list(children)
    deadline = time.monotonic() + timeout
    while pending:
        pending = [c for c in pending if not c.is_ready()]
        if pending and time.monotonic() > deadline:
            names = ", ".join(c.name for c in pending)
            raise StartupError(f"not ready after {timeout:.0f} s: {names}\n" + pending[0].log_tail())
        if pending:
            time.sleep(0.1)


def stop_all(children: Sequence[ChildProcess], timeout: float = 20.0) -> list[str]:
    """SIGTERM every group, wait for warm shutdowns, SIGKILL what is left; returns who was killed."""
    for child in children:
        child.signal_group(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    try:
        for child in children:
            _wait(child, max(0.0, deadline - time.monotonic()))
    except KeyboardInterrupt:
        pass  # a second Ctrl-C: stop waiting, kill below
    killed = [c.name for c in children if c.running]
    for child in children:
        # Also after a clean exit of the leader: nothing it started may outlive it.
        child.signal_group(signal.SIGKILL)
        if child.proc is not None:
            child.proc.wait()
    _wait_until_gone(children, timeout=5.0)
    for child in children:
        if child.pid:
            reaper.forget(child.pid)
    return killed


def _wait_until_gone(children: Sequence[ChildProcess], timeout: float) -> None:
    """SIGKILL is asynchronous: a grandchild may still show for a moment after it was sent."""
    deadline = time.monotonic() + timeout
    while any(group_pids(c.pid) for c in children if c.pid) and time.monotonic() < deadline:
        time.sleep(0.05)


def _wait(child: ChildProcess, timeout: float) -> None:
    if child.proc is None:
        return
    try:
        child.proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pass


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
                [sys.executable, "-m", "orders.harness.processes"], stdin=subprocess.PIPE, text=True,
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


def stop_groups(pgids: Iterable[int], grace: float = ORPHAN_GRACE_SECONDS) -> None:
    """SIGTERM each group, SIGKILL whatever is left after `grace` seconds."""
    pgids = list(pgids)
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 0.0)):
        for pgid in pgids:
            try:
                os.killpg(pgid, sig)
            except (ProcessLookupError, PermissionError):
                pass
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


def reap(stream: IO[str]) -> None:
    """The reaper's loop: follow the watched groups until EOF (the parent is gone), then stop them."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stop_groups(watched_groups(stream))  # reads until EOF


if __name__ == "__main__":
    reap(sys.stdin)
