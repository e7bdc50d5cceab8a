"""The companion's event log (``<session_id>.jsonl``) -> columnar arrays -> ``events.parquet`` rows.

Two steps, so the aligner can fit the clock in between:

- :func:`read_events_jsonl` (I/O): reads the seed 002 JSONL into :class:`RawEvents` --
  columnar NumPy/Arrow arrays of the control events (keys, mouse) in file order, plus the
  window events, recorder markers and clock pairs separately. A torn LAST line (a crash
  mid-write) is dropped and reported (``RawEvents.torn_tail``); any other unreadable line
  is a :class:`~companion.util.errors.BadInput` naming the file and line number.
- :func:`build_events_table` (pure): :class:`RawEvents` + frame capture times ->
  a ``pa.Table`` with exactly :data:`companion.contract.schemas.EVENTS_SCHEMA`.

Speed: the outer objects are parsed by ``pyarrow.json`` (C++) and the
``event_data`` strings of the common control forms by anchored RE2 patterns
(``pyarrow.compute.extract_regex``) that accept only the exact JSON shapes; anything the
patterns do not match (unusual spacing, escaped key names, extra elements) goes through
``json.loads`` one line at a time, so the fast path never changes a result, only the time.
A worker thread parses the next chunk of lines' outer objects while the event_data of the
current chunk is parsed. Line hashes (sha256, which hold the GIL line by line) are computed
meanwhile by a child Python process for large files, else by a thread.
Column meanings: docs/contracts/events-parquet.md. Measured: bench/bench_events.py.
"""
from __future__ import annotations

import binascii
import hashlib
import json
import math
import os
import stat
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from companion.contract import events as ev
from companion.contract.keys import vk_to_dom
from companion.contract.schemas import EVENTS_SCHEMA
from companion.util.errors import BadInput
from companion.util.procs import remove_stale_files, usable_cpus

# Kind codes of the control events (RawEvents.kind) and of focus rows.
KIND_KEY_DOWN, KIND_KEY_UP, KIND_MOVE, KIND_CLICK, KIND_SCROLL, KIND_FOCUS = 0, 1, 2, 3, 4, 5
#: events.parquet ``event_type`` per kind code (seed 001 names)
EVENT_TYPES = ("key_down", "key_up", "mouse_move", "mouse_click", "wheel", "focus")
#: events.parquet ``source`` per kind code (seed 000 names)
SOURCES = ("keyboard", "keyboard", "mouse", "mouse", "mouse", "window")

_ACTION_KIND = {ev.KEY_PRESS: KIND_KEY_DOWN, ev.KEY_RELEASE: KIND_KEY_UP,
                ev.MOUSE_MOVE: KIND_MOVE, ev.MOUSE_CLICK: KIND_CLICK,
                ev.MOUSE_SCROLL: KIND_SCROLL}

_OUTER_SCHEMA = pa.schema([("timestamp_ns", pa.int64()), ("event_src", pa.string()),
                           ("event_data", pa.string())])
_MAX_LINES = (2**31 - 1) // 64   # hash column offsets are int32 (64 hex chars per row)


# ------------------------------------------------------------------------- data classes
@dataclass
class WindowEvent:
    """One ``window_publisher`` line: the active window at ``t_ns`` (epoch ns)."""
    t_ns: int
    line: int                     # 1-based line number in the JSONL
    hash: str                     # sha256 hex of the line bytes
    window_id: str | None         # str(hWnd): X11 window id, Win32 HWND, macOS window number
    title: str | None
    rect: tuple[float, float, float, float] | None   # left, top, right, bottom (screen px)
    data: dict                    # the whole event_data object


@dataclass
class RawEvents:
    """The event log, columnar. Control arrays are parallel, in file order, length ``len(self)``.

    Missing values: ``vk`` -1, floats NaN, strings null.
    """
    path: str
    n_lines: int                  # event lines read (all sources, torn tail excluded)
    torn_tail: bool               # the last line was incomplete and was dropped
    torn_line: int | None         # its 1-based line number
    t_ns: np.ndarray              # int64 epoch ns (companion wall clock, input callback time)
    line: np.ndarray              # int64 1-based line numbers
    hash: pa.Array                # string: sha256 hex of each source line (without newline)
    kind: np.ndarray              # int8 KIND_* codes
    vk: np.ndarray                # int64 Windows virtual-key code, -1 = none (keys only)
    key_name: pa.Array            # string: pynput name of the key (keys only)
    x: np.ndarray                 # float64 screen px (mouse only)
    y: np.ndarray
    button: pa.Array              # string: left right middle x1 x2 or pynput's name (clicks)
    pressed: np.ndarray           # bool: press (True) or release (keys and clicks)
    dx: np.ndarray                # float64 horizontal scroll steps (pynput sign)
    dy: np.ndarray                # float64 vertical scroll steps, + = up/away from the user
    windows: list[WindowEvent] = field(default_factory=list)
    markers: list[tuple[int, dict]] = field(default_factory=list)   # recorder events
    clock_pairs: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.int64))
    skipped: int = 0              # lines with an unknown event_src or control action

    def __len__(self) -> int:
        return int(self.t_ns.shape[0])


class _LineError(ValueError):
    """A line that is not a valid event line; the message says why."""


