"""The event log read in bounded memory, and ``events.parquet`` written from it as it goes.

A multi-hour session with a 1000 Hz mouse logs millions of events; holding them all (the
file, the parsed columns, the table) took ~0.7 KB an event. Here:

- :func:`read_event_log` reads the JSONL a block of lines at a time (``block_bytes``) and
  keeps, per block, one *part*: the control events' columns as an Arrow record batch
  (~75 bytes an event; the ``hash`` column is left empty when the hashing child will
  provide it). Parts stay in memory up to ``memory_bytes`` in all, then go to a spill
  file (Arrow IPC) in ``spill_dir``. Window events,
  recorder markers and clock pairs (a few a second) are kept as they are. The parsing
  rules, errors and results are those of :func:`companion.align.events.read_events_jsonl`,
  which is this reader with everything in memory.
- :func:`write_events_parquet` builds the ``events.parquet`` rows a part at a time and
  writes each as row groups. Rows are in (t_ns, line) order across the whole file even
  though the companion's lines can be slightly out of time order (writer batches from
  different input threads): a row is written once no later part can hold an earlier
  one (the minimum key of all later parts is known from the read), the rest carries
  over to the next part. The result equals building the whole table at once
  (:func:`companion.align.events.build_events_table`).

Memory: one block of the file, one part being built (~1 KB an event of the part while
its table is made) and the carry-over, whatever the number of events.
"""
from __future__ import annotations

import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from companion.align import events as E
from companion.contract import events as ev
from companion.contract.schemas import EVENTS_SCHEMA, parquet_write_options
from companion.util.atomic import atomic_path
from companion.util.errors import BadInput, EnvProblem
from companion.util.procs import remove_stale_files

#: bytes of the file read at a time (~70k companion lines); also the part size
BLOCK_BYTES = 8 << 20
#: parts held in memory before they are spilled to disk
MEMORY_BYTES = 32 << 20
#: a line longer than this is an error (the reader would have to hold it whole)
MAX_LINE_BYTES = 64 << 20
#: spill files are named ``<prefix><pid>-<random>.arrow``; those of dead processes
#: (a killed nm-align) are removed when the next read starts in the same folder
SPILL_PREFIX = ".nm-events-spill-"

_PART_SCHEMA = pa.schema([
    ("t_ns", pa.int64()), ("line", pa.int64()), ("hash", pa.string()), ("kind", pa.int8()),
    ("vk", pa.int64()), ("key_name", pa.string()), ("x", pa.float64()), ("y", pa.float64()),
    ("button", pa.string()), ("pressed", pa.bool_()), ("dx", pa.float64()),
    ("dy", pa.float64())])
_EMPTY_PART = pa.RecordBatch.from_pylist([], schema=_PART_SCHEMA)


