"""The dataset's audio decoded in a child process, beside the walk, the copy and the
events (``nm-align --dataset`` on an MKV the Matroska walker reads).

PyAV holds the GIL while FFmpeg decodes, so decoding the AAC packets in the scan puts
~0.5 s per 10 minutes of audio on the main process, which is the long pole when the
copy child has less to do. A child process does the same work on another core: it is
started with the container header (``early.EarlyStart``), so its imports (PyAV, numpy)
overlap the parent's, and is given the audio blocks as the walk finds them
(``begin_blocks``, ``add_blocks``, ``end_blocks``, called by ``demux``'s walker; a
writer thread feeds the pipe, so the walk never waits for the child), so it decodes
while the walk runs. It runs exactly the in-process code (``demux.decode_blocks`` into
an ``audio.AudioSpool``), so the spool and the WAVs cut from it are byte-identical;
``usable`` waits for it. Anything that goes wrong (the child does not start or dies, a
short read, the scan falling back to PyAV's demuxer) leaves the spool decoding in
process or unusable, and the caller decodes from the file as before. ``wanted`` says
when a child pays (docs/benchmarks.md).

Protocol: one JSON line on stdin ``{"src", "stream", "tb", "shift", "spool", "rate",
"channels"}``, then batches: a little-endian int64 count ``n`` followed by ``n``
timestamps, ``n`` file offsets and ``n`` sizes (int64 each); ``n = 0`` ends the stream.
One JSON line back ``{"ok": bool, "error": str | None, "log": k}`` followed by ``2 x k``
int64 (the spool's ``(pos, n)`` log). stdin ending without a job: the child exits 0 and
writes nothing; ending inside one: ``ok`` false.
"""
from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
from array import array
from fractions import Fraction
from pathlib import Path


def wanted(checksums: bool | str | None) -> bool:
    """Whether decoding in a child is worth its ~0.3 s of start-up CPU: with at least 3
    CPUs, or when the copy child does not hash with SHA-256 (no checksums, or XXH3-128,
    which costs it ~0.04 s per 10 minutes of 1080p60: it then leaves a core partly
    idle). On 2 CPUs a SHA-256 hashing copy child (~0.85 s more) and the main process
    already keep both busy, and a third process only adds work (measured,
    docs/benchmarks.md). ``checksums``: as ``write_dataset`` takes it."""
    from companion.util.checksum import normalize
    from companion.util.procs import usable_cpus
    cpus = usable_cpus()
    return cpus >= 3 or (cpus >= 2 and normalize(checksums) != "sha256")