# ------------------------------------------------------------------------- line parsing
def _parse_outer(raw: bytes) -> tuple[int, str, str]:
    """Parse and check one line's outer object; raises _LineError."""
    try:
        obj = json.loads(raw)
    except UnicodeDecodeError:
        raise _LineError("not UTF-8 text") from None
    except ValueError as e:
        raise _LineError(f"not valid JSON ({e.msg} at column {e.colno})"
                         if hasattr(e, "msg") else "not valid JSON") from None
    if not isinstance(obj, dict):
        raise _LineError("not a JSON object")
    missing = [k for k in ("timestamp_ns", "event_src", "event_data") if k not in obj]
    if missing:
        raise _LineError("not an event line: missing " + ", ".join(missing)
                         + " (expected the companion's events JSONL)")
    ts, src, data = obj["timestamp_ns"], obj["event_src"], obj["event_data"]
    if not isinstance(ts, int) or isinstance(ts, bool) or not (-2**63 <= ts < 2**63):
        raise _LineError(f"timestamp_ns must be an integer (epoch ns), got {ts!r:.40}")
    if not isinstance(src, str):
        raise _LineError("event_src must be a string")
    if not isinstance(data, str):
        raise _LineError("event_data must be a JSON document serialized to a string")
    return ts, _text(src), data


def _text(v: str) -> str:
    """``v`` as valid Unicode: lone surrogates (JSON ``\\ud800`` escapes, e.g. half of an
    emoji typed on Windows) become U+FFFD, so the string can be stored as UTF-8."""
    try:
        v.encode("utf-8")
        return v
    except UnicodeEncodeError:
        return v.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def _ident(v: Any) -> str | None:
    """A window/process identifier as text: ints and strings only."""
    if isinstance(v, bool) or not isinstance(v, (int, str)):
        return None
    return _text(v) if isinstance(v, str) else str(v)


def _num(v: Any, what: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise _LineError(f"{what} must be a number, got {v!r:.40}")
    f = float(v)
    if not math.isfinite(f):
        raise _LineError(f"{what} must be finite")
    return f


def _parse_control(data: str) -> tuple | None:
    """Slow path for one control_publisher event_data: a tuple of column values, or None
    for an action this reader does not know (skipped). Raises _LineError."""
    try:
        obj = json.loads(data)
    except ValueError as e:
        raise _LineError(f"event_data is not valid JSON ({getattr(e, 'msg', e)})") from None
    if not isinstance(obj, list) or not obj or not isinstance(obj[0], str):
        raise _LineError("control event_data must be a JSON array starting with the action")
    kind = _ACTION_KIND.get(obj[0])
    if kind is None:
        return None
    # (kind, vk, name, x, y, button, pressed, dx, dy)
    if kind in (KIND_KEY_DOWN, KIND_KEY_UP):
        if len(obj) < 2:
            raise _LineError(f"{obj[0]} needs a key code")
        vk = obj[1]
        if vk is not None and (isinstance(vk, bool) or not isinstance(vk, int)
                               or not 0 <= vk < 2**31):
            raise _LineError(f"key code must be a non-negative integer or null, got {vk!r:.40}")
        name = obj[2] if len(obj) > 2 else None
        if name is not None and not isinstance(name, str):
            raise _LineError("key name must be a string")
        return (kind, -1 if vk is None else vk, _text(name) if name else None, math.nan, math.nan, None,
                kind == KIND_KEY_DOWN, math.nan, math.nan)
    need = {KIND_MOVE: 3, KIND_CLICK: 5, KIND_SCROLL: 5}[kind]
    if len(obj) < need:
        raise _LineError(f"{obj[0]} needs {need - 1} values, got {len(obj) - 1}")
    x, y = _num(obj[1], "x"), _num(obj[2], "y")
    if kind == KIND_MOVE:
        return (kind, -1, None, x, y, None, False, math.nan, math.nan)
    if kind == KIND_CLICK:
        if not isinstance(obj[3], str):
            raise _LineError("mouse button must be a string")
        if not isinstance(obj[4], bool):
            raise _LineError("mouse.click pressed must be true or false")
        return (kind, -1, None, x, y, _text(obj[3]), obj[4], math.nan, math.nan)
    return (kind, -1, None, x, y, None, False, _num(obj[3], "dx"), _num(obj[4], "dy"))


def _parse_json_object(data: str, what: str) -> dict:
    try:
        obj = json.loads(data)
    except ValueError as e:
        raise _LineError(f"{what} event_data is not valid JSON ({getattr(e, 'msg', e)})") from None
    if not isinstance(obj, dict):
        raise _LineError(f"{what} event_data must be a JSON object")
    return obj


def _window_event(t: int, line: int, h: str, obj: dict) -> WindowEvent:
    rect = obj.get("rect")
    r: tuple[float, float, float, float] | None = None
    if isinstance(rect, (list, tuple)) and len(rect) == 4 and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            for v in rect):
        r = tuple(float(v) for v in rect)  # type: ignore[assignment]
    title = obj.get("title")
    return WindowEvent(t_ns=t, line=line, hash=h, window_id=_ident(obj.get("hWnd")),
                       title=_text(title) if isinstance(title, str) else None, rect=r, data=obj)


# ------------------------------------------------------------------------- fast paths
_NUM = r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?"
_S = r"[ \t]*"
_RE_MOVE = (rf'^{_S}\[{_S}"mouse\.move"{_S},{_S}(?P<x>{_NUM}){_S},{_S}(?P<y>{_NUM}){_S}\]{_S}$')
_RE_SCROLL = (rf'^{_S}\[{_S}"mouse\.scroll"{_S},{_S}(?P<x>{_NUM}){_S},{_S}(?P<y>{_NUM}){_S},'
              rf'{_S}(?P<dx>{_NUM}){_S},{_S}(?P<dy>{_NUM}){_S}\]{_S}$')
