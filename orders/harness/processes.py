"""Child processes of a run, each the leader of its own process group.

A Celery worker forks or spawns helpers of its own; signalling the whole group
(not only the leader) is what guarantees that stopping a run leaves no orphan,
on success, on failure and on Ctrl-C alike. Each child also starts a new
session, so the terminal's Ctrl-C reaches only the run's own process, which
then stops its children in order.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterable, Sequence
from pathlib import Path


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

    def start(self) -> ChildProcess:
        """Start the command; returns at once (see `wait_ready`)."""
        with open(self.log_path, "ab") as log:  # a restart appends to the crash's log
            self.proc = subprocess.Popen(self.cmd, env=self.env, stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
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
        """The log's last line that looks like an error (or its last line)."""
        lines = [line for line in self.log_text().splitlines() if line.strip()]
        errors = [line for line in lines if any(w in line for w in ("ERROR", "CRITICAL", "Error"))]
        return (errors or lines or ["(empty log)"])[-1].strip()

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
