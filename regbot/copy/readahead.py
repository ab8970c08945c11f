"""Read a blob ahead of its upload, so the GET and the PUT of a large blob overlap.

One thread both receiving (and hashing) a chunk and then sending it does one after the
other: a copy then runs at the sum of both legs' times. A reader thread that keeps up to
`depth` chunks ready lets the upload send while the next chunks arrive (sockets and
hashlib release the GIL), and memory stays at `depth` chunks however large the blob.

    for chunk in read_ahead(stream):   # stream: the verified GET's chunks
        send(chunk)

Everything `stream` raises (a digest mismatch at its end, a cancelled copy, a broken
connection) is raised to the consumer in order, after the chunks read before it. A
consumer that stops early (the upload failed) stops the reader, which closes `stream`.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator

DEPTH = 8  # chunks kept ready (of up to READ_CHUNK each: 2 MiB)
_PUT_WAIT = 0.2  # seconds between the reader's looks at whether the consumer left


class _Failed:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


_END = object()


def read_ahead(stream: Iterator[bytes], depth: int = DEPTH) -> Iterator[bytes]:
    """`stream`'s chunks, read by a thread of their own up to `depth` chunks ahead."""
    ready: queue.Queue = queue.Queue(maxsize=depth)
    left = threading.Event()  # set when the consumer is done, early or not

    def offer(item: object) -> bool:
        while not left.is_set():
            try:
                ready.put(item, timeout=_PUT_WAIT)
                return True
            except queue.Full:
                continue
        return False

    def fill() -> None:
        try:
            for chunk in stream:
                if not offer(chunk):
                    return
            offer(_END)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, in order
            offer(_Failed(exc))
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                close()

    reader = threading.Thread(target=fill, name="regbot-read-ahead", daemon=True)
    reader.start()
    try:
        while True:
            item = ready.get()
            if item is _END:
                return
            if isinstance(item, _Failed):
                raise item.exc
            yield item
    finally:
        left.set()