class EventLog:
    """The result of :func:`read_event_log`; close it (or use ``with``) to remove its
    temporary files. Attributes as in :class:`companion.align.events.RawEvents`, plus
    ``n_events`` (control events), ``t_min``/``t_max`` (their epoch-ns range, None if
    none) and ``spilled`` (parts written to disk)."""

    def __init__(self, path: str):
        self.path = path
        self.n_lines = 0
        self.torn_tail = False
        self.torn_line: int | None = None
        self.windows: list[E.WindowEvent] = []
        self.markers: list[tuple[int, dict]] = []
        self.clock_pairs = np.zeros((0, 2), np.int64)
        self.skipped = 0
        self.n_events = 0
        self.t_min: int | None = None
        self.t_max: int | None = None
        self.spilled = 0
        self._mem: list[pa.RecordBatch] = []
        self._mem_bytes = 0
        self._keys: list[tuple[int, int]] = []       # per part: its minimum (t_ns, line)
        self._hashed: list[bool] = []                 # per part: hash column filled
        self._spill_dir = None
        self._spill_path: str | None = None
        self._spill_sink = None
        self._spill_writer = None
        self._spill_reader = None
        self._spill_source = None
        self._child: E._ChildHasher | None = None
        self._digests = None                          # the child's digest file, open
        self._lines_split = 0                         # non-blank lines split so far

    # -- building (the reader) ---------------------------------------------------------
    def _add_part(self, batch: pa.RecordBatch, hashed: bool, memory_bytes: int) -> None:
        if batch.num_rows == 0:
            return
        t = batch.column(0).to_numpy()
        line = batch.column(1).to_numpy()
        tmin = int(t.min())
        self._keys.append((tmin, int(line[t == tmin].min())))
        self._hashed.append(hashed)
        self.n_events += batch.num_rows
        tmax = int(t.max())
        self.t_min = tmin if self.t_min is None else min(self.t_min, tmin)
        self.t_max = tmax if self.t_max is None else max(self.t_max, tmax)
        if self._spill_writer is None and self._mem_bytes + batch.nbytes <= memory_bytes:
            self._mem.append(batch)
            self._mem_bytes += batch.nbytes
            return
        try:
            if self._spill_writer is None:
                fd, self._spill_path = tempfile.mkstemp(prefix=f"{SPILL_PREFIX}{os.getpid()}-",
                                                        suffix=".arrow", dir=self._spill_dir)
                os.close(fd)
                self._spill_sink = pa.OSFile(self._spill_path, "wb")
                self._spill_writer = pa.ipc.new_file(self._spill_sink, _PART_SCHEMA)
            self._spill_writer.write_batch(batch)
        except (OSError, pa.ArrowException) as e:
            where = self._spill_dir or tempfile.gettempdir()
            msg = getattr(e, "strerror", None) or str(e).splitlines()[0]
            raise EnvProblem(f"cannot write the events spill file in {where} ({msg})") from None
        self.spilled += 1

    def _finish_spill(self) -> None:
        if self._spill_writer is not None:
            self._spill_writer.close()
            self._spill_sink.close()
            self._spill_writer = None
            # read, not memory-mapped: mapped pages would stay resident as it is read
            self._spill_source = pa.OSFile(self._spill_path, "rb")
            self._spill_reader = pa.ipc.open_file(self._spill_source)

    # -- reading -----------------------------------------------------------------------
    @property
    def n_parts(self) -> int:
        return len(self._keys)

    def _hashes_for(self, lines: np.ndarray) -> pa.Array:
        """The hashes of the given (1-based) lines from the hashing child's digests,
        read from its file as needed (a part's lines are one run of the file)."""
        if self._digests is None:
            assert self._child is not None
            try:
                path = self._child.digest_file()
                self._digests = open(path, "rb")
            except OSError as e:
                raise BadInput(f"{self.path}: cannot read events file ({e.strerror or e})") from None
        f = self._digests

        def pread(size: int, offset: int) -> bytes:   # (os.pread is not on Windows)
            f.seek(offset)
            return f.read(size)
        n = int(lines.size)
        if n == 0:
            return pa.array([], pa.string())
        lo, hi = int(lines.min()), int(lines.max())
        if hi - lo + 1 <= 4 * n:                      # one read of the run
            blob = pread(64 * (hi - lo + 1), 64 * (lo - 1))
            rows = np.frombuffer(blob, np.uint8)
            if rows.size != 64 * (hi - lo + 1):
                raise BadInput(f"{self.path}: the events file changed while it was read")
            hexb = rows.reshape(-1, 64)[lines - lo].tobytes()
        else:                                         # a few lines far apart
            hexb = b"".join(pread(64, 64 * (ln - 1)) for ln in lines.tolist())
            if len(hexb) != 64 * n:
                raise BadInput(f"{self.path}: the events file changed while it was read")
        return E._hex_array(hexb, n)

    def parts(self) -> Iterator[pa.RecordBatch]:
        """The parts in file order, hash column filled."""
        n_mem = len(self._mem)
        for k in range(self.n_parts):
            b = self._mem[k] if k < n_mem else self._spill_reader.get_batch(k - n_mem)
            if not self._hashed[k]:
                h = self._hashes_for(b.column(1).to_numpy())
                b = b.set_column(2, "hash", h)
            yield b

    def raw(self) -> E.RawEvents:
        """Everything as one :class:`~companion.align.events.RawEvents` (in memory)."""
        parts = list(self.parts())
        return self._raw_of(pa.concat_batches(parts) if parts else _EMPTY_PART)

    def _raw_of(self, b: pa.RecordBatch) -> E.RawEvents:
        c = b.column
        return E.RawEvents(
            path=self.path, n_lines=self.n_lines, torn_tail=self.torn_tail,
            torn_line=self.torn_line, t_ns=c(0).to_numpy(), line=c(1).to_numpy(),
            hash=c(2), kind=c(3).to_numpy(), vk=c(4).to_numpy(), key_name=c(5),
            x=c(6).to_numpy(), y=c(7).to_numpy(), button=c(8),
            pressed=np.asarray(c(9).to_numpy(zero_copy_only=False), bool),
            dx=c(10).to_numpy(), dy=c(11).to_numpy(), windows=self.windows,
            markers=self.markers, clock_pairs=self.clock_pairs, skipped=self.skipped)

    def close(self) -> None:
        """Remove the spill file and the hashing child's output (idempotent)."""
        if self._digests is not None:
            self._digests.close()
            self._digests = None
        self._spill_reader = None
        if self._spill_source is not None:
            self._spill_source.close()
            self._spill_source = None
        if self._spill_writer is not None:
            try:
                self._spill_writer.close()
            except (OSError, pa.ArrowException):
                pass
            self._spill_writer = None
        if self._spill_sink is not None:
            self._spill_sink.close()
            self._spill_sink = None
        if self._spill_path is not None:
            try:
                os.unlink(self._spill_path)
            except OSError:
                pass
            self._spill_path = None
        if self._child is not None:
            self._child.close()
            self._child = None
        self._mem = []

    def __enter__(self) -> EventLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ------------------------------------------------------------------------- the reader
