"""A real worker consumes a real SQS queue on the emulator."""

import threading

from orders.celery import app
from tests.helpers import wait_for, worker

seen: list[str] = []
lock = threading.Lock()


@app.task(name="ops.smoke_echo")
def smoke_echo(word: str) -> None:
    with lock:
        seen.append(word)


def test_worker_consumes_its_queue(infra):
    smoke_echo.delay("hello")
    with worker(["orders"]):
        wait_for(lambda: "hello" in seen)
