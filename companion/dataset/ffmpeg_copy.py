"""Fast path for stream-copied chunks: one ``ffmpeg`` CLI process writes every chunk MP4.

PyAV's demux+remux loop (``video.split_video``) runs about 2x slower than the ffmpeg
CLI doing the same copy, and in-process it competes with audio decoding and actions
for one core. When every chunk is a plain copy (``ChunkPlan.copy``: starts on a
keyframe, ends on one or at the end of the stream) and the codec goes into MP4 as is,
``split_video_fast`` instead runs one ffmpeg process with the segment muxer cutting at
the planned frame numbers::

    ffmpeg -copyts -itsoffset -<pts of frame 0> -i SRC -map 0:v:0 -c copy -copytb 1
           -avoid_negative_ts disabled -f segment -segment_format mp4
           -segment_frames F1,F2,... -reset_timestamps 1 seg%05d.mp4

* ``-segment_frames`` counts packets of the video stream in *decode* order and cuts at
  the first keyframe whose count is >= the next number. With closed GOPs the keyframe
  that starts chunk ``c`` is preceded in decode order by exactly the ``start_frame``
  packets of the earlier frames, so the cut lands on the planned frame even with
  B-frames. Open GOPs (leading pictures after the keyframe in decode order) and dropped
  or extra packets make the counts differ; the check below catches that.
* ``-copyts -itsoffset`` put frame 0 at pts 0 and ``-avoid_negative_ts disabled`` keeps
  it there (the first segment is not rebased by ``-reset_timestamps``); later segments
  are rebased to their keyframe. ``-copytb 1`` keeps the source time base (OBS MKV: ms;
  MP4 timescale 16000 as PyAV writes it), so timestamps stay exact.
* Meanwhile the chunk WAVs are cut on a thread by the unchanged audio code
  (``audio.split_audio_file`` -> ``AudioSplitter``): byte-identical to the PyAV path.

After ffmpeg exits, every segment is checked against the plan without decoding, from
its MP4 sample tables (``moov`` only, a few kB per chunk): the segment count, per
segment the sample count, that the first sample in decode order is a sync sample, and
every presentation time (edit list applied) equal to the chunk's source pts rebased to
its first frame. Any mismatch, an ffmpeg failure, or a missing ffmpeg deletes the
ffmpeg output and falls back to ``split_video`` (PyAV); ``SplitResult.fast_fallback``
says why.
"""
from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import struct
import subprocess
import threading
from fractions import Fraction
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .audio import split_audio_file
from .chunking import ChunkPlan
from .video import SplitResult, _check_inputs, chunk_time_ranges, split_video

# codecs the MP4 muxer takes by stream copy (OBS: H.264, and from 30.2 HEVC/AV1);
# decoder names a scan may report instead of the codec's canonical name
FAST_CODECS = ("h264", "hevc", "av1")
_DECODER_ALIASES = {"libdav1d": "av1", "libaom-av1": "av1"}


def find_ffmpeg() -> str | None:
    """Path of the ffmpeg CLI on PATH, or None (also when the environment variable
    ``NM_FFMPEG_COPY`` is ``0``: a switch to compare both paths, e.g. in benchmarks)."""
    if os.environ.get("NM_FFMPEG_COPY", "").strip() == "0":
        return None
    return shutil.which("ffmpeg")


def fast_path_blocker(scan, plans: Sequence[ChunkPlan]) -> str | None:
    """Why no stream copy (the walk's or ffmpeg's) can cut these chunks (None: one can)."""
    if not plans:
        return "no chunks"
    bad = [p.chunk_id for p in plans if not p.copy]
    if bad:
        return f"chunk {bad[0]} does not start and end on keyframes (needs re-encoding)"
    if _DECODER_ALIASES.get(scan.codec, scan.codec) not in FAST_CODECS:
        return f"codec {scan.codec} is not stream-copied by the ffmpeg fast path"
    return None


def ffmpeg_blocker(scan, plans: Sequence[ChunkPlan]) -> str | None:
    """Why ``ffmpeg_command`` cannot express these chunks exactly (None: it can)."""
    off_us = int(scan.pts[0]) * Fraction(scan.time_base) * 1_000_000
    if off_us.denominator != 1:
        return "the first frame's pts is not a whole number of microseconds"
    if sum(len(str(p.start_frame)) + 1 for p in plans) > 100_000:
        return "too many chunks for one ffmpeg command line"
    return None