def read_event_log(path: str | os.PathLike, progress: Any = None, *,
                   spill_dir: str | os.PathLike | None = None,
                   block_bytes: int = BLOCK_BYTES, memory_bytes: int = MEMORY_BYTES) -> EventLog:
    """Read the companion's event log (seed 002 JSONL) block by block into an
    :class:`EventLog`. Errors as :func:`companion.align.events.read_events_jsonl`.
    ``spill_dir``: where parts beyond ``memory_bytes`` go (default: the temp folder;
    give a folder on a disk, not a RAM disk)."""
    spath = os.fspath(path)
    log = EventLog(spath)
    log._spill_dir = os.fspath(spill_dir) if spill_dir is not None else None
    remove_stale_files(log._spill_dir or tempfile.gettempdir(), SPILL_PREFIX)
    try:
        try:
            with open(spath, "rb") as f, E._NO_HUGE_PAGES:
                st = os.fstat(f.fileno())
                log._child = E._ChildHasher.start(spath, st)  # hashes while this process parses
                _read(log, f, st.st_size, spath, progress, max(1, int(block_bytes)),
                      memory_bytes)
        except FileNotFoundError:
            raise BadInput(f"{spath}: events file not found") from None
        except IsADirectoryError:
            raise BadInput(f"{spath}: is a directory, expected the events JSONL file") from None
        except OSError as e:
            raise BadInput(f"{spath}: cannot read events file ({e.strerror or e})") from None
        log._finish_spill()
        if log._child is not None and log._digests is None and all(log._hashed):
            log._child.close()                           # its digests are not needed
            log._child = None
        return log
    except BaseException:
        log.close()
        raise


def _check_head(spath: str, head: bytes) -> None:
    first = head.split(b"\n", 1)[0]
    if b"\x00" in first or (b"\n" not in head and b"\x00" in head[:4096]):
        raise BadInput(f"{spath}: not an events JSONL file (binary data)")
    stripped = head.lstrip()
    if stripped and not stripped.startswith(b"{"):
        if stripped.startswith(b"\xef\xbb\xbf{"):
            raise BadInput(f"{spath}: starts with a UTF-8 byte order mark; the events JSONL "
                           "must be plain UTF-8 without BOM")
        raise BadInput(f"{spath}: not an events JSONL file (line 1 is not a JSON object)")


def _hold_back(data: bytes) -> int:
    """Where the lines to parse now end: after the "\\n" before the last line with
    content (that line may be the file's last, which may be torn)."""
    q = data.rfind(b"\n")
    while q > 0:
        s = data.rfind(b"\n", 0, q)
        if data[s + 1:q].strip():
            return s + 1
        q = s
    return 0


