"""The campaign's hand on the workers: SIGKILL, restart as a supervisor would, stall, second consumer.

A worker killed by the campaign is restarted `restart_delay` seconds later
(systemd's RestartSec, Kubernetes' back-off). A worker that exits when nobody
killed it is what the campaign hunts: it is recorded as an exit caused by a
message (with its log's last error line) and restarted the same way. The
scheduler's thread makes the attacks and ticks; the campaign's thread reads
`settled` and calls `close`: a lock keeps them apart, and once closed the
supervisor starts nothing more (the stack is about to stop everything).
"""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field

from orders.harness.processes import KILL_WAIT_SECONDS, ChildProcess
from orders.harness.stack import Stack

WORKER_PREFIX = "worker "


@dataclass
class Kill:
    """One SIGKILL of a worker's process group, and its restart."""

    queue: str
    pid: int
    at: float  # epoch seconds, just before the signal
    restarted_at: float | None = None
    new_pid: int | None = None


@dataclass
class Exit:
    """A child that exited with nobody killing it."""

    name: str
    pid: int
    at: float
    status: int | None
    last_error: str

    def __str__(self) -> str:
        return f"{self.name} (pid {self.pid}) exited with status {self.status}: {self.last_error}"


@dataclass
class Pending:
    """A child to start again at `due` (monotonic)."""

    child: ChildProcess
    due: float
    kill: Kill | None = None


@dataclass
class Supervisor:
    """Kills, restarts and stalls the stack's workers; notices any other exit."""

    stack: Stack
    restart_delay: float = 3.0
    kills: list[Kill] = field(default_factory=list)
    exits: list[Exit] = field(default_factory=list)
    stalled: dict[int, float] = field(default_factory=dict)  # pid -> when to resume (monotonic)
    pending: list[Pending] = field(default_factory=list)
    extra: ChildProcess | None = None
    extra_ended: bool = False  # stopped by the campaign, or its exit recorded
    closed: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    @property
    def queues(self) -> list[str]:
        """The queues of the stack's workers (one worker each)."""
        return [c.name.removeprefix(WORKER_PREFIX) for c in self.stack.children
                if c.name.startswith(WORKER_PREFIX)]

    @property
    def settled(self) -> bool:
        """Nothing stalled and nothing waiting for its restart."""
        with self._lock:
            return not self.stalled and not self.pending

    def worker(self, queue: str) -> ChildProcess:
        return next(c for c in self.stack.children if c.name == WORKER_PREFIX + queue)

    def kill(self, queue: str, fallback: list[str]) -> Kill | None:
        """SIGKILL the worker of `queue` (or of another in `fallback` if that one is down)."""
        with self._lock:
            down = {p.child.name for p in self.pending}
            for name in [queue, *fallback]:
                child = self.worker(name)
                if not self.closed and child.running and child.name not in down and child.proc is not None:
                    return self._kill(name, child, child.proc)
        return None

    def _kill(self, queue: str, child: ChildProcess, proc: subprocess.Popen[bytes]) -> Kill:
        kill = Kill(queue, proc.pid, time.time())
        child.signal_group(signal.SIGKILL)
        self.kills.append(kill)
        self.pending.append(Pending(child, time.monotonic() + self.restart_delay, kill))
        # Restarted only once gone; a process that outlives SIGKILL (an uninterruptible wait) is reported.
        proc.wait(timeout=KILL_WAIT_SECONDS)
        return kill

    def stall(self, queue: str, seconds: float) -> None:
        """SIGSTOP the worker of `queue` for `seconds`: a process alive but not beating."""
        with self._lock:
            child = self.worker(queue)
            if not self.closed and child.running and child.pid is not None:
                child.signal_group(signal.SIGSTOP)
                self.stalled[child.pid] = time.monotonic() + seconds

    def start_extra(self, queue: str) -> None:
        """A second consumer of `queue`, as a second replica of its service would be."""
        with self._lock:
            if self.closed:
                return
            first = self.worker(queue)
            cmd = list(first.cmd)
            cmd[cmd.index("-n") + 1] = f"{queue}-2@%h"
            self.extra = ChildProcess(f"second consumer {queue}", cmd, first.env,
                                      first.log_path.with_name(f"worker-{queue}-2.log"), first.ready_text)
            self.stack.children.append(self.extra)  # before it starts: the stack stops it, whatever happens
            self.extra.start()

    def stop_extra(self) -> None:
        """A warm shutdown of the second consumer (it gives back what it holds)."""
        with self._lock:
            if self.extra is not None and not self.extra_ended:
                self.extra_ended = True
                self.extra.signal_group(signal.SIGTERM)

    def tick(self) -> None:
        """Resume stalled workers, restart those due, and notice any child that exited on its own."""
        with self._lock:
            if self.closed:
                return
            now = time.monotonic()
            for pid in [pid for pid, due in self.stalled.items() if now >= due]:
                self._resume(pid)
            for pending in [p for p in self.pending if now >= p.due]:
                self.pending.remove(pending)
                pending.child.start()
                if pending.kill is not None:
                    pending.kill.restarted_at, pending.kill.new_pid = time.time(), pending.child.pid
            self._notice_exits(now)

    def last_look(self) -> None:
        """Record the children that exited since the last tick (once closed: while the figures are taken)."""
        with self._lock:
            self._notice_exits(time.monotonic())

    def _notice_exits(self, now: float) -> None:
        waiting = {id(p.child) for p in self.pending}
        for child in self.stack.children:
            if id(child) in waiting or child.running or child.proc is None:
                continue
            if child is self.extra:  # not restarted: it was only ever there for a while
                if not self.extra_ended:
                    self.extra_ended = True
                    self._exited(child)
                continue
            self._exited(child)
            self.pending.append(Pending(child, now + self.restart_delay))

    def _exited(self, child: ChildProcess) -> None:
        assert child.proc is not None
        self.exits.append(Exit(child.name, child.proc.pid, time.time(), child.exit_status,
                               child.last_error()[:300]))

    def close(self) -> None:
        """Start nothing more, and resume anything stalled (a stopped process would not see SIGTERM)."""
        with self._lock:
            self.closed = True
            for pid in list(self.stalled):
                self._resume(pid)

    def _resume(self, pid: int) -> None:
        del self.stalled[pid]
        for child in self.stack.children:
            if child.pid == pid:
                child.signal_group(signal.SIGCONT)

    @property
    def worker_exits(self) -> list[Exit]:
        """Workers (not beat) that exited with nobody killing them."""
        return [e for e in self.exits if e.name != "beat"]