def start_process() -> subprocess.Popen | None:
    """Start the child (it imports, then waits for its job); None if it cannot start."""
    import companion
    env = dict(os.environ)
    pkg_root = str(Path(companion.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = pkg_root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    try:
        return subprocess.Popen([sys.executable, "-m", "companion.dataset.audio_child"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, env=env, close_fds=True)
    except OSError:
        return None


def stop_process(proc: subprocess.Popen | None) -> None:
    if proc is None:
        return
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    for f in (proc.stdin, proc.stdout):
        try:
            if f is not None:
                f.close()
        except OSError:
            pass


class ChildAudioSpool:
    """An ``audio.AudioSpool`` whose decoding runs in ``proc`` (see module doc); same
    interface (``put``, ``finish``, ``usable``, ``split``, ``remove``, ``error``) plus
    ``begin_blocks``/``add_blocks``/``end_blocks``. Owns ``proc`` from here on."""

    def __init__(self, proc: subprocess.Popen, path, rate: int, channels: int):
        self.proc: subprocess.Popen | None = proc
        self.path = Path(path)
        self.rate, self.channels = int(rate), int(channels)
        self.error: BaseException | None = None
        self.finished = False
        self._local = None         # an in-process AudioSpool once packets come one by one
        self._local_failed = False
        self._queue: queue.SimpleQueue | None = None   # bytes for the writer thread
        self._writer: threading.Thread | None = None
        self._writer_error: BaseException | None = None
        self._sent = False
        self._log: array | None = None
        self._waited = False

    # -- feeding (the scan's Matroska walk, demux.scan_video) -------------------------
    # The blocks go to the child through a queue and a writer thread: the walk must
    # never wait for the child (which may still be importing, or decoding behind it).
    def begin_blocks(self, src, stream_index: int, tb: Fraction, shift: int) -> bool:
        """The walk starts: tell the child what to decode. False: decode in process."""
        if self.proc is None or self._local is not None or self._sent:
            return False
        if self.proc.poll() is not None:
            return self._fail("audio child exited before its job")
        job = {"src": str(Path(src).resolve()), "stream": int(stream_index),
               "tb": str(Fraction(tb)), "shift": int(shift), "spool": str(self.path),
               "rate": self.rate, "channels": self.channels}
        self._sent = True
        self._queue = queue.SimpleQueue()
        self._queue.put(json.dumps(job).encode() + b"\n")
        self._writer = threading.Thread(target=self._write_loop,
                                        args=(self.proc.stdin, self._queue),
                                        name="nm-audio-in", daemon=True)
        self._writer.start()
        return True

    def add_blocks(self, ts, off, size) -> bool:
        """Audio blocks the walk found (timestamps, file offsets, sizes), in order.
        False: the child is gone (the caller then decodes in process)."""
        if self._queue is None or self._writer_error is not None:
            return False
        data = [len(ts).to_bytes(8, "little")]
        for col in (ts, off, size):
            a = array("q", col)
            if sys.byteorder != "little":   # pragma: no cover
                a.byteswap()
            data.append(a.tobytes())
        self._queue.put(b"".join(data))
        return True

    def end_blocks(self) -> bool:
        """The walk is complete: the child decodes the last blocks and flushes."""
        if self._queue is None or self._writer_error is not None:
            return False
        self._queue.put((0).to_bytes(8, "little"))
        self._queue.put(None)
        self._queue = None
        return True

    def _write_loop(self, stdin, q) -> None:
        try:
            while True:
                item = q.get()
                if item is None:
                    break
                stdin.write(item)
            stdin.close()
        except (OSError, ValueError) as e:
            self._writer_error = e
            try:
                stdin.close()
            except (OSError, ValueError):
                pass

    def _fail(self, why: str) -> bool:
        stop_process(self.proc)
        self.proc = None
        self.error = RuntimeError(why)
        return False

    def _stop_writer(self) -> None:
        if self._queue is not None:
            self._queue.put(None)
            self._queue = None
        if self._writer is not None:
            self._writer.join(timeout=30)
            self._writer = None

    def put(self, pkt) -> None:
        """A packet at a time (PyAV's demuxer read the file, or the child failed):
        decode in process, from the first packet."""
        if self._local is None:
            from .audio import AudioSpool
            if self._local_failed:
                return
            stop_process(self.proc)
            self.proc = None
            self._stop_writer()
            try:
                self._local = AudioSpool(self.path, self.rate, self.channels)
            except OSError as e:
                self.error, self._local_failed = e, True
                return
            self.error = None
        self._local.put(pkt)

    def finish(self) -> None:
        if self._local is not None:
            self._local.finish()
        elif self.proc is not None and not self._sent:
            stop_process(self.proc)        # no job will come
            self.proc = None
        elif self._queue is not None:      # streaming ended without end_blocks: the
            self._queue.put(None)          # writer closes the child's input mid-job
            self._queue = None

    stop = finish

    # -- results (the dataset step) ---------------------------------------------------
    def _wait(self) -> None:
        if self._waited:
            return
        self._waited = True
        proc, self.proc = self.proc, None
        if proc is None or not self._sent:
            self.error = self.error or RuntimeError("audio child did not decode")
            stop_process(proc)
            return
        try:
            line = proc.stdout.readline()
            res = json.loads(line) if line else {"ok": False, "error": "audio child died"}
            k = int(res.get("log", 0)) if res.get("ok") else 0
            log = array("q")
            if k:
                data = proc.stdout.read(16 * k)
                if len(data) != 16 * k:
                    raise OSError("audio child's log cut short")
                log.frombytes(data)
                if sys.byteorder != "little":   # pragma: no cover
                    log.byteswap()
            if res.get("ok"):
                self._log = log
                self.finished = True
            else:
                self.error = RuntimeError(str(res.get("error")))
        except (OSError, ValueError) as e:
            self.error = e
        finally:
            stop_process(proc)
            self._stop_writer()

    def usable(self, rate: int, channels: int) -> bool:
        if self._local is not None:
            return self._local.usable(rate, channels)
        self._wait()
        return self.finished and self.rate == int(rate) and self.channels == int(channels)

    def split(self, ranges, paths, cancel=None) -> list[dict]:
        from .audio import split_spool
        if self._local is not None:
            return self._local.split(ranges, paths, cancel=cancel)
        if not self.finished:
            raise RuntimeError("audio spool not finished")
        return split_spool(self.path, self._log, self.rate, self.channels, ranges, paths, cancel)

    def remove(self) -> None:
        if self._local is not None:
            self._local.remove()
        stop_process(self.proc)
        self.proc = None
        self._stop_writer()
        try:
            self.path.unlink()
        except OSError:
            pass


def _main() -> int:
    import av

    from companion.align.demux import decode_blocks
    from companion.dataset.audio import AudioSpool
    from companion.util.rangecopy import _read_exact   # EOFError: the input ended early
    inp = sys.stdin.buffer
    line = inp.readline()
    if not line:
        return 0
    out = sys.stdout.buffer
    spool = None
    try:
        job = json.loads(line)
        src, tb, shift = job["src"], Fraction(job["tb"]), int(job["shift"])
        container = av.open(src, mode="r")
        try:
            stream = container.streams[int(job["stream"])]
            spool = AudioSpool(job["spool"], job["rate"], job["channels"])
            while True:
                n = int.from_bytes(_read_exact(inp, 8), "little")
                if n == 0:
                    break
                cols = []
                for _ in range(3):
                    a = array("q")
                    a.frombytes(_read_exact(inp, 8 * n))
                    if sys.byteorder != "little":   # pragma: no cover
                        a.byteswap()
                    cols.append(a)
                decode_blocks(src, stream, tb, shift, *cols, spool.put, eos=False)
            decode_blocks(src, stream, tb, shift, (), (), (), spool.put)   # end of stream
            spool.finish()
        finally:
            container.close()
        if spool.error is not None or not spool.finished:
            raise RuntimeError(f"{type(spool.error).__name__}: {spool.error}")
        log = spool._log
        out.write(json.dumps({"ok": True, "error": None, "log": len(log) // 2}).encode() + b"\n")
        if sys.byteorder != "little":   # pragma: no cover
            log.byteswap()
        out.write(log.tobytes())
    except Exception as e:  # noqa: BLE001 - reported to the parent, which falls back
        if spool is not None:
            spool.finish()
        msg = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        out.write(json.dumps({"ok": False, "error": msg}).encode() + b"\n")
    out.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
