"""Chunk MP4s straight from the Matroska walker's block table: no second demux.

For an MKV the scan's walker (``align.mkv``) already knows every video block's file
offset, size, pts and keyframe flag. The chunk MP4s of a stream copy are then a header
per chunk (``mp4mux.chunk_header``: sample tables built with numpy) plus those blocks'
bytes, which a child process copies (``util.rangecopy``: page-cache reads and
writes). That is what the ffmpeg CLI's segment muxer did (``ffmpeg_copy``), without its
demux and mux and without needing the ffmpeg CLI at all.

``MuxCopy`` is started with the container header (the child is idle until then) and is
the walk's sink: each chunk is sent to the child as soon as the walk has read its blocks
and the next chunk's first block (``walk_blocks``; the rest at ``put_walk``), with chunk
boundaries guessed from the frame rate as for ``ffmpeg_copy.EarlyCopy``. ``adopt``
accepts the files only when the real plan is
the guessed one and every file passes ``ffmpeg_copy.check_segment`` (sample count, a
sync sample first, every presentation time equal to the source's), exactly as ffmpeg's
output is checked. Anything else (an open GOP at a boundary, a codec without an MP4
sample entry here, a failed copy) rejects it with a reason; the caller then takes the
ffmpeg or PyAV path. The child's work is mostly kernel time: 0.75-0.95 s of CPU per 1.3 GB
on the project's VM (1.6-1.7 s with the checksums), against ~1.7 s for ffmpeg's
segment copy (docs/benchmarks.md).

Checksums: with ``checksums`` (an algorithm of ``util.checksum``; the default's
``True`` is its default, XXH3-128) the child also hashes each MP4 from the bytes it
writes and ``adopt`` keeps the digests in ``digests`` (final path -> hex), so the
dataset's checksum files need no second read of the MP4s.
"""
from __future__ import annotations

import contextlib
import json
import queue
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Sequence

import numpy as np

from companion.align.demux import WalkTable

from .chunking import ChunkPlan
from .mp4mux import SAMPLE_ENTRIES, MuxError, chunk_header

