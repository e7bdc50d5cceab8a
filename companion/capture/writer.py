"""Append-only JSONL event writer: callers enqueue, one thread serializes and writes.

Line format (seed 002, no spaces, one event per line, ``\\n``-terminated)::

    {"timestamp_ns":1740119255179855500,"event_src":"control_publisher","event_data":"[\\"mouse.move\\",2592,1309]"}

``event_data`` is ``json.dumps(obj, separators=(",", ":"))`` of the event object,
embedded as a JSON *string*. Non-ASCII is escaped (``\\uXXXX``), so the file is ASCII.

Durability: each batch of queued events is written with ``os.write`` on an
``O_APPEND`` descriptor (no user-space buffer), so once a batch is written a crash of
this process (even SIGKILL) cannot lose it; only events still queued are lost, and at
most the last line can be torn (a partial ``write``). ``close()`` also ``fsync``s.

Order: lines are written in the order ``put`` was called, except that each batch is
stably sorted by ``timestamp_ns``; events from different threads (keyboard, mouse,
window) can still be out of order across batch boundaries by the enqueue latency
(microseconds), so readers must stable-sort by ``timestamp_ns``.
"""
from __future__ import annotations

import errno
import json
import operator
import os
import queue
import threading
from pathlib import Path
from typing import Any

from companion.util.errors import EnvProblem

_STOP = object()
_MAX_BATCH = 8192  # events per write() call at most


# Same output as json.dumps(obj, separators=(",", ":"), allow_nan=False), but without
# building a new JSONEncoder per call (json.dumps does that for non-default arguments).
_encode_compact = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode
_quote = json.encoder.encode_basestring_ascii  # str -> JSON string literal, ASCII only


def format_line(timestamp_ns: int, event_src: str, event_data: Any) -> str:
    """One JSONL line (with trailing newline) in the seed 002 shape. Pure.

    Raises TypeError/ValueError for a non-int timestamp, a non-str source or event data
    that is not JSON (NaN/inf included).
    """
    if type(timestamp_ns) is not int:  # bool, float, numpy ints are refused
        raise TypeError(f"timestamp_ns must be int, got {type(timestamp_ns).__name__}")
    if type(event_src) is not str:
        raise TypeError(f"event_src must be str, got {type(event_src).__name__}")
    return ('{"timestamp_ns":%d,"event_src":%s,"event_data":%s}\n'
            % (timestamp_ns, _quote(event_src), _quote(_encode_compact(event_data))))


