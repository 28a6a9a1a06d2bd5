"""What the emulator's access log reads of a gzipped body (orders.emulator.access_log.readable)."""

import gzip

from orders.emulator import access_log
from orders.emulator.access_log import readable

ZIPPED = {"HTTP_CONTENT_ENCODING": "gzip"}


def test_a_gzipped_body_is_read_unzipped_and_any_other_as_sent():
    assert readable(ZIPPED, gzip.compress(b'{"a": 1}')) == b'{"a": 1}'
    assert readable({}, gzip.compress(b"x")) == gzip.compress(b"x")  # not said to be gzip


def test_a_body_that_unzips_past_the_bound_is_not_unzipped(monkeypatch):
    monkeypatch.setattr(access_log, "MAX_UNZIPPED", 1024)
    bomb = gzip.compress(bytes(1025))
    assert readable(ZIPPED, bomb) == bomb
    assert readable(ZIPPED, gzip.compress(bytes(1024))) == bytes(1024)


def test_a_truncated_or_false_gzip_is_returned_as_sent():
    cut = gzip.compress(b'{"a": 1}')[:-6]
    assert readable(ZIPPED, cut) == cut
    assert readable(ZIPPED, b'{"a": 1}') == b'{"a": 1}'
