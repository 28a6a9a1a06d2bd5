"""Test-only tasks, one per service queue, for workers started as processes (`-I` this module).

Each appends a word to a file, so a test in another process can see which ran.
"""

from pathlib import Path

from orders.celery import app


def _record(path: str, word: str) -> None:
    with Path(path).open("a") as out:
        out.write(word + "\n")


@app.task(name="payments.probe_record")
def payments_probe(path: str, word: str) -> None:
    _record(path, word)


@app.task(name="shipping.probe_record")
def shipping_probe(path: str, word: str) -> None:
    _record(path, word)
