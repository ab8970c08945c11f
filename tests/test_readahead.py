"""regbot/copy/readahead.py: a blob's chunks read by a thread of their own, ahead of the
upload that consumes them."""

from __future__ import annotations

import threading
import time

import pytest

from regbot.copy.readahead import read_ahead
from regbot.errors import DigestMismatch


def test_chunks_come_in_order_and_the_stream_is_closed_at_its_end():
    closed = threading.Event()

    def stream():
        try:
            for n in range(100):
                yield str(n).encode()
        finally:
            closed.set()

    assert [int(c) for c in read_ahead(stream(), depth=3)] == list(range(100))
    assert closed.wait(5)


def test_the_reader_keeps_at_most_depth_chunks_ready():
    produced = []

    def stream():
        for n in range(50):
            produced.append(n)
            yield b"x"

    chunks = read_ahead(stream(), depth=4)
    assert next(chunks) == b"x"
    time.sleep(0.3)  # the reader fills what it may, then waits for the consumer
    # one handed out, four ready, at most one more read and waiting to be put
    assert 5 <= len(produced) <= 6
    assert sum(1 for _ in chunks) == 49


def test_an_error_of_the_stream_comes_after_the_chunks_read_before_it():
    def stream():
        yield b"a"
        yield b"b"
        raise DigestMismatch("src/app@sha256:00", "content is sha256:11")

    got = []
    with pytest.raises(DigestMismatch, match="content is sha256:11"):
        for chunk in read_ahead(stream()):
            got.append(chunk)
    assert got == [b"a", b"b"]


def test_a_consumer_that_stops_early_stops_the_reader_and_closes_the_stream():
    closed = threading.Event()
    produced = []

    def endless():
        try:
            while True:
                produced.append(1)
                yield b"y" * 1024
        finally:
            closed.set()

    chunks = read_ahead(endless(), depth=2)
    assert next(chunks) and next(chunks)
    chunks.close()  # the upload failed: the consumer goes away
    assert closed.wait(5)
    count = len(produced)
    time.sleep(0.3)
    assert len(produced) == count  # it reads no more
    assert not any(t.name == "regbot-read-ahead" and t.is_alive()
                   for t in threading.enumerate())