class MuxCopy:
    """Chunk MP4s written from the walk (see module doc). ``tool`` names it in results."""

    tool = "mp4mux"
    needs_ffmpeg = False

    def __init__(self, work: Path, chunk_frames: int, checksums: bool | str = True):
        from companion.util.checksum import normalize
        self.work = Path(work)
        self.chunk_frames = int(chunk_frames)
        self.checksums = normalize(checksums)
        """the algorithm the child hashes each MP4 with (None: no hashing)"""
        self.digests: dict[str, str] = {}
        """after a successful ``adopt``: final path (str) -> hex digest, when hashed"""
        self.starts: list[int] | None = None
        self.n = 0
        self.error: str | None = None
        self.proc: subprocess.Popen | None = None
        self._out: list[str] = []
        self._info = None
        self._next = 0                 # the next chunk to send
        self._queue: queue.Queue = queue.Queue()
        self._lines: list[bytes] = []
        self._threads: list[threading.Thread] = []

    @classmethod
    def start(cls, work: Path, chunk_frames: int,
              checksums: bool | str = True) -> "MuxCopy | None":
        """Make the work folder and start the copy child (None if either fails)."""
        from companion.util.rangecopy import child_command
        self = cls(work, chunk_frames, checksums)
        try:
            self.work.mkdir(parents=True)
            self.proc = subprocess.Popen(child_command(), stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                         close_fds=True)
        except OSError:
            shutil.rmtree(self.work, ignore_errors=True)
            return None
        # the child's replies are drained as they come (a full pipe would stall it)
        self._spawn(lambda: self._lines.extend(iter(self.proc.stdout.readline, b"")), "nm-mux-out")
        self._spawn(self._send, "nm-mux-in")
        return self

    def _spawn(self, fn, name: str) -> None:
        t = threading.Thread(target=fn, name=name, daemon=True)
        t.start()
        self._threads.append(t)

    @staticmethod
    def supports(codec: str) -> bool:
        return codec in SAMPLE_ENTRIES

    @property
    def step(self) -> int:
        """Video blocks between ``walk_blocks`` calls: one chunk."""
        return self.chunk_frames

    def walk_blocks(self, src, codec: str, codec_private, width: int, height: int, time_base,
                    pts_l, key_l, off_l, size_l) -> None:
        """Called during the walk with its growing columns (decode order): sends every
        chunk whose blocks and the next chunk's first block have been read. Never
        raises (a problem sets ``error``; ``adopt`` then rejects the output)."""
        try:
            if self._info is None:
                self._info = (str(Path(src).resolve()), codec, codec_private, int(width),
                              int(height), time_base)
            n = len(pts_l)
            while self.error is None and (self._next + 1) * self.chunk_frames < n:
                s = self._next * self.chunk_frames
                e = s + self.chunk_frames
                cols = [np.frombuffer(a[s:e + 1], dt) for a, dt in
                        ((pts_l, np.int64), (key_l, np.int8), (off_l, np.int64), (size_l, np.int64))]
                self._send_chunk(*cols, end_pts=None)
        except (MuxError, OSError, ValueError, BufferError) as e:
            self.error = self.error or f"{type(e).__name__}: {e}"

    def put_walk(self, walk: WalkTable) -> None:
        """The walk is complete: send the chunks not sent yet and close the job stream
        (never raises)."""
        try:
            if self._info is None:
                self._info = (str(walk.src.resolve()), walk.codec, walk.codec_private,
                              walk.width, walk.height, walk.time_base)
            n = int(walk.pts.size)
            while self.error is None and self._next * self.chunk_frames < n:
                s = self._next * self.chunk_frames
                e = min(s + self.chunk_frames, n)
                last = e == n
                self._send_chunk(walk.pts[s:e + 1], walk.key[s:e + 1], walk.offsets[s:e + 1],
                                 walk.sizes[s:e + 1], end_pts=walk.end_pts if last else None)
            if self.error is None:
                self.n = n
                self.starts = list(range(0, n, self.chunk_frames))
        except (MuxError, OSError, ValueError) as e:
            self.error = self.error or f"{type(e).__name__}: {e}"
        finally:
            self._queue.put(None)

    def _send_chunk(self, pts, key, off, size, end_pts: int | None) -> None:
        """Chunk ``self._next`` from its blocks plus, unless ``end_pts`` is given, the
        next chunk's first block."""
        c = self._next
        key = key.astype(bool)
        if end_pts is None:
            if not key[-1]:
                raise MuxError(f"chunk {c + 1} would not start on a keyframe (the frame rate "
                               f"guessed before the scan does not fit, or keyframes are sparse)")
            nxt = int(pts[-1])
            pts, key, off, size = pts[:-1], key[:-1], off[:-1], size[:-1]
        else:
            nxt = int(end_pts)
        # a closed group: a keyframe first, no frame of the chunk presented before it,
        # none after the next chunk's first frame (then decode-order ranges are exactly
        # the planned presentation-order ranges; check_segment verifies it again)
        if not key[0]:
            raise MuxError(f"chunk {c} does not start on a keyframe")
        if int(pts.min()) != int(pts[0]) or (end_pts is None and int(pts.max()) >= nxt):
            raise MuxError(f"an open group at chunk {c} (frames reordered across its edge)")
        src, codec, cp, w, h, tb = self._info
        header = chunk_header(codec, cp or b"", w, h, tb, pts, key, size, nxt)
        out = str(self.work / f"seg{c:05d}.mp4")
        job = {"src": src, "out": out, "header": len(header), "n": int(pts.size)}
        if self.checksums:
            job["hash"] = self.checksums
        self._queue.put(b"".join((
            json.dumps(job).encode()
            + b"\n", header, off.astype("<i8").tobytes(), size.astype("<i8").tobytes())))
        self._out.append(out)
        self._next += 1

    def _send(self) -> None:
        """The job stream to the child (a thread: the pipe drains as fast as it copies)."""
        try:
            w = self.proc.stdin
            while True:
                blob = self._queue.get()
                if blob is None:
                    break
                w.write(blob)
                w.flush()
        except (OSError, ValueError) as e:      # the child went away: adopt() says so
            self.error = self.error or f"chunk copy child: {e}"
        finally:
            self._close_stdin()

    def _close_stdin(self) -> None:
        if self.proc is not None and self.proc.stdin and not self.proc.stdin.closed:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()

    def adopt(self, scan, plans: Sequence[ChunkPlan], video_paths: Sequence[Path]) -> str | None:
        """Wait for the copies and move the checked files to ``video_paths``. None: done;
        else why not (nothing is left at ``video_paths``; the work folder is removed)."""
        from .ffmpeg_copy import check_segment, move_all
        try:
            if self.error is not None:
                return f"chunk MP4s from the walk: {self.error}"
            if self.starts is None:
                return "the walk's block table never came (not read by the Matroska walker)"
            if [p.start_frame for p in plans] != self.starts or plans[-1].end_frame != self.n:
                return "the chunk plan differs from the one guessed before the scan"
            self._queue.put(None)     # no-op when put_walk closed the stream already
            self.proc.wait()
            for t in self._threads:
                t.join()
            if self.error is not None:
                return f"chunk MP4s from the walk: {self.error}"
            results = [json.loads(x) for x in self._lines if x.strip()]
            bad = [r for r in results if "done" not in r]
            if bad:
                return f"chunk copy failed: {bad[0].get('error')}"
            if self.proc.returncode != 0 or [r["done"] for r in results] != self._out:
                return f"chunk copy child exited with {self.proc.returncode} after " \
                       f"{len(results)} of {len(self._out)} chunks"
            pts = np.asarray(scan.pts, dtype=np.int64)
            for p in plans:
                why = check_segment(Path(self._out[p.chunk_id]), scan, pts, p)
                if why is not None:
                    return why
            from companion.util.checksum import HEX_DIGITS
            want = HEX_DIGITS.get(self.checksums or "")
            hashed = {r["done"]: r["digest"] for r in results
                      if r.get("hash") == self.checksums and isinstance(r.get("digest"), str)
                      and len(r["digest"]) == want}
            move_all([self._out[p.chunk_id] for p in plans],
                     [video_paths[p.chunk_id] for p in plans])
            self.digests = {str(video_paths[p.chunk_id]): hashed[self._out[p.chunk_id]]
                            for p in plans if self._out[p.chunk_id] in hashed}
            return None
        except (OSError, ValueError) as e:   # json errors are ValueErrors
            return f"chunk MP4s from the walk could not be handled: {e}"
        finally:
            self.discard()

    def stop(self) -> None:
        self._queue.put(None)
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill()
        with contextlib.suppress(OSError):
            self.proc.wait()
        for t in self._threads:       # the pipes end with the child
            t.join()
        for s in (self.proc.stdin, self.proc.stdout):
            if s is not None:
                with contextlib.suppress(OSError):
                    s.close()

    def discard(self) -> None:
        """Stop the child and remove the work folder (idempotent)."""
        self.stop()
        shutil.rmtree(self.work, ignore_errors=True)