class JsonlWriter:
    """Thread-safe, non-blocking JSONL event writer for ``<session_id>.jsonl``.

    ``put`` is safe from any thread and never blocks (unbounded queue). ``start()``
    opens the file (``O_RDWR|O_APPEND|O_CREAT``, mode 0o644, appending to an
    existing file whose torn last line, if any, it first cuts off) and starts the
    writer thread; it raises EnvProblem with a one-line
    message if the file cannot be opened (missing or unwritable folder, disk full...).
    Also usable as a context manager (``with JsonlWriter(p) as w: ...``).
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._q: queue.SimpleQueue = queue.SimpleQueue()
        self._fd: int | None = None
        self._thread: threading.Thread | None = None
        self._closed = False
        self._close_lock = threading.Lock()
        self._result: dict | None = None
        self.written = 0       # events whose line was written completely
        self.dropped = 0       # events lost: unserializable, put after close, write error
        self.max_queue = 0     # largest backlog seen by the writer thread (events)
        self.bytes_written = 0
        self.error: str | None = None  # first problem (one line), if any
        # first failed write of the file itself (disk full, file too large, I/O error,
        # folder gone): events from then on are lost, the session cannot be complete
        self.failed: str | None = None
        self.repaired_bytes = 0  # torn tail of an existing file cut off at start()

    # -- lifecycle -------------------------------------------------------------
    def start(self) -> "JsonlWriter":
        """Open the file and start the writer thread. Returns self."""
        if self._thread is not None:
            raise RuntimeError("JsonlWriter already started")
        if self._closed:
            raise RuntimeError("JsonlWriter is closed")
        try:
            self._fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        except OSError as e:
            reason = e.strerror or str(e)
            if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
                reason = "folder is not writable" if e.errno != errno.EROFS else "read-only file system"
            elif e.errno == errno.ENOENT:
                reason = "folder does not exist"
            raise EnvProblem(f"cannot write event log {self.path}: {reason}") from None
        try:
            self.repaired_bytes = _cut_torn_tail(self._fd)
        except OSError as e:
            os.close(self._fd)
            self._fd = None
            raise EnvProblem(f"cannot write event log {self.path}: {e.strerror or e}") from None
        if self.repaired_bytes:
            self._note(f"removed a torn last line ({self.repaired_bytes} bytes) left by an earlier crash")
        self._thread = threading.Thread(target=self._run, name="nm-jsonl-writer", daemon=True)
        self._thread.start()
        return self

    def __enter__(self) -> "JsonlWriter":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def put(self, timestamp_ns: int, event_src: str, event_data: Any) -> None:
        """Enqueue one event (any thread; never blocks, never raises).

        ``timestamp_ns``: epoch ns (``time.time_ns()`` taken when the event happened);
        ``event_src``: e.g. "control_publisher"; ``event_data``: a JSON-able list/dict.
        Events put before ``start()`` are kept and written once started; after
        ``close()`` they are counted as dropped. ``event_data`` is serialized later on
        the writer thread: do not mutate it after the call.
        """
        if self._closed:
            self.dropped += 1
            return
        self._q.put((timestamp_ns, event_src, event_data))

    def close(self) -> dict:
        """Drain the queue, fsync, close the file; idempotent.

        Returns ``{"written", "dropped", "max_queue", "bytes", "error", "failed"}``
        (counts of events; ``error`` is the first problem as one line, or None;
        ``failed`` the first failed write of the file, or None).
        """
        with self._close_lock:
            if self._result is not None:
                return dict(self._result)
            self._closed = True
            if self._thread is not None:
                self._q.put(_STOP)
                self._thread.join()
            else:  # never started: whatever was queued cannot be written
                while True:
                    try:
                        item = self._q.get_nowait()
                    except queue.Empty:
                        break
                    if item is not _STOP:
                        self.dropped += 1
            if self._fd is not None:
                try:
                    os.fsync(self._fd)
                except OSError as e:
                    msg = f"writing {self.path} failed: {e.strerror or e}"
                    if self.failed is None:
                        self.failed = msg
                    self._note(msg)
                os.close(self._fd)
                self._fd = None
            self._result = self.stats()
            return dict(self._result)

    def stats(self) -> dict:
        """Live counts (same keys as ``close()``), callable from any thread."""
        return {"written": self.written, "dropped": self.dropped, "max_queue": self.max_queue,
                "bytes": self.bytes_written, "error": self.error, "failed": self.failed}

    # -- writer thread ---------------------------------------------------------
    def _note(self, msg: str) -> None:
        if self.error is None:
            self.error = msg.splitlines()[0] if msg else "unknown error"

    def _run(self) -> None:
        q = self._q
        stop = False
        while not stop:
            item = q.get()
            batch = []
            backlog = q.qsize() + 1
            if backlog > self.max_queue:
                self.max_queue = backlog
            while True:
                if item is _STOP:
                    stop = True  # still drain anything queued before it
                else:
                    batch.append(item)
                if len(batch) >= _MAX_BATCH:
                    break
                try:
                    item = q.get_nowait()
                except queue.Empty:
                    break
            if batch:
                try:
                    self._write_batch(batch)
                except Exception as e:  # noqa: BLE001 - a bug must not kill the log
                    self.dropped += len(batch)
                    self._note(f"event writer failed: {type(e).__name__}: {e}")
        # anything put concurrently with close() after the sentinel
        rest = []
        while True:
            try:
                item = q.get_nowait()
            except queue.Empty:
                break
            if item is not _STOP:
                rest.append(item)
        if rest:
            self._write_batch(rest)

    def _write_batch(self, batch: list) -> None:
        try:
            batch.sort(key=_first)  # stable; C-speed key
        except TypeError:  # a non-int timestamp (refused by format_line below)
            batch.sort(key=_ts_key)
        lines = []
        for ts, src, data in batch:
            try:
                lines.append(format_line(ts, src, data))
            except (TypeError, ValueError) as e:
                self.dropped += 1
                self._note(f"unserializable event from {src!r}: {e}")
        if not lines:
            return
        buf = "".join(lines).encode("ascii")
        n_events = len(lines)
        view = memoryview(buf)
        try:
            while view:
                n = os.write(self._fd, view)
                view = view[n:]
                self.bytes_written += n
        except OSError as e:
            # count the events whose line made it completely; cut a partial line off
            # again so the file keeps ending on a line boundary (ENOSPC, EIO, EFBIG...)
            done = len(buf) - len(view)
            cut = buf.rfind(b"\n", 0, done) + 1
            if cut < done:
                try:
                    size = os.fstat(self._fd).st_size
                    os.ftruncate(self._fd, size - (done - cut))
                    self.bytes_written -= done - cut
                except OSError:
                    pass
            complete = buf.count(b"\n", 0, cut)
            self.written += complete
            self.dropped += n_events - complete
            msg = f"writing {self.path} failed: {e.strerror or e}"
            if self.failed is None:
                self.failed = msg
            self._note(msg)
            return
        self.written += n_events


_first = operator.itemgetter(0)


def _cut_torn_tail(fd: int) -> int:
    """If the file ends in an unterminated line (a crash mid-write), truncate it away
    so appended lines do not glue onto it. Returns the bytes removed."""
    size = os.fstat(fd).st_size
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return 0
    pos = size
    while pos > 0:
        start = max(0, pos - 65536)
        chunk = os.pread(fd, pos - start, start)
        i = chunk.rfind(b"\n")
        if i >= 0:
            keep = start + i + 1
            break
        pos = start
    else:
        keep = 0
    os.ftruncate(fd, keep)
    return size - keep


def _ts_key(item) -> int:
    ts = item[0]
    return ts if type(ts) is int else 0