_RE_CLICK = (rf'^{_S}\[{_S}"mouse\.click"{_S},{_S}(?P<x>{_NUM}){_S},{_S}(?P<y>{_NUM}){_S},'
             rf'{_S}"(?P<b>[A-Za-z0-9_]+)"{_S},{_S}(?P<p>true|false){_S}\]{_S}$')
_RE_KEY = (rf'^{_S}\[{_S}"keyboard\.(?P<a>press|release)"{_S},{_S}(?P<vk>0|[1-9][0-9]{{0,8}}|null){_S}'
           rf'(?:,{_S}"(?P<n>[^"\\\x00-\x1f]+)"{_S})?\]{_S}$')


def _matched(data: pa.Array, prefix: str, pattern: str) -> tuple[np.ndarray, pa.StructArray]:
    """Indices of rows of ``data`` that start with ``prefix`` and fully match ``pattern``,
    and the extracted groups of those rows (same order)."""
    cand = pc.starts_with(data, prefix)
    cidx = np.flatnonzero(np.asarray(cand.to_numpy(zero_copy_only=False), dtype=bool))
    if cidx.size == 0:
        return cidx, pa.array([], pa.struct([]))
    m = pc.extract_regex(data.filter(cand), pattern)
    ok = np.asarray(m.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
    return cidx[ok], m.filter(pa.array(ok))


def _to_f64(a: pa.Array) -> np.ndarray:
    return np.asarray(pc.cast(a, pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)


_HASH_DIGEST = type(hashlib.sha256()).digest


def _contiguous(starts: np.ndarray, ends: np.ndarray) -> bool:
    """Each line starts right after the previous one's "\\n" (no "\\r", no blank lines)."""
    return starts.size > 0 and bool(np.all(starts[1:] == ends[:-1] + 1))


def _hex_array(hexb: bytes, n: int) -> pa.Array:
    """String array of ``n`` 64-character hex digests stored back to back in ``hexb``."""
    offsets = np.arange(0, 64 * (n + 1), 64, dtype=np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(hexb))


def _hash_lines(data: bytes, starts: np.ndarray, ends: np.ndarray,
                chunk: int = 65536) -> pa.Array:
    """sha256 hex of each line ``data[starts[i]:ends[i]]`` (ends exclude the newline).

    The loop runs in C (map over hashlib, ~0.8 us a line) on chunks of lines so memory
    stays small; it holds the GIL. Lines are contiguous in the common case (no blank
    lines); otherwise each line is sliced on its own.
    """
    n = int(starts.size)
    parts: list[bytes] = []
    if _contiguous(starts, ends):
        st = starts.tolist()
        for i0 in range(0, n, chunk):
            i1 = min(n, i0 + chunk)
            stop = st[i1] - 1 if i1 < n else int(ends[-1])
            lines = data[st[i0]:stop].split(b"\n")
            parts.append(b"".join(map(_HASH_DIGEST, map(hashlib.sha256, lines))))
    else:
        mv = memoryview(data)
        st, en = starts.tolist(), ends.tolist()
        for i0 in range(0, n, chunk):
            lines = [mv[s:e] for s, e in zip(st[i0:i0 + chunk], en[i0:i0 + chunk])]
            parts.append(b"".join(map(_HASH_DIGEST, map(hashlib.sha256, lines))))
    return _hex_array(binascii.hexlify(b"".join(parts)), n)


class _Background:
    """Run ``fn(*args)`` in a thread; ``result()`` joins and re-raises its exception."""

    def __init__(self, fn: Callable[..., Any], *args: Any):
        self._out: list[Any] = []
        self._err: list[BaseException] = []

        def run() -> None:
            try:
                self._out.append(fn(*args))
            except BaseException as e:  # noqa: BLE001 - re-raised in result()
                self._err.append(e)
        self._t = threading.Thread(target=run, name="nm-events-hash", daemon=True)
        self._t.start()

    def result(self) -> Any:
        self._t.join()
        if self._err:
            raise self._err[0]
        return self._out[0]

    def join(self) -> None:
        self._t.join()


# The line hasher (see _ChildHasher): standard library only, so ``python -I -S`` starts it
# in ~20 ms as a child; the same function runs in-process when the child cannot be used.
# It hashes every "\n"-separated piece of the file at ``src`` (the last one too, even if
# empty), reading 4 MB at a time, and writes the sha256 hex digests, 64 bytes a piece, to
# the file ``out`` (a file, not a pipe: 64 MB through a pipe took 0.1 s more).
_HASH_PIECES = r"""
def hash_pieces(src, out):
    import binascii, hashlib
    digest, sha256 = type(hashlib.sha256()).digest, hashlib.sha256
    carry = b""
    with open(src, "rb") as f, open(out, "wb") as o:
        while True:
            got = f.read(1 << 22)
            if got:
                pieces = got.split(b"\n")
                pieces[0] = carry + pieces[0]
                carry = pieces.pop()          # (the start of) the piece the next block ends
            else:
                pieces = [carry]
            o.write(binascii.hexlify(b"".join(map(digest, map(sha256, pieces)))))
            if not got:
                break
"""
_HASH_CHILD = _HASH_PIECES + "\nimport sys\nhash_pieces(sys.argv[1], sys.argv[2])\n"


def _hash_pieces_here(src: str, out: str) -> None:
    """What the hashing child does, in this process (the child could not be used)."""
    ns: dict[str, Any] = {}
    exec(compile(_HASH_PIECES, "<nm-hash-pieces>", "exec"), ns)   # noqa: S102 - our own text
    ns["hash_pieces"](src, out)


#: digest files are named ``<prefix><pid>-<random>.hex`` in the temp folder
_HASH_PREFIX = "nm-events-hash-"
#: file size from which lines are hashed in a child process (below, its ~30 ms start
#: costs more than hashing in a thread gains)
_CHILD_MIN_BYTES = 8 << 20


def _file_id(st: os.stat_result) -> tuple[int, int, int, int]:
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


class _ChildHasher:
    """Line hashes from a child Python process, on the other core.

    sha256 of a short line through hashlib holds the GIL (it is released for buffers of
    2 KB and more only), so a hashing thread takes turns with the parser's Python code
    and both wait (measured: 2.0 s to read 1M lines, 1.4 s with the child). The child is
    started before the parent reads the file and reads it itself; its digests are used
    only when the file stayed the same (device, inode, size, mtime) from before the
    parent's read until the child is done, and the parent's lines are exactly the
    file's first "\n"-separated pieces (no "\r", no blank lines).
    """

    def __init__(self, path: str, st: os.stat_result):
        self._path, self._file_id = path, _file_id(st)
        self.used: bool | None = None       # the child's own digests were used (or not)
        fd, self._out = tempfile.mkstemp(prefix=f"{_HASH_PREFIX}{os.getpid()}-", suffix=".hex")
        os.close(fd)
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-I", "-S", "-c", _HASH_CHILD, path, self._out],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        except BaseException:
            os.unlink(self._out)
            raise

    @classmethod
    def start(cls, path: str, st: os.stat_result) -> _ChildHasher | None:
        """A child for a large regular file, or None (small file, or no Python to start)."""
        if (st.st_size < _CHILD_MIN_BYTES or not stat.S_ISREG(st.st_mode)
                or not sys.executable or getattr(sys, "frozen", False)):
            return None
        remove_stale_files(tempfile.gettempdir(), _HASH_PREFIX)   # of killed runs
        try:
            return cls(path, st)
        except OSError:
            return None

    def digest_file(self) -> str:
        """The file of hex digests of the file's "\\n"-separated pieces, 64 bytes each,
        in order. If the child failed, or the file changed (device, inode, size, mtime)
        since ``start``, the pieces are hashed again here from the file as it is now: the
        companion only appends, so the lines already read are still its first pieces.
        Raises OSError if the file is gone."""
        try:
            ok = self._proc.wait() == 0 and _file_id(os.stat(self._path)) == self._file_id
        except OSError:
            ok = False
        self.used = ok
        if not ok:
            _hash_pieces_here(self._path, self._out)
        return self._out

    def close(self) -> None:
        """Stop the child if it still runs and remove its output (idempotent)."""
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        try:
            os.unlink(self._out)
        except FileNotFoundError:
            pass


class _NoHugePages:
    """``with _NO_HUGE_PAGES:`` NumPy does not ask for transparent huge pages meanwhile.

    NumPy advises the kernel to back arrays of 4 MiB and more with 2 MiB pages. The reader
    and the builder make many such short-lived arrays, and each new huge page is zeroed
    (and its memory compacted) on first touch: on this project's machines (VMs) that took
    0.4-0.6 s of kernel time per 1M events, against 0.1 s with small pages. NumPy's switch
    is process-wide, so it is turned off while any thread is inside and restored when the
    last one leaves; without the switch (another NumPy) this does nothing.
    """

    def __init__(self) -> None:
        try:
            from numpy._core.multiarray import _set_madvise_hugepage
        except ImportError:                          # NumPy 1.x
            try:
                from numpy.core.multiarray import _set_madvise_hugepage
            except ImportError:
                _set_madvise_hugepage = None
        self._set = _set_madvise_hugepage
        self._lock = threading.Lock()
        self._inside = 0
        self._saved = True

    def __enter__(self) -> None:
        if self._set is not None:
            with self._lock:
                if self._inside == 0:
                    self._saved = self._set(False)
                self._inside += 1

    def __exit__(self, *exc: object) -> None:
        if self._set is not None:
            with self._lock:
                self._inside -= 1
                if self._inside == 0:
                    self._set(self._saved)


_NO_HUGE_PAGES = _NoHugePages()


# ------------------------------------------------------------------------- reader
def read_events_jsonl(path: str | os.PathLike, progress: Any = None) -> RawEvents:
    """Read the companion's event log (seed 002 JSONL) into :class:`RawEvents`.

    Raises BadInput (one line) when the file is missing, unreadable, binary, not an event
    log, or has an unreadable line anywhere but at the end. An empty file gives zero
    events. ``progress``: an object with ``update(n)`` (e.g. companion.util.progress.Progress),
    advanced by lines read. Everything is held in memory; the aligner reads long logs
    with :func:`companion.align.eventlog.read_event_log` instead.
    """
    from companion.align.eventlog import read_event_log
    with read_event_log(path, progress, memory_bytes=1 << 62) as log:
        if log.n_events > _MAX_LINES:
            raise BadInput(f"{log.path}: {log.n_events} events is more than this reader holds "
                           f"in memory ({_MAX_LINES})")
        return log.raw()


# pyarrow's threaded JSON parse costs ~60 % more CPU than one thread; with 2 cores the
# other one is busy hashing lines, so threads only pay off with more cores.
_PARSE_THREADS = usable_cpus() >= 4


def _outer_chunk(data: bytes, starts: np.ndarray, ends: np.ndarray, lineno: np.ndarray,
                 spath: str) -> tuple[np.ndarray, pa.Array, pa.Array, np.ndarray | None]:
    """timestamp_ns, event_src, event_data of a run of lines, and the mask of lines kept
    (None = all; whitespace-only lines are dropped). pyarrow first; if it disagrees with
    the line count or fails, json.loads line by line to name the bad line."""
    n = int(starts.size)
    try:
        tbl = pj.read_json(
            pa.BufferReader(pa.py_buffer(data)[int(starts[0]):int(ends[-1])]),
            read_options=pj.ReadOptions(block_size=1 << 22, use_threads=_PARSE_THREADS),
            parse_options=pj.ParseOptions(explicit_schema=_OUTER_SCHEMA,
                                          unexpected_field_behavior="ignore"))
        if tbl.num_rows == n and all(tbl.column(i).null_count == 0 for i in range(3)):
            src, edata = tbl.column(1).combine_chunks(), tbl.column(2).combine_chunks()
            src.validate(full=True)                     # UTF-8: else name the line below
            edata.validate(full=True)
            return np.asarray(tbl.column(0).to_numpy(), dtype=np.int64), src, edata, None
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    tsl, srcl, datal = [], [], []
    keep = np.ones(n, bool)
    for i, (s, e, ln) in enumerate(zip(starts.tolist(), ends.tolist(), lineno.tolist())):
        raw_line = data[s:e]
        if not raw_line.strip():
            keep[i] = False
            continue
        try:
            t, sr, d = _parse_outer(raw_line)
        except _LineError as err:
            raise BadInput(f"{spath}:{ln}: {err}") from None
        tsl.append(t)
        srcl.append(sr)
        datal.append(d)
    return (np.asarray(tsl, dtype=np.int64), pa.array(srcl, pa.string()),
            pa.array(datal, pa.string()), None if keep.all() else keep)


def _parse_controls(data: pa.Array, lineno: np.ndarray, spath: str) -> dict[str, Any]:
    """Columns of the control events (``kind`` -1 marks an unknown action)."""
    m = len(data)
    kind = np.full(m, -1, np.int64)
    vk = np.full(m, -1, np.int64)
    x = np.full(m, np.nan)
    y = np.full(m, np.nan)
    dx = np.full(m, np.nan)
    dy = np.full(m, np.nan)
    pressed = np.zeros(m, bool)
    name_idx = np.full(m, -1, np.int64)      # index into names list
    names: list[str | None] = []
    btn_idx = np.full(m, -1, np.int64)
    btns: list[str] = []
    done = np.zeros(m, bool)
    if m:
        ok, g = _matched(data, '["mouse.move"', _RE_MOVE)
        if ok.size:
            kind[ok] = KIND_MOVE
            x[ok], y[ok] = _to_f64(g.field("x")), _to_f64(g.field("y"))
            done[ok] = True
        ok, g = _matched(data, '["mouse.scroll"', _RE_SCROLL)
        if ok.size:
            kind[ok] = KIND_SCROLL
            x[ok], y[ok] = _to_f64(g.field("x")), _to_f64(g.field("y"))
            dx[ok], dy[ok] = _to_f64(g.field("dx")), _to_f64(g.field("dy"))
            done[ok] = True
        ok, g = _matched(data, '["mouse.click"', _RE_CLICK)
        if ok.size:
            kind[ok] = KIND_CLICK
            x[ok], y[ok] = _to_f64(g.field("x")), _to_f64(g.field("y"))
            pressed[ok] = np.asarray(pc.equal(g.field("p"), "true").to_numpy(
                zero_copy_only=False), bool)
            b = g.field("b")
            enc = pc.dictionary_encode(b)
            btns.extend(enc.dictionary.to_pylist())
            btn_idx[ok] = np.asarray(enc.indices.to_numpy(zero_copy_only=False), np.int64)
            done[ok] = True
        ok, g = _matched(data, '["keyboard.', _RE_KEY)
        if ok.size:
            down = np.asarray(pc.equal(g.field("a"), "press").to_numpy(zero_copy_only=False), bool)
            kind[ok] = np.where(down, KIND_KEY_DOWN, KIND_KEY_UP)
            pressed[ok] = down
            vks = g.field("vk")
            isnull = np.asarray(pc.equal(vks, "null").to_numpy(zero_copy_only=False), bool)
            vnum = pc.cast(pc.if_else(pc.equal(vks, "null"), "0", vks), pa.int64())
            vk[ok] = np.where(isnull, -1, np.asarray(vnum.to_numpy(zero_copy_only=False)))
            nm = g.field("n")
            enc = pc.dictionary_encode(nm)
            base = len(names)
            names.extend(enc.dictionary.to_pylist())
            ni = np.asarray(enc.indices.to_numpy(zero_copy_only=False), np.int64) + base
            empty = np.asarray(pc.equal(nm, "").to_numpy(zero_copy_only=False), bool)
            name_idx[ok] = np.where(empty, -1, ni)
            done[ok] = True
        # numbers JSON allows but float64 can't hold (1e400): let json.loads reject them
        mousey = (kind >= KIND_MOVE) & (kind <= KIND_SCROLL)
        wheel = kind == KIND_SCROLL
        bad = done & ((mousey & ~(np.isfinite(x) & np.isfinite(y)))
                      | (wheel & ~(np.isfinite(dx) & np.isfinite(dy))))
        done &= ~bad
    rest = np.flatnonzero(~done)
    if rest.size:
        slow = data.take(pa.array(rest)).to_pylist()
        for j, d in zip(rest.tolist(), slow):
            try:
                r = _parse_control(d)
            except _LineError as err:
                raise BadInput(f"{spath}:{int(lineno[j])}: {err}") from None
            if r is None:
                continue
            k, v, nme, xx, yy, b, p, ddx, ddy = r
            kind[j], vk[j], x[j], y[j], pressed[j], dx[j], dy[j] = k, v, xx, yy, p, ddx, ddy
            if nme is not None:
                name_idx[j] = len(names)
                names.append(nme)
            if b is not None:
                btn_idx[j] = len(btns)
                btns.append(b)
    return {
        "kind": kind, "vk": vk, "x": x, "y": y, "dx": dx, "dy": dy, "pressed": pressed,
        "key_name": _take_strings(names, name_idx), "button": _take_strings(btns, btn_idx),
    }


def _take_strings(values: list[str | None], idx: np.ndarray) -> pa.Array:
    """String array: values[idx[i]], null where idx < 0."""
    dic = pa.array(values if values else [""], pa.string())
    return dic.take(pa.array(np.where(idx < 0, 0, idx), mask=idx < 0))


# ------------------------------------------------------------------------- table builder
_DOM_KEY = pa.array([vk_to_dom(v)[0] for v in range(256)], pa.string())
_DOM_CODE = pa.array([vk_to_dom(v)[1] for v in range(256)], pa.string())
_BTN_NAMES = pa.array(list(ev.DOM_BUTTON_INDEX), pa.string())
_BTN_INDEX = np.asarray(list(ev.DOM_BUTTON_INDEX.values()), np.int32)


def _opt(values: np.ndarray, valid: np.ndarray, typ: pa.DataType) -> pa.Array:
    """Arrow array of ``values`` with nulls where ``valid`` is False."""
    return pa.array(values, type=typ, mask=~valid)


def _frame_refs(t: np.ndarray, frame_t_ns: np.ndarray,
                frame_interval_ns: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Frame index on screen at each t (searchsorted right - 1) and its validity."""
    f = np.asarray(frame_t_ns, dtype=np.int64).ravel()
    if f.size == 0:
        return np.zeros(t.size, np.int64), np.zeros(t.size, bool)
    if f.size > 1 and bool(np.any(np.diff(f) < 0)):
        raise BadInput("frame capture times are not in order (non-decreasing expected)")
    if frame_interval_ns is None:
        d = np.diff(f)
        d = d[d > 0]
        frame_interval_ns = int(np.median(d)) if d.size else 1   # unknown: its own ns only
    idx = np.searchsorted(f, t, side="right") - 1
    end = int(f[-1]) + int(frame_interval_ns)       # the last frame shows until here
    valid = (idx >= 0) & (t < end)
    return np.where(valid, idx, 0), valid


def _merge_plan(t_c: np.ndarray, line_c: np.ndarray, t_f: np.ndarray,
                line_f: np.ndarray) -> tuple[np.ndarray | None, np.ndarray]:
    """How to merge control rows and focus rows into (t, line) order.

    Returns ``order_c`` (permutation sorting the control rows, None when they already are
    -- the normal case, the companion writes in time order) and ``pos`` (for each focus
    row, sorted by (t, line), the number of sorted control rows before it).
    """
    order_c = None
    if t_c.size > 1 and bool(np.any(np.diff(t_c) < 0)):
        order_c = np.lexsort((line_c, t_c))
        t_c, line_c = t_c[order_c], line_c[order_c]
    lo = np.searchsorted(t_c, t_f, side="left")
    hi = np.searchsorted(t_c, t_f, side="right")
    pos = lo.copy()
    for i in np.flatnonzero(hi > lo).tolist():       # same ns as control rows: file order
        pos[i] = lo[i] + int(np.searchsorted(line_c[lo[i]:hi[i]], line_f[i]))
    return order_c, pos


def _repeat_string(value: str, n: int) -> pa.Array:
    """A string array of ``n`` copies of ``value`` (built from buffers, no per-row work)."""
    b = value.encode("utf-8")
    offsets = np.arange(n + 1, dtype=np.int64) * len(b)
    if n * len(b) < 2**31:
        return pa.StringArray.from_buffers(n, pa.py_buffer(offsets.astype(np.int32)),
                                           pa.py_buffer(b * n))
    return pa.array([value] * n, pa.string())


def build_events_table(raw: RawEvents, session_id: str, frame_t_ns: np.ndarray | Sequence[int],
                       video_size: tuple[int, int] | None = None,
                       to_mono: Callable[[np.ndarray], np.ndarray] | None = None,
                       frame_interval_ns: int | None = None) -> pa.Table:
    """Build ``events.parquet`` rows (exactly EVENTS_SCHEMA), sorted by t_ns (ties: file order).

    ``frame_t_ns``: epoch ns capture time of every frame, non-decreasing (frames.parquet
    ``t_ns``). An event at ``t`` gets ``frame_ref = i`` with ``frame_t_ns[i] <= t <
    frame_t_ns[i+1]``; null before the first frame and from the end of the last frame
    (``frame_t_ns[-1] + frame_interval_ns``; default interval: the median positive
    frame-to-frame difference; with one frame and no interval, only events at its exact
    time get it).
    ``video_size``: (width, height) in the pixel units of the logged mouse coordinates,
    i.e. the screen area OBS captures; ``mouse_x_norm = mouse_x_px / width`` (null if None).
    ``to_mono``: maps an int64 array of epoch ns to OBS monotonic ns (the clock fit);
    ``mono_ns`` is null without it.
    Window events become ``focus`` rows only when the active window changes; every window
    event (heartbeats too) updates the window rect used for ``mouse_x``/``mouse_y``.
    """
    with _NO_HUGE_PAGES:
        return _build_table(raw, session_id, frame_t_ns, video_size, to_mono, frame_interval_ns)


@dataclass
class _WindowTimeline:
    """Window events sorted by (t_ns, line): their times, rects and ids (every window
    event, heartbeats too, updates the rect), and the focus rows: the events where the
    active window changes."""
    win_t: np.ndarray
    win_rect: np.ndarray
    win_ids: pa.Array
    focus: list[WindowEvent]


def _window_timeline(windows: list[WindowEvent]) -> _WindowTimeline:
    wins = sorted(windows, key=lambda w: (w.t_ns, w.line))
    nw = len(wins)
    win_t = np.fromiter((w.t_ns for w in wins), np.int64, nw)
    win_rect = np.full((nw, 4), np.nan)
    for i, w in enumerate(wins):
        if w.rect is not None:
            win_rect[i] = w.rect
    focus: list[WindowEvent] = []
    prev: object = object()
    for w in wins:
        ident = w.window_id if w.window_id is not None else ("title", w.title)
        if ident != prev:
            focus.append(w)
            prev = ident
    return _WindowTimeline(win_t, win_rect, pa.array([w.window_id for w in wins], pa.string()),
                           focus)


def _build_table(raw: RawEvents, session_id: str, frame_t_ns: np.ndarray | Sequence[int],
                 video_size: tuple[int, int] | None,
                 to_mono: Callable[[np.ndarray], np.ndarray] | None,
                 frame_interval_ns: int | None, timeline: _WindowTimeline | None = None,
                 focus: list[WindowEvent] | None = None) -> pa.Table:
    """build_events_table; ``timeline``: the whole log's window timeline (default: that
    of ``raw.windows``), ``focus``: the focus rows to merge with ``raw``'s control rows
    (default: all of the timeline's)."""
    if not isinstance(session_id, str) or not session_id:
        raise BadInput("session_id must be a non-empty string")
    if video_size is not None:
        try:
            vw, vh = (float(v) for v in video_size)
        except (TypeError, ValueError):
            raise BadInput(f"video size must be (width, height), got {video_size!r}") from None
        if not (vw > 0 and vh > 0 and math.isfinite(vw) and math.isfinite(vh)):
            raise BadInput(f"video size must be positive, got {video_size!r}")

    tl = _window_timeline(raw.windows) if timeline is None else timeline
    if focus is None:
        focus = tl.focus
    win_t, win_rect, win_ids = tl.win_t, tl.win_rect, tl.win_ids
    nw = int(win_t.size)
    nf = len(focus)
    nc = len(raw)
    n = nc + nf

    # ---- merge control rows (file order) and focus rows into (t, line) order
    t_f = np.fromiter((w.t_ns for w in focus), np.int64, nf)
    line_f = np.fromiter((w.line for w in focus), np.int64, nf)
    order_c, pos = _merge_plan(np.asarray(raw.t_ns, np.int64), np.asarray(raw.line, np.int64),
                               t_f, line_f)

    def npcol(a: np.ndarray, fill: Any) -> np.ndarray:
        a = a if order_c is None else a[order_c]
        return np.insert(a, pos, np.full(nf, fill, dtype=a.dtype)) if nf else a

    # Arrow columns: one take from [control rows, focus rows] in the merged order
    merged = None
    if nf or order_c is not None:
        ctrl = np.arange(nc) if order_c is None else order_c
        merged = pa.array(np.insert(ctrl, pos, nc + np.arange(nf)))

    def pacol(a: pa.Array, f: pa.Array) -> pa.Array:
        return a if merged is None else pa.concat_arrays([a, f]).take(merged)

    t_s = npcol(raw.t_ns.astype(np.int64), 0)      # a copy: the table's t_ns shares it
    if nf:
        t_s[pos + np.arange(nf)] = t_f
    # the other columns are only read: no copy where the dtype already matches
    k_s = npcol(np.asarray(raw.kind, np.int8), KIND_FOCUS)
    vk_s = npcol(np.asarray(raw.vk, np.int64), -1)
    x_s = npcol(np.asarray(raw.x, np.float64), np.nan)
    y_s = npcol(np.asarray(raw.y, np.float64), np.nan)
    pressed_s = npcol(np.asarray(raw.pressed, bool), False)
    dx_s = npcol(np.asarray(raw.dx, np.float64), np.nan)
    dy_s = npcol(np.asarray(raw.dy, np.float64), np.nan)
    hashes = pacol(raw.hash.cast(pa.string()), pa.array([w.hash for w in focus], pa.string()))
    button = pacol(raw.button.cast(pa.string()), pa.nulls(nf, pa.string()))
    metadata = pacol(_key_metadata(raw), _focus_metadata(focus))

    # ---- active window at each row
    if nw:
        widx = np.searchsorted(win_t, t_s, side="right") - 1
        has_win = widx >= 0
        wsafe = np.where(has_win, widx, 0)
        window_id = win_ids.take(pa.array(wsafe, mask=~has_win))
    else:
        has_win = np.zeros(n, bool)
        wsafe = np.zeros(n, np.int64)
        window_id = pa.nulls(n, pa.string())

    # ---- mouse coordinates
    mouse = np.isfinite(x_s) & np.isfinite(y_s)
    if nw:
        r = win_rect[wsafe]
        ww, wh = r[:, 2] - r[:, 0], r[:, 3] - r[:, 1]
        okw = mouse & has_win & np.isfinite(ww) & np.isfinite(wh) & (ww > 0) & (wh > 0)
        with np.errstate(invalid="ignore", divide="ignore"):
            mx = (x_s - r[:, 0]) / np.where(okw, ww, 1.0)
            my = (y_s - r[:, 1]) / np.where(okw, wh, 1.0)
    else:
        okw = np.zeros(n, bool)
        mx = my = np.zeros(n)
    if video_size is not None:
        xn, yn = x_s / vw, y_s / vh
        okn = mouse
    else:
        xn = yn = np.zeros(n)
        okn = np.zeros(n, bool)

    # ---- keys: DOM key/code from the VK tables
    has_vk = (vk_s >= 0) & (vk_s < 2**31)
    in_tab = has_vk & (vk_s < 256)
    vk_take = pa.array(np.where(in_tab, vk_s, 0), mask=~in_tab)

    # ---- buttons, state, wheel
    bi = pc.index_in(button, value_set=_BTN_NAMES)
    bi_np = np.asarray(bi.fill_null(-1).to_numpy(zero_copy_only=False), np.int64)
    button_index = _opt(_BTN_INDEX[np.where(bi_np >= 0, bi_np, 0)], bi_np >= 0, pa.int32())
    has_state = (k_s <= KIND_KEY_UP) | (k_s == KIND_CLICK)
    state = _STATES.take(pa.array(pressed_s.astype(np.int8), mask=~has_state))
    wheel = k_s == KIND_SCROLL

    # ---- frame_ref, mono_ns
    fref, fok = _frame_refs(t_s, np.asarray(frame_t_ns), frame_interval_ns)
    if to_mono is not None and n:
        mono = np.asarray(to_mono(t_s))
        if mono.shape != t_s.shape:
            raise BadInput(f"to_mono returned shape {mono.shape}, expected {t_s.shape}")
        if not np.issubdtype(mono.dtype, np.integer):
            mono = np.rint(mono.astype(np.float64))
        mono_arr = pa.array(mono.astype(np.int64), pa.int64())
    else:
        mono_arr = pa.nulls(n, pa.int64())

    kind_take = pa.array(k_s)
    cols = {
        "t_ns": pa.array(t_s, pa.int64()),
        "event_type": _EVENT_TYPES.take(kind_take),
        "key_code": _opt(np.where(has_vk, vk_s, 0).astype(np.int32), has_vk, pa.int32()),
        "mouse_x": _opt(mx.astype(np.float32), okw, pa.float32()),
        "mouse_y": _opt(my.astype(np.float32), okw, pa.float32()),
        "mouse_button": button,
        "delta": _opt(dy_s.astype(np.float32), wheel, pa.float32()),
        "frame_ref": _opt(fref, fok, pa.int64()),
        "window_id": window_id,
        "session_id": _repeat_string(session_id, n),
        "hash": hashes,
        "metadata": metadata,
        "mono_ns": mono_arr,
        "source": _SOURCES.take(kind_take),
        "state": state,
        "key": _DOM_KEY.take(vk_take),
        "code": _DOM_CODE.take(vk_take),
        "mouse_x_px": _opt(x_s.astype(np.float32), mouse, pa.float32()),
        "mouse_y_px": _opt(y_s.astype(np.float32), mouse, pa.float32()),
        "mouse_x_norm": _opt(xn.astype(np.float32), okn, pa.float32()),
        "mouse_y_norm": _opt(yn.astype(np.float32), okn, pa.float32()),
        "button_index": button_index,
        "wheel_dx": _opt(dx_s.astype(np.float32), wheel, pa.float32()),
        "wheel_dy": _opt(dy_s.astype(np.float32), wheel, pa.float32()),
    }
    return pa.Table.from_arrays([cols[f.name] for f in EVENTS_SCHEMA], schema=EVENTS_SCHEMA)


_MAP_TYPE = EVENTS_SCHEMA.field("metadata").type
_EVENT_TYPES = pa.array(list(EVENT_TYPES), pa.string())
_SOURCES = pa.array(list(SOURCES), pa.string())
_STATES = pa.array(["released", "pressed"], pa.string())


def _key_metadata(raw: RawEvents) -> pa.Array:
    """metadata of the control rows: {"key_name": pynput name} for keys, null otherwise."""
    nc = len(raw)
    has_name = np.asarray(raw.key_name.is_valid().to_numpy(zero_copy_only=False), bool) \
        & (raw.kind <= KIND_KEY_UP) if nc else np.zeros(0, bool)
    offsets = np.concatenate([[0], np.cumsum(has_name)]).astype(np.int32)
    nk = int(offsets[-1])
    keys = _repeat_string("key_name", nk)
    vals = raw.key_name.filter(pa.array(has_name)).cast(pa.string())
    return pa.MapArray.from_arrays(pa.array(offsets, pa.int32()), keys, vals, type=_MAP_TYPE,
                                   mask=pa.array(~has_name))


def _focus_metadata(focus: list[WindowEvent]) -> pa.Array:
    """metadata of focus rows: title, app, pid, rect ("[l,t,r,b]" screen px)."""
    rows = []
    for w in focus:
        d = w.data
        items = []
        if w.title is not None:
            items.append(("title", w.title))
        for k in ("app", "pid"):
            v = _ident(d.get(k))
            if v is not None:
                items.append((k, v))
        if w.rect is not None:
            items.append(("rect", json.dumps([int(v) if float(v).is_integer() else v
                                              for v in w.rect], separators=(",", ":"))))
        rows.append(items or None)
    return pa.array(rows, _MAP_TYPE)


__all__ = ["RawEvents", "WindowEvent", "read_events_jsonl", "build_events_table",
           "EVENT_TYPES", "SOURCES"]
