"""Child processes of a run, each the leader of its own process group.

A Celery worker forks or spawns helpers of its own; signalling the whole group
(not only the leader) is what guarantees that stopping a run leaves no orphan,
on success, on failure and on Ctrl-C alike. Each child also starts a new
session, so the terminal's Ctrl-C reaches only the run's own process, which
then stops its children in order.

A new session also means that nothing reaches a child when the run's process
dies without stopping it (SIGKILL, OOM killer): the reaper
(orders.harness.groups) stops the children of a parent that is gone.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from orders.harness.groups import group_pids, reaper, rss_bytes, signal_group
from orders.harness.groups import group_stats as group_stats  # benchmarks/measure.py reads it here

#: How long a process may take to vanish after SIGKILL (it only lingers in an uninterruptible wait).
KILL_WAIT_SECONDS = 10.0


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
        if self.proc is not None:
            signal_group(self.proc.pid, sig)


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
        child.signal_group(signal.SIGCONT)  # a stopped (stalled) process acts on SIGTERM only once continued
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
        _wait(child, KILL_WAIT_SECONDS)
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