def _blocks(f, total: int, spath: str, block: int) -> Iterator[tuple[bytes, int, int, bool]]:
    """(data, end, first line number - 1, final): ``data[:end]`` holds whole lines."""
    carry = b""
    base = 0
    pos = 0
    first = True
    while True:
        want = min(block, total - pos)
        got = f.read(want) if want > 0 else b""
        if len(got) < want:
            raise BadInput(f"{spath}: the events file got shorter while it was read")
        pos += len(got)
        data = carry + got if carry else got
        if first:
            _check_head(spath, data[:65536])
            first = False
        if pos >= total:
            yield data, len(data), base, True
            return
        end = _hold_back(data)
        if end:
            yield data, end, base, False
            base += data.count(b"\n", 0, end)
        carry = data[end:]
        if len(carry) > MAX_LINE_BYTES:
            raise BadInput(f"{spath}:{base + 1}: line longer than {MAX_LINE_BYTES >> 20} MB")


def _lines(data: bytes, end: int, base: int, final: bool, spath: str, log: EventLog
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """starts, ends (without "\\n"/"\\r"), 1-based line numbers of the non-blank lines of
    ``data[:end]``, and whether any line ended with "\\r". On the final block the torn
    last line (if any) is dropped and recorded on ``log``."""
    buf = np.frombuffer(data, dtype=np.uint8, count=end)
    nl = np.flatnonzero(buf == 10)
    starts = np.concatenate(([0], nl + 1)).astype(np.int64)
    ends = np.concatenate((nl, [end])).astype(np.int64)
    lineno = np.arange(base + 1, base + starts.size + 1, dtype=np.int64)
    if ends.size and starts[-1] == ends[-1]:         # ends with "\n" (or is empty)
        starts, ends, lineno = starts[:-1], ends[:-1], lineno[:-1]
    has_cr = False
    if ends.size and b"\r" in data:
        cr = (ends > starts) & (buf[np.maximum(ends - 1, 0)] == 13)
        has_cr = bool(cr.any())
        ends = ends - cr
    keep = ends > starts
    if not keep.all():                               # blank lines are ignored
        starts, ends, lineno = starts[keep], ends[keep], lineno[keep]
    n = int(starts.size)
    if final:
        while n and not data[starts[n - 1]:ends[n - 1]].strip():   # trailing whitespace
            n -= 1
        starts, ends, lineno = starts[:n], ends[:n], lineno[:n]
        if n:
            try:
                E._parse_outer(data[starts[-1]:ends[-1]])
            except E._LineError as e:
                if n == 1 and log._lines_split == 0:
                    raise BadInput(f"{spath}:{int(lineno[-1])}: {e}") from None
                log.torn_tail, log.torn_line = True, int(lineno[-1])
                starts, ends, lineno = starts[:-1], ends[:-1], lineno[:-1]
    log._lines_split += int(starts.size)
    return starts, ends, lineno, has_cr


def _read(log: EventLog, f, total: int, spath: str, progress: Any, block: int,
          memory_bytes: int) -> None:
    """Parse the blocks: pyarrow parses the next block's outer objects (GIL released)
    while this thread parses the current block's event_data."""
    acc = _Accumulator(spath, log)
    blocks = _blocks(f, total, spath, block)

    def split_next() -> tuple | None:
        for data, end, base, final in blocks:
            starts, ends, lineno, has_cr = _lines(data, end, base, final, spath, log)
            if starts.size:
                return data, starts, ends, lineno, has_cr
        return None

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="nm-events-json") as pool:
        def submit(cur: tuple) -> Any:
            data, starts, ends, lineno, _ = cur
            return pool.submit(E._outer_chunk, data, starts, ends, lineno, spath)
        cur = split_next()
        fut = submit(cur) if cur is not None else None
        while cur is not None:
            data, starts, ends, lineno, has_cr = cur
            # hashes here when the child cannot give them (no child, or "\r" line ends)
            hasher = None
            if log._child is None or has_cr:
                hasher = E._Background(E._hash_lines, data, starts, ends)
            try:
                nxt = split_next()                     # reads the next block meanwhile
                nxt_fut = submit(nxt) if nxt is not None else None
                try:
                    ts, src, edata, keep = fut.result()
                except UnicodeEncodeError:
                    # json.loads decodes a "\ud800" escape to a lone surrogate, which
                    # Arrow's UTF-8 strings cannot hold: name the line
                    raise BadInput(f"{spath}:{_surrogate_line(*cur[:4])}: a string holds a lone "
                                   "UTF-16 surrogate escape, not Unicode text") from None
                batch, ctrl_mask, win_idx = acc.add(ts, src, edata, keep, lineno[keep]
                                                    if keep is not None else lineno)
            finally:
                if hasher is not None:
                    hasher.join()                      # a parse error is the one to report
            if hasher is not None:
                h = hasher.result()
                if keep is not None:
                    h = h.filter(pa.array(keep))
                batch = batch.set_column(2, "hash", h.filter(pa.array(ctrl_mask)))
                for w, i in win_idx:
                    w.hash = h[i].as_py()
            else:
                acc.unhashed.extend(w for w, _ in win_idx)
            log._add_part(batch, hasher is not None, memory_bytes)
            log.n_lines += int(ts.size)
            if progress is not None:
                progress.update(int(starts.size))
            cur, fut = nxt, nxt_fut
    acc.finish()


