"""Fixes to moto's SQS for the emulator's load (applied by orders.emulator.server).

- Long polls: moto's ReceiveMessage waits with `wait_for_messages`, which returns
  at once whenever the queue holds any visible message, even one it cannot
  deliver (a FIFO message behind an in-flight message of its group): the receive
  loop then rescanned the queue in a busy loop for the whole WaitTimeSeconds
  (4.4 s of CPU per 5 s poll). It also takes the FIFO groups in flight once, at
  its start, so a poll never saw a group freed meanwhile and returned empty
  after the full wait. Here a long poll is a series of short polls, each waking
  on a new message, on a delete or a visibility change (which may free a FIFO
  message group: a hot product's group is received again as soon as its last
  in-flight message is deleted, as on SQS, not up to a re-check later), or
  after RECHECK_SECONDS (a visibility timeout or a delay running out), until
  the deadline.
- Per-message queue scans: moto reads `Queue.attributes` (which counts the
  queue's visible, in-flight and delayed messages, one scan each) three times
  for every message it sends and, through the retention check, for every
  message it receives, only to read a static attribute. Here those paths read
  the attribute itself; GetQueueAttributes still counts.
- The clock: every visibility and delay check of moto's SQS reads the time
  through `unix_time_millis`, which builds two datetimes (now, and the epoch) to
  subtract them: 3 µs a read, and a receive reads it three times for every
  message the queue holds, so a queue with a backlog behind an in-flight FIFO
  group (a hot product's) cost a receive milliseconds. 15% of the front's CPU
  in a pipeline run at 20/s (py-spy). `epoch_seconds` and `epoch_millis` read
  `time.time()`, the same instant on the same epoch.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime
from typing import Any

#: Set while the emulator stops: long polls answer with what they have instead of waiting out their
#: WaitTimeSeconds (the HTTP server joins its threads before the process can exit).
_stopping = threading.Event()

#: How often a long poll re-checks a queue whose visible messages it cannot deliver, for
#: changes nothing announces (a visibility timeout or a message delay running out).
RECHECK_SECONDS = 0.1

_static = threading.local()
#: moto's epoch: a naive datetime, as its `utcnow` gives.
EPOCH = datetime(1970, 1, 1)


def install() -> None:
    """Patch moto's SQS models in this process (the emulator's)."""
    _stopping.clear()
    from moto.core.utils import unix_time
    from moto.sqs.models import Queue, SQSBackend

    receive = SQSBackend.receive_message

    def receive_message(self: Any, queue_name: str, count: int, wait_seconds_timeout: int,
                        visibility_timeout: int, message_attribute_names: Any = None) -> Any:
        deadline = time.monotonic() + (wait_seconds_timeout or 0)
        queue = self.get_queue(queue_name)
        while True:
            found = receive(self, queue_name, count, 0, visibility_timeout, message_attribute_names)
            left = deadline - time.monotonic()
            if found or left <= 0 or _stopping.is_set():
                return found
            with queue._messages_lock:  # notified by moto when a message is added
                queue._messages_lock.wait(timeout=min(RECHECK_SECONDS, left))

    counted = Queue.__dict__["attributes"].fget  # the property's getter, as moto defines it

    def attributes(self: Any) -> dict[str, Any]:
        if not getattr(_static, "active", False):
            return counted(self)
        cbd = getattr(self, "content_based_deduplication", False)
        return {"ContentBasedDeduplication": str(cbd).lower() if isinstance(cbd, bool) else cbd}

    def retained(self: Any, queue_name: str, message: Any) -> bool:
        period = int(self.get_queue(queue_name).message_retention_period)
        return bool(period + message.sent_timestamp / 1000 > unix_time())

    delete = Queue.delete_message

    def delete_message(self: Any, receipt_handle: str) -> None:
        try:
            delete(self, receipt_handle)
        finally:
            wake(self)

    change_visibility = SQSBackend.change_message_visibility

    def change_message_visibility(self: Any, queue_name: str, receipt_handle: str,
                                  visibility_timeout: int) -> None:
        try:
            change_visibility(self, queue_name, receipt_handle, visibility_timeout)
        finally:
            wake(self.get_queue(queue_name))

    from moto.sqs import models

    setattr(models, "unix_time", epoch_seconds)  # noqa: B010 (patching moto: the module's own names)
    setattr(models, "unix_time_millis", epoch_millis)  # noqa: B010
    setattr(SQSBackend, "receive_message", receive_message)  # noqa: B010 (patching moto)
    setattr(Queue, "delete_message", delete_message)  # noqa: B010
    setattr(SQSBackend, "change_message_visibility", change_message_visibility)  # noqa: B010
    setattr(Queue, "attributes", property(attributes))  # noqa: B010
    setattr(SQSBackend, "is_message_valid_based_on_retention_period", retained)  # noqa: B010
    for name in ("send_message", "send_message_batch"):
        setattr(SQSBackend, name, _without_counts(getattr(SQSBackend, name)))


def epoch_seconds(dt: datetime | None = None) -> float:
    """moto's `unix_time`: seconds since the epoch of `dt` (naive, UTC) or of now."""
    if dt is None:
        return time.time()
    return (dt - EPOCH).total_seconds()


def epoch_millis(dt: datetime | None = None) -> float:
    """moto's `unix_time_millis`."""
    return epoch_seconds(dt) * 1000.0


def release_polls() -> None:
    """End every long poll now, and any that starts later, with what it has (the emulator is stopping)."""
    _stopping.set()


def wake(queue: Any) -> None:
    """Let the long polls waiting on `queue` look again (a FIFO message group may be free now)."""
    with queue._messages_lock:
        queue._messages_lock.notify_all()


def _without_counts(send: Any) -> Any:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        outer = getattr(_static, "active", False)
        _static.active = True
        try:
            return send(*args, **kwargs)
        finally:
            _static.active = outer
    return wrapper
