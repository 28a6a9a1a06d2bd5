"""Loaded by a test's worker process (`-I`): with $DIE_BEFORE_PUBLISHING set to a task name, the
process SIGKILLs itself just before it publishes a message for that task, that is after the step
that sends it recorded its write and before the message is stored. Without it, nothing happens."""

from __future__ import annotations

import os
import signal
from typing import Any

from celery import signals

TASK = os.environ.get("DIE_BEFORE_PUBLISHING")


def die(sender: str | None = None, **_: Any) -> None:
    if sender == TASK:
        os.kill(os.getpid(), signal.SIGKILL)


if TASK:
    signals.before_task_publish.connect(die, weak=False, dispatch_uid="tests.die_before_publish")