def _surrogate_line(data: bytes, starts: np.ndarray, ends: np.ndarray, lineno: np.ndarray) -> int:
    """The first line of a block whose outer strings hold a lone surrogate."""
    for s, e, ln in zip(starts.tolist(), ends.tolist(), lineno.tolist()):
        try:
            _t, src, edata = E._parse_outer(data[s:e])
            src.encode("utf-8")
            edata.encode("utf-8")
        except E._LineError:
            continue
        except UnicodeEncodeError:
            return int(ln)
    return int(lineno[0]) if lineno.size else 1


class _Accumulator:
    """Per block: the control columns as a part; window events, markers, clock pairs and
    skipped lines gathered on the log."""

    def __init__(self, spath: str, log: EventLog):
        self.spath = spath
        self.log = log
        self.unhashed: list[E.WindowEvent] = []
        self.clock: list[tuple[int, int]] = []

    def add(self, ts: np.ndarray, src: pa.Array, edata: pa.Array, keep: np.ndarray | None,
            ln: np.ndarray) -> tuple[pa.RecordBatch, np.ndarray, list]:
        """One block's outer columns (see events._outer_chunk) and line numbers of the
        kept lines -> (part without hashes, control rows among kept lines, [(window event,
        index among kept lines)])."""
        spath, log = self.spath, self.log
        is_ctrl_a = pc.equal(src, ev.SRC_CONTROL)
        is_ctrl = np.asarray(is_ctrl_a.to_numpy(zero_copy_only=False), bool)
        is_win = np.asarray(pc.equal(src, ev.SRC_WINDOW).to_numpy(zero_copy_only=False), bool)
        is_rec = np.asarray(pc.equal(src, ev.SRC_RECORDER).to_numpy(zero_copy_only=False),
                            bool)
        log.skipped += int(ts.size - is_ctrl.sum() - is_win.sum() - is_rec.sum())
        wins = []
        for i in np.flatnonzero(is_win | is_rec).tolist():
            t, line = int(ts[i]), int(ln[i])
            try:
                obj = E._parse_json_object(edata[i].as_py(), "window" if is_win[i] else "recorder")
            except E._LineError as err:
                raise BadInput(f"{spath}:{line}: {err}") from None
            if is_win[i]:
                w = E._window_event(t, line, "", obj)
                log.windows.append(w)
                wins.append((w, i))
            else:
                log.markers.append((t, obj))
                if obj.get("event") == ev.REC_CLOCK:
                    e_ns, m_ns = obj.get("epoch_ns"), obj.get("mono_ns")
                    if (isinstance(e_ns, int) and isinstance(m_ns, int)
                            and not isinstance(e_ns, bool) and not isinstance(m_ns, bool)
                            and -2**63 <= e_ns < 2**63 and -2**63 <= m_ns < 2**63):
                        self.clock.append((e_ns, m_ns))
                    else:
                        raise BadInput(f"{spath}:{line}: clock marker needs integer epoch_ns "
                                       "and mono_ns (64-bit)")
        cidx = np.flatnonzero(is_ctrl)
        c = E._parse_controls(edata.filter(is_ctrl_a), ln[cidx], spath)
        known = c["kind"] >= 0                        # unknown actions are skipped
        log.skipped += int((~known).sum())
        c["t_ns"], c["line"] = ts[cidx], ln[cidx]
        if not known.all():
            ka = pa.array(known)
            c = {k: (v.filter(ka) if isinstance(v, pa.Array) else v[known]) for k, v in c.items()}
            is_ctrl = is_ctrl.copy()
            is_ctrl[cidx[~known]] = False
        m = int(c["t_ns"].size)
        batch = pa.RecordBatch.from_arrays([
            pa.array(c["t_ns"], pa.int64()), pa.array(c["line"], pa.int64()),
            pa.nulls(m, pa.string()), pa.array(c["kind"].astype(np.int8)),
            pa.array(c["vk"], pa.int64()), c["key_name"].cast(pa.string()),
            pa.array(c["x"], pa.float64()), pa.array(c["y"], pa.float64()),
            c["button"].cast(pa.string()), pa.array(c["pressed"], pa.bool_()),
            pa.array(c["dx"], pa.float64()), pa.array(c["dy"], pa.float64())],
            schema=_PART_SCHEMA)
        return batch, is_ctrl, wins

    def finish(self) -> None:
        log = self.log
        log.clock_pairs = np.asarray(self.clock, dtype=np.int64).reshape(-1, 2)
        if self.unhashed:
            lines = np.fromiter((w.line for w in self.unhashed), np.int64, len(self.unhashed))
            for w, h in zip(self.unhashed, log._hashes_for(lines).to_pylist()):
                w.hash = h
            self.unhashed.clear()