# ---- the ffmpeg run ------------------------------------------------------------------

def ffmpeg_command(ffmpeg: str, src: Path, scan, plans: Sequence[ChunkPlan],
                   list_name: str, pattern: str) -> list[str]:
    off_us = int(int(scan.pts[0]) * Fraction(scan.time_base) * 1_000_000)
    frames = ",".join(str(p.start_frame) for p in plans[1:]) or str(plans[-1].end_frame)
    cmd = [ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", "-copyts"]
    if off_us:
        cmd += ["-itsoffset", f"{-off_us}us"]
    cmd += ["-i", "file:" + str(Path(src).resolve()),
            "-map", "0:v:0", "-c", "copy", "-copytb", "1",
            "-map_metadata", "-1", "-map_chapters", "-1"]
    if scan.codec == "h264":
        cmd += ["-tag:v", "avc1"]
    cmd += ["-avoid_negative_ts", "disabled", "-f", "segment", "-segment_format", "mp4",
            "-segment_frames", frames, "-reset_timestamps", "1",
            "-segment_list", list_name, "-segment_list_type", "csv", pattern]
    return cmd


def run_ffmpeg_copy(ffmpeg: str, src, scan, plans: Sequence[ChunkPlan],
                    video_paths: Sequence[Path], stop: threading.Event | None = None
                    ) -> str | None:
    """Cut ``plans`` into ``video_paths`` with one ffmpeg process and check the result.

    Returns None when every chunk MP4 is in place and matches its plan; otherwise the
    reason (one line), and nothing is left at ``video_paths`` or in the work folder."""
    pts = np.asarray(scan.pts, dtype=np.int64)
    out_dir = Path(video_paths[0]).parent
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        work = out_dir / f".nm-ffmpeg-{secrets.token_hex(4)}"
        work.mkdir()
    except OSError as e:
        return f"cannot create a work folder in {out_dir}: {e.strerror or e}"
    try:
        cmd = ffmpeg_command(ffmpeg, Path(src), scan, plans, "segments.csv", "seg%05d.mp4")
        try:
            proc = subprocess.Popen(cmd, cwd=work, stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        except OSError as e:
            return f"cannot run {ffmpeg}: {e.strerror or e}"
        try:
            _, err = proc.communicate()
        finally:
            if proc.poll() is None:         # interrupted while waiting: stop ffmpeg
                proc.kill()
                proc.wait()
        if proc.returncode != 0:
            lines = [ln for ln in err.decode(errors="replace").splitlines() if ln.strip()]
            return (f"ffmpeg exited with {proc.returncode}: "
                    f"{lines[-1].strip() if lines else 'no message'}")
        why = check_segments(work, "segments.csv", scan, pts, plans)
        if why is not None:
            return why
        move_all([work / f"seg{p.chunk_id:05d}.mp4" for p in plans],
                 [video_paths[p.chunk_id] for p in plans])
        return None
    except OSError as e:
        return f"ffmpeg output could not be handled: {e.strerror or e}"
    finally:
        shutil.rmtree(work, ignore_errors=True)


def move_all(sources: Sequence, dests: Sequence) -> None:
    """Rename each checked chunk file to its place; if one fails, the ones already moved
    are removed again before the error propagates (all or nothing)."""
    moved: list[Path] = []
    try:
        for src, dest in zip(sources, dests):
            dest = Path(dest)
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, dest)
            moved.append(dest)
    except BaseException:
        for m in moved:
            with contextlib.suppress(FileNotFoundError):
                m.unlink()
        raise


def check_segments(work: Path, list_name: str, scan, pts: np.ndarray,
                   plans: Sequence[ChunkPlan]) -> str | None:
    """Compare ffmpeg's segments with the plan (see the module doc); None when exact."""
    listed = []
    with contextlib.suppress(OSError):
        for line in (work / list_name).read_text(encoding="utf-8").splitlines():
            if line.strip():
                listed.append(line.split(",")[0])
    expected = [f"seg{p.chunk_id:05d}.mp4" for p in plans]
    if listed != expected or sorted(x.name for x in work.glob("seg*.mp4")) != expected:
        return f"ffmpeg wrote {max(len(listed), len(list(work.glob('seg*.mp4'))))} " \
               f"segments for {len(plans)} chunks"
    for p, name in zip(plans, expected):
        why = check_segment(work / name, scan, pts, p)
        if why is not None:
            return why
    return None


def check_segment(path: Path, scan, pts: np.ndarray, p: ChunkPlan) -> str | None:
    """Compare one chunk MP4 with its plan from its sample tables; None when exact."""
    tb = Fraction(scan.time_base)
    try:
        t = read_mp4_video_track(path)
    except (ValueError, OSError, struct.error) as e:
        return f"segment {p.chunk_id}: unreadable MP4 ({e})"
    if t.n != p.n_frames:
        return f"segment {p.chunk_id}: {t.n} packets for {p.n_frames} frames"
    if not t.first_is_sync:
        return f"segment {p.chunk_id}: its first packet is not a keyframe"
    scale = tb * t.timescale
    if scale.denominator != 1:
        return (f"segment {p.chunk_id}: MP4 timescale {t.timescale} does not hold the "
                f"source time base {tb} exactly")
    want = (pts[p.start_frame:p.end_frame] - pts[p.start_frame]) * int(scale)
    got = np.sort(t.pts)
    if got.shape != want.shape or not np.array_equal(got, want):
        k = int(np.flatnonzero(got != want)[0]) if got.shape == want.shape else 0
        return (f"segment {p.chunk_id}: frame {p.start_frame + k} at "
                f"{int(got[k])}/{t.timescale} s, expected {int(want[k])}/{t.timescale} s")
    if t.pts[0] != 0:
        return f"segment {p.chunk_id}: the first packet is not the chunk's first frame"
    return None


# ---- minimal MP4 sample-table reader ---------------------------------------------------

class Mp4Track:
    """Sample table of an MP4's video track: ``n`` samples, ``timescale``, ``pts`` in
    decode order (presentation times with the edit list applied), ``first_is_sync``."""

    def __init__(self, n: int, timescale: int, pts: np.ndarray, first_is_sync: bool):
        self.n, self.timescale, self.pts, self.first_is_sync = n, timescale, pts, first_is_sync


def _boxes(buf: bytes, start: int = 0, end: int | None = None):
    end = len(buf) if end is None else end
    i = start
    while i + 8 <= end:
        size, kind = struct.unpack_from(">I4s", buf, i)
        hdr = 8
        if size == 1:
            size = struct.unpack_from(">Q", buf, i + 8)[0]
            hdr = 16
        elif size == 0:
            size = end - i
        if size < hdr or i + size > end:
            raise ValueError(f"bad box {kind!r} at {i}")
        yield kind, i + hdr, i + size
        i += size


def _child(buf: bytes, start: int, end: int, kind: bytes) -> tuple[int, int] | None:
    for k, s, e in _boxes(buf, start, end):
        if k == kind:
            return s, e
    return None


def _read_moov(path: Path) -> bytes:
    """The ``moov`` box payload, found by walking the top-level boxes (mdat skipped)."""
    with open(path, "rb") as f:
        size_total = os.fstat(f.fileno()).st_size
        pos = 0
        while pos + 8 <= size_total:
            f.seek(pos)
            hdr = f.read(16)
            size, kind = struct.unpack_from(">I4s", hdr, 0)
            h = 8
            if size == 1:
                size = struct.unpack_from(">Q", hdr, 8)[0]
                h = 16
            elif size == 0:
                size = size_total - pos
            if size < h:
                raise ValueError("corrupt MP4 box header")
            if kind == b"moov":
                f.seek(pos + h)
                data = f.read(size - h)
                if len(data) != size - h:
                    raise ValueError("truncated moov")
                return data
            pos += size
    raise ValueError("no moov box")


def read_mp4_video_track(path: Path) -> Mp4Track:
    """Parse the video track's sample tables (mdhd, stts, ctts, stss, stsz, elst)."""
    moov = _read_moov(path)
    tracks = []
    for k, s, e in _boxes(moov):
        if k != b"trak":
            continue
        mdia = _child(moov, s, e, b"mdia")
        if mdia is None:
            continue
        hdlr = _child(moov, *mdia, b"hdlr")
        if hdlr is None or moov[hdlr[0] + 8:hdlr[0] + 12] != b"vide":
            continue
        tracks.append((s, e, mdia))
    if len(tracks) != 1:
        raise ValueError(f"{len(tracks)} video tracks")
    s, e, mdia = tracks[0]
    mdhd = _child(moov, *mdia, b"mdhd")
    minf = _child(moov, *mdia, b"minf")
    stbl = _child(moov, *minf, b"stbl") if minf else None
    stsz = _child(moov, *stbl, b"stsz") if stbl else None
    stts = _child(moov, *stbl, b"stts") if stbl else None
    if mdhd is None or stsz is None or stts is None:
        raise ValueError("incomplete video track")
    ver = moov[mdhd[0]]
    timescale = struct.unpack_from(">I", moov, mdhd[0] + (20 if ver == 1 else 12))[0]
    n = struct.unpack_from(">I", moov, stsz[0] + 8)[0]
    cnt = struct.unpack_from(">I", moov, stts[0] + 4)[0]
    ent = np.frombuffer(moov, ">u4", count=2 * cnt, offset=stts[0] + 8).reshape(cnt, 2)
    deltas = np.repeat(ent[:, 1].astype(np.int64), ent[:, 0].astype(np.int64))
    if deltas.shape[0] != n:
        raise ValueError("stts does not cover every sample")
    dts = np.concatenate([[0], np.cumsum(deltas[:-1])]) if n else np.zeros(0, np.int64)
    ctts = _child(moov, *stbl, b"ctts")
    if ctts is not None:
        cver = moov[ctts[0]]
        cnt = struct.unpack_from(">I", moov, ctts[0] + 4)[0]
        ent = np.frombuffer(moov, ">u4", count=2 * cnt, offset=ctts[0] + 8).reshape(cnt, 2)
        off = ent[:, 1].astype(np.int64)
        if cver == 1:
            off = ent[:, 1].view(">i4").astype(np.int64)
        offs = np.repeat(off, ent[:, 0].astype(np.int64))
        if offs.shape[0] != n:
            raise ValueError("ctts does not cover every sample")
        pts = dts + offs
    else:
        pts = dts
    stss = _child(moov, *stbl, b"stss")
    if stss is None:
        first_sync = True
    else:
        cnt = struct.unpack_from(">I", moov, stss[0] + 4)[0]
        first_sync = cnt > 0 and struct.unpack_from(">I", moov, stss[0] + 8)[0] == 1
    edts = _child(moov, s, e, b"edts")
    if edts is not None:
        elst = _child(moov, *edts, b"elst")
        if elst is not None:
            ever = moov[elst[0]]
            cnt = struct.unpack_from(">I", moov, elst[0] + 4)[0]
            media_times = []
            i = elst[0] + 8
            for _ in range(cnt):
                if ever == 1:
                    _dur, mt = struct.unpack_from(">Qq", moov, i)
                    i += 16
                else:
                    _dur, mt = struct.unpack_from(">Ii", moov, i)
                    i += 8
                rate = struct.unpack_from(">i", moov, i)[0]
                i += 4
                media_times.append((mt, rate))
            if len(media_times) != 1 or media_times[0][0] < 0 or media_times[0][1] != 0x10000:
                raise ValueError(f"unsupported edit list {media_times}")
            pts = pts - media_times[0][0]
    return Mp4Track(n, timescale, pts.astype(np.int64), first_sync)


# ---- early start: ffmpeg running while the recording is still being scanned ------------

class EarlyCopy:
    """The ffmpeg run of ``run_ffmpeg_copy`` started *before* the scan, from what the
    container header says (codec, first pts, declared duration) and a frame-rate guess.

    Chunk boundaries only depend on the frame rate and the chunk length, so the
    ``-segment_frames`` list is every multiple of ``frames_per_chunk`` up to a generous
    estimate of the frame count (entries >= the real count never cut). ``adopt`` then
    accepts the output only if the command is the one ``ffmpeg_command`` builds from the
    real scan and plans (same options; the planned cut list a prefix of the guessed one,
    the rest at or past the end) and ``check_segments`` passes, exactly as for a normal
    run; anything else discards it (the caller then takes the normal path)."""

    def __init__(self, ffmpeg: str, src, work: Path, codec: str, time_base: Fraction,
                 first_pts: int, chunk_frames: int, est_frames: int):
        self.ffmpeg, self.src, self.work = ffmpeg, Path(src), Path(work)
        self.chunk_frames = int(chunk_frames)
        cuts = list(range(self.chunk_frames, int(est_frames) + 1, self.chunk_frames))
        if not cuts or len(",".join(map(str, cuts))) > 100_000:
            raise ValueError("no usable cut list")
        self.cuts = cuts
        stub = _HeaderScan(codec, time_base, first_pts)
        plans = [ChunkPlan(i, c, c, True) for i, c in enumerate([0] + cuts)]
        self.cmd = ffmpeg_command(ffmpeg, self.src, stub, plans, "segments.csv", "seg%05d.mp4")
        self.work.mkdir(parents=True)
        self._err = open(self.work / "stderr.txt", "wb")
        try:
            self.proc = subprocess.Popen(self.cmd, cwd=self.work, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=self._err)
        except BaseException:
            self._err.close()
            shutil.rmtree(self.work, ignore_errors=True)
            raise

    def _mismatch(self, scan, plans: Sequence[ChunkPlan]) -> str | None:
        real = [p.start_frame for p in plans[1:]]
        n = plans[-1].end_frame
        if self.cuts[:len(real)] != real or any(c < n for c in self.cuts[len(real):]):
            return "the chunk plan differs from the one guessed before the scan"
        want = ffmpeg_command(self.ffmpeg, self.src, scan, plans, "segments.csv", "seg%05d.mp4")
        i = want.index("-segment_frames") + 1
        if want[:i] + want[i + 1:] != self.cmd[:i] + self.cmd[i + 1:]:
            return "the ffmpeg command differs from the one guessed before the scan"
        return None

    def adopt(self, scan, plans: Sequence[ChunkPlan], video_paths: Sequence[Path]) -> str | None:
        """Wait for ffmpeg and move its checked segments to ``video_paths``. None: done;
        else why not (nothing is left at ``video_paths``; the work folder is removed)."""
        try:
            why = self._mismatch(scan, plans)
            if why is not None:
                return why
            try:
                self.proc.wait()
            finally:
                self.stop()
            if self.proc.returncode != 0:
                lines = [ln for ln in (self.work / "stderr.txt").read_text(
                    errors="replace").splitlines() if ln.strip()]
                return (f"ffmpeg exited with {self.proc.returncode}: "
                        f"{lines[-1].strip() if lines else 'no message'}")
            why = check_segments(self.work, "segments.csv", scan,
                                 np.asarray(scan.pts, dtype=np.int64), plans)
            if why is not None:
                return why
            move_all([self.work / f"seg{p.chunk_id:05d}.mp4" for p in plans],
                     [video_paths[p.chunk_id] for p in plans])
            return None
        except OSError as e:
            return f"ffmpeg output could not be handled: {e.strerror or e}"
        finally:
            self.discard()

    def stop(self) -> None:
        """Kill ffmpeg if it still runs (idempotent)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._err.close()

    def discard(self) -> None:
        """Stop ffmpeg and remove the work folder (idempotent)."""
        self.stop()
        shutil.rmtree(self.work, ignore_errors=True)


class _HeaderScan:
    """The few scan fields ``ffmpeg_command`` reads, from the container header."""

    def __init__(self, codec: str, time_base: Fraction, first_pts: int):
        self.codec, self.time_base, self.pts = codec, Fraction(time_base), [int(first_pts)]


# ---- audio on a thread -----------------------------------------------------------------

class _AudioThread:
    """``split_audio_file`` (the unchanged AudioSplitter path) on a thread, cancellable."""

    def __init__(self, src, ranges, paths, rate: int, channels: int, spool=None):
        self.stop_event = threading.Event()
        self.result: list[dict] | None = None
        self.error: BaseException | None = None
        self._t = threading.Thread(target=self._run,
                                   args=(src, ranges, paths, rate, channels, spool),
                                   name="nm-audio", daemon=True)
        self._t.start()

    def _run(self, src, ranges, paths, rate, channels, spool):
        try:
            # PCM decoded during the scan (perhaps still in the audio child, which
            # usable() waits for): no second read of the recording
            if spool is not None and spool.usable(rate, channels):
                self.result = spool.split(ranges, paths, cancel=self.stop_event)
                return
            self.result = split_audio_file(src, ranges, paths, rate, channels,
                                           cancel=self.stop_event, missing_ok=True)
        except BaseException as e:  # noqa: BLE001 - re-raised by finish()
            self.error = e

    def finish(self) -> list[dict] | None:
        self._t.join()
        if self.error is not None:
            raise self.error
        return self.result

    def stop(self) -> None:
        self.stop_event.set()
        self._t.join()


# ---- entry point -------------------------------------------------------------------------

def split_video_fast(src: str | os.PathLike, scan, plans: Sequence[ChunkPlan],
                     video_paths: Sequence[Path], audio_paths: Sequence[Path] | None = None,
                     on_chunk: Callable[[int, str], None] | None = None,
                     ffmpeg: str | None | bool = None, early: EarlyCopy | None = None,
                     audio_spool=None) -> SplitResult:
    """``video.split_video`` with the ffmpeg CLI fast path (same outputs, see module doc).

    ``ffmpeg``: path of the CLI (None: look it up on PATH; False: do not use it).
    ``early``: an ``EarlyCopy`` started before the scan; its output is used when it
    matches the plan (``SplitResult.early_rejected`` says why not; then ffmpeg is run
    again as usual). It is always consumed (adopted or discarded).
    ``audio_spool``: an ``audio.AudioSpool`` that decoded the audio during the scan
    (its WAVs are byte-identical to ``split_audio_file``'s); used by the fast path
    when it finished cleanly, else the audio is decoded from ``src`` as before.
    Falls back to ``split_video`` when ffmpeg is missing, the plan is not all copies,
    the codec is not one of ``FAST_CODECS``, ffmpeg fails, or its output differs from
    the plan; ``SplitResult.copy_tool`` says which path wrote the MP4s and
    ``fast_fallback`` why the ffmpeg output was rejected (None if it was not)."""
    _check_inputs(scan, plans, video_paths)
    exe = None if ffmpeg is False else (ffmpeg or find_ffmpeg())
    blocker = fast_path_blocker(scan, plans)
    if blocker is None and getattr(early, "needs_ffmpeg", True):      # no walk copy
        blocker = "ffmpeg not found" if exe is None else ffmpeg_blocker(scan, plans)
    if blocker is not None:
        if early is not None:
            early.discard()
        res = split_video(src, scan, plans, video_paths, audio_paths, on_chunk=on_chunk)
        res.fast_skipped = blocker
        return res
    audio = None
    try:
        if audio_paths is not None and scan.has_audio and scan.audio_rate \
                and scan.audio_channels:
            rate, ch = int(scan.audio_rate), int(scan.audio_channels)
            audio = _AudioThread(src, chunk_time_ranges(scan, plans), audio_paths,
                                 rate, ch, spool=audio_spool)
        early_why = None
        adopted = False
        if early is not None:
            e, early = early, None
            early_why = e.adopt(scan, plans, video_paths)
            adopted = early_why is None
        if adopted:
            why = None
        elif exe is None:
            why = f"ffmpeg not found ({early_why})"
        else:
            why = ffmpeg_blocker(scan, plans) or run_ffmpeg_copy(exe, src, scan, plans,
                                                                video_paths)
        if why is None:
            tool = getattr(e, "tool", "ffmpeg") if adopted else "ffmpeg"
            res = SplitResult(modes=["copy"] * len(plans), copy_tool=tool)
            if on_chunk:
                for p in plans:
                    on_chunk(p.chunk_id, "copy")
        else:
            res = split_video(src, scan, plans, video_paths, None, on_chunk=on_chunk)
            res.fast_fallback = why
        res.early_rejected = early_why
        if audio is not None:
            a, audio = audio, None
            res.audio = a.finish()
        return res
    finally:
        if early is not None:
            early.discard()
        if audio is not None:        # failing: no thread may write into a doomed folder
            audio.stop()