# ------------------------------------------------------------------------- the writer
def _before(t: np.ndarray, line: np.ndarray, key: tuple[int, int]) -> np.ndarray:
    """Rows whose (t_ns, line) sorts before ``key``."""
    kt, kl = key
    return (t < kt) | ((t == kt) & (line < kl))


def write_events_parquet(log: EventLog, final: str | os.PathLike, session_id: str,
                         frame_t_ns: np.ndarray, video_size: tuple[int, int] | None = None,
                         to_mono=None, frame_interval_ns: int | None = None) -> dict:
    """Write ``events.parquet`` (atomically) from ``log``; arguments and rows as
    :func:`companion.align.events.build_events_table`. Returns ``{"rows",
    "outside_video", "sources"}`` (row count, rows without frame_ref, set of sources)."""
    frame_t_ns = np.asarray(frame_t_ns, dtype=np.int64)
    timeline = E._window_timeline(log.windows)
    focus = timeline.focus
    f_t = np.fromiter((w.t_ns for w in focus), np.int64, len(focus))
    f_line = np.fromiter((w.line for w in focus), np.int64, len(focus))
    # minimum (t_ns, line) of all parts after part k
    n = log.n_parts
    later: list[tuple[int, int] | None] = [None] * n
    m = None
    for k in range(n - 1, -1, -1):
        later[k] = m
        m = log._keys[k] if m is None else min(m, log._keys[k])
    stats = {"rows": 0, "outside_video": 0, "sources": set()}
    fpos = 0
    carry: pa.RecordBatch | None = None
    with E._NO_HUGE_PAGES, atomic_path(final) as tmp:
        with pq.ParquetWriter(tmp, EVENTS_SCHEMA, **parquet_write_options(EVENTS_SCHEMA)) as w:
            def emit(batch: pa.RecordBatch, f_end: int) -> None:
                nonlocal fpos
                tbl = E._build_table(log._raw_of(batch), session_id, frame_t_ns, video_size,
                                     to_mono, frame_interval_ns, timeline, focus[fpos:f_end])
                fpos = f_end
                if tbl.num_rows:
                    w.write_table(tbl)
                    stats["rows"] += tbl.num_rows
                    stats["outside_video"] += tbl.column("frame_ref").null_count
                    stats["sources"].update(v for v in tbl.column("source").unique().to_pylist()
                                            if v is not None)

            for k, part in enumerate(log.parts()):
                cur = part if carry is None else pa.concat_batches([carry, part])
                key = later[k]
                if key is None:                       # the last part: everything left
                    emit(cur, len(focus))
                    carry = None
                    break
                now = _before(cur.column(0).to_numpy(), cur.column(1).to_numpy(), key)
                f_end = fpos + int(_before(f_t[fpos:], f_line[fpos:], key).sum())
                if now.all():
                    emit(cur, f_end)
                    carry = None
                else:
                    mask = pa.array(now)
                    emit(cur.filter(mask), f_end)
                    carry = cur.filter(pc.invert(mask))
            if n == 0:                                # window events only (or nothing)
                emit(_EMPTY_PART, len(focus))
    return stats


__all__ = ["EventLog", "read_event_log", "write_events_parquet", "BLOCK_BYTES",
           "MEMORY_BYTES"]
