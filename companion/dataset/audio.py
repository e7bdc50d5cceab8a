"""Per-chunk WAV files: the audio samples covering each chunk's time range.

Chunk ``c`` covers container time ``[t0_c, t1_c)`` seconds, where ``t0_c`` is the pts
of its first frame and ``t1_c`` the pts of the next chunk's first frame (for the last
chunk: last frame pts + one frame duration), both in the video stream's time base.
Audio is placed on the same container clock: an audio frame with pts ``p`` (audio time
base) starts at sample ``round(p * tb * rate)``. The WAV of chunk ``c`` holds exactly
``round(t1_c*rate) - round(t0_c*rate)`` samples, PCM s16 little-endian at the original
rate and channel count; samples with no audio in the source (a gap, audio starting late)
are silence. So sample 0 of a chunk's WAV plays with frame 0 of its MP4.

``AudioSplitter`` is fed decoded audio frames in stream order (by ``video.split_video``
during its single demux pass) and writes each WAV once its range is complete.
"""
from __future__ import annotations

import wave
from array import array
from fractions import Fraction
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from companion.util.errors import BadInput


class AudioSplitter:
    """Accumulates decoded audio into per-chunk sample buffers and writes WAV files.

    ``ranges`` are ``(t0, t1)`` in seconds (Fractions, container time) per chunk, in
    chunk order; ``paths`` the WAV path of each chunk. ``rate`` in Hz, ``channels`` count.
    ``on_written(i)`` is called after chunk ``i``'s WAV is written.
    """

    # Container timestamps may be rounded (MKV stores ms): a frame whose pts-derived
    # position is within this many seconds of where the previous frame ended is treated
    # as contiguous, so rounding never inserts gaps or overlaps.
    CONTIGUITY_S = Fraction(3, 1000)

    def __init__(self, ranges: Sequence[tuple[Fraction, Fraction]], paths: Sequence[Path],
                 rate: int, channels: int, on_written: Callable[[int], None] | None = None):
        if rate <= 0 or channels <= 0:
            raise BadInput(f"invalid audio stream: {rate} Hz, {channels} channels")
        if len(ranges) != len(paths):
            raise ValueError("one path per range")
        self.rate = int(rate)
        self.channels = int(channels)
        self.paths = [Path(p) for p in paths]
        self.s0 = [int(round(Fraction(a) * rate)) for a, _ in ranges]
        self.s1 = [int(round(Fraction(b) * rate)) for _, b in ranges]
        self._buf: dict[int, np.ndarray] = {}
        self._filled = [0] * len(ranges)    # samples of real audio placed (for stats)
        self._done = [False] * len(ranges)
        self._next_pos: int | None = None
        self._first_open = 0                # chunks before this one are written
        self._tol = int(round(self.CONTIGUITY_S * rate))
        self._resampler = None
        self._pending: list = []
        self._tb: tuple[int, int] | None = None
        self._pend_pos = 0
        self.on_written = on_written
        self.samples_total = 0

    # -- feeding -------------------------------------------------------------------
    def add_frame(self, frame) -> None:
        """Place one decoded ``av.AudioFrame`` (any sample format) on the timeline.

        Contiguous frames are batched (up to one second) and converted together."""
        pts = frame.pts
        if self._tb is None and pts is not None:
            tb = frame.time_base                        # one stream: constant; read once
            if tb is not None:
                self._tb = (tb.numerator * self.rate, tb.denominator)
        if pts is None or self._tb is None:
            pos = self._next_pos if self._next_pos is not None else 0
        else:
            num, den = self._tb
            num *= pts
            pos = (2 * num + den) // (2 * den)          # round half up, exact integers
            if self._next_pos is not None and abs(pos - self._next_pos) <= self._tol:
                pos = self._next_pos
        if self._pending and pos != self._next_pos:
            self._flush()
        if not self._pending:
            self._pend_pos = pos
        self._pending.append(frame)
        n = frame.samples if frame.sample_rate == self.rate else \
            int(round(frame.samples * self.rate / frame.sample_rate))
        self._next_pos = pos + n
        if self._next_pos - self._pend_pos >= self.rate:
            self._flush()

    def _flush(self) -> None:
        frames, self._pending = self._pending, []
        if frames:
            self.add_samples(self._pend_pos, self._to_s16(frames))

    def _to_s16(self, frames: list) -> np.ndarray:
        """Interleaved int16 array (samples, channels) of consecutive frames.

        Common decoder outputs are converted with numpy straight from the frames' planes
        (float -> s16 as FFmpeg's swresample does it: ``clip(lrint(x * 32768))``); other
        formats go through an ``av.AudioResampler``."""
        import av  # local: keep module import light for pure users
        ch = self.channels
        fmt = frames[0].format.name
        same = all(f.format.name == fmt and f.layout.nb_channels == ch
                   and f.sample_rate == self.rate for f in frames)
        if same and fmt in ("s16", "fltp", "s16p", "flt"):
            total = sum(f.samples for f in frames)
            if fmt in ("s16", "flt"):
                dt = np.int16 if fmt == "s16" else np.float32
                inter = np.concatenate([np.frombuffer(f.planes[0], dt, count=f.samples * ch)
                                        for f in frames]).reshape(total, ch)
                if fmt == "s16":
                    return inter
                buf = inter.copy()
            else:
                # each plane's samples (a plane's buffer may be padded past them) joined
                # into one buffer per channel: one numpy array per channel, not per frame
                dt = np.float32 if fmt == "fltp" else np.int16
                size = np.dtype(dt).itemsize
                parts: list[list] = [[] for _ in range(ch)]
                for f in frames:
                    planes, nbytes = f.planes, f.samples * size
                    for c in range(ch):
                        parts[c].append(memoryview(planes[c])[:nbytes])
                if ch == 1:
                    buf = np.frombuffer(bytearray().join(parts[0]), dt).reshape(total, 1)
                else:
                    buf = np.empty((total, ch), dt)
                    for c in range(ch):
                        buf[:, c] = np.frombuffer(b"".join(parts[c]), dt)
                if fmt == "s16p":
                    return buf
            buf *= 32768.0
            np.rint(buf, out=buf)
            np.clip(buf, -32768, 32767, out=buf)
            return buf.astype(np.int16)
        out = []
        for frame in frames:
            if self._resampler is None:
                layout = frame.layout.name if frame.layout.nb_channels == ch else None
                # also converts a decoder rate that differs from the stream's declared
                # rate (e.g. HE-AAC whose SBR doubles it) to the rate of the WAV
                self._resampler = av.AudioResampler(format="s16", layout=layout or f"{ch}c",
                                                    rate=self.rate)
            for f in self._resampler.resample(frame):
                out.append(f.to_ndarray().reshape(-1, ch))
        if not out:
            return np.zeros((0, ch), np.int16)
        return np.concatenate(out)

    def add_samples(self, pos: int, data: np.ndarray) -> None:
        """Place int16 samples ``data`` (samples x channels) starting at sample ``pos``."""
        n = data.shape[0]
        self.samples_total += n
        end = pos + n
        i = self._first_open
        while i < len(self.s0) and self.s0[i] < end:
            a, b = max(pos, self.s0[i]), min(end, self.s1[i])
            if a < b and not self._done[i]:
                buf = self._buf.get(i)
                if buf is None:
                    buf = self._buf[i] = np.zeros((self.s1[i] - self.s0[i], self.channels),
                                                  np.int16)
                buf[a - self.s0[i]:b - self.s0[i]] = data[a - pos:b - pos]
                self._filled[i] += b - a
            i += 1
        # every chunk that ends at or before where the audio has reached is complete
        while self._first_open < len(self.s1) and self.s1[self._first_open] <= end:
            self._write(self._first_open)
            self._first_open += 1

    # -- output --------------------------------------------------------------------
    def _write(self, i: int) -> None:
        if self._done[i]:
            return
        buf = self._buf.pop(i, None)
        if buf is None:
            buf = np.zeros((self.s1[i] - self.s0[i], self.channels), np.int16)
        self.paths[i].parent.mkdir(parents=True, exist_ok=True)
        with wave.open(str(self.paths[i]), "wb") as w:
            w.setnchannels(self.channels)
            w.setsampwidth(2)
            w.setframerate(self.rate)
            data = np.ascontiguousarray(buf.astype("<i2", copy=False))
            w.writeframes(memoryview(data).cast("B"))
        self._done[i] = True
        if self.on_written is not None:
            self.on_written(i)

    def finish(self) -> list[dict]:
        """Write every remaining chunk (silence where no audio came) and return per-chunk
        stats: ``{"samples": n, "filled": n_real}`` (filled < samples means silence padding)."""
        self._flush()
        for i in range(len(self.s0)):
            self._write(i)
        return [{"samples": self.s1[i] - self.s0[i], "filled": self._filled[i]}
                for i in range(len(self.s0))]


class _LogSplitter(AudioSplitter):
    """An ``AudioSplitter`` with no chunks yet: every ``add_samples(pos, data)`` call is
    appended to a PCM file plus a ``(pos, n)`` log instead of being placed."""

    def __init__(self, f, log: array, rate: int, channels: int):
        super().__init__([], [], rate, channels)
        self._f = f
        self._log = log

    def add_samples(self, pos: int, data: np.ndarray) -> None:
        data = np.ascontiguousarray(data, dtype="<i2")
        self._log.append(int(pos))
        self._log.append(int(data.shape[0]))
        self._f.write(memoryview(data).cast("B"))
        self.samples_total += data.shape[0]


class AudioSpool:
    """Audio decoded while the recording is demuxed once, for WAVs cut later.

    The demuxer hands over the first audio stream's packets (``put``, in stream order,
    including PyAV's empty end-of-stream packet); each is decoded at once, exactly as
    ``split_audio_file`` does, and run through the ``AudioSplitter`` conversion, but each
    converted batch (at most one second) is appended to ``path`` (raw s16) and its
    sample position logged. ``split(ranges, paths)`` later replays that sequence into a
    real ``AudioSplitter``: the same ``add_samples`` calls with the same data, so the
    WAVs and stats are byte-identical to ``split_audio_file``'s. Memory stays bounded
    (one second of samples; the log holds 16 bytes per batch); the file needs
    ``rate x channels x 2`` bytes per second of audio.

    Decoding runs on the demuxing thread: FFmpeg's AAC decoder is fast, and a second
    Python thread costs more in GIL hand-offs than it gains (measured: 10 min of
    1080p60 + AAC scans in ~1.05 s inline, 1.3-1.5 s with a decoder thread). A failure
    only marks the spool unusable (``usable()`` False, ``error`` set) and stops
    decoding; the caller then decodes from the file as before."""

    def __init__(self, path, rate: int, channels: int):
        import av
        self._av_error = av.FFmpegError
        self.path = Path(path)
        self.rate, self.channels = int(rate), int(channels)
        self._f = open(self.path, "wb")
        self._log = array("q")
        self._splitter = _LogSplitter(self._f, self._log, self.rate, self.channels)
        self._add = self._splitter.add_frame
        self.error: BaseException | None = None
        self.finished = False
        self._closed = False

    def put(self, pkt) -> None:
        if self.error is not None or self._closed:
            return
        try:
            try:
                frames = pkt.decode()
            except self._av_error:
                return                # a corrupt audio packet: its samples stay silent
            for f in frames:
                self._add(f)
        except Exception as e:  # noqa: BLE001 - makes the spool unusable
            self.error = e

    def finish(self) -> None:
        """End of the stream (errors are kept in ``error``, never raised)."""
        if self._closed:
            return
        self._closed = True
        try:
            if self.error is None:
                self._splitter._flush()
        except Exception as e:  # noqa: BLE001
            self.error = e
        finally:
            try:
                self._f.close()
            except OSError as e:
                self.error = self.error or e
        self.finished = self.error is None

    stop = finish

    def usable(self, rate: int, channels: int) -> bool:
        return self.finished and self.rate == int(rate) and self.channels == int(channels)

    def split(self, ranges: Sequence[tuple[Fraction, Fraction]], paths: Sequence,
              cancel=None) -> list[dict]:
        """Write one WAV per range (see ``AudioSplitter``); returns its per-chunk stats."""
        if not self.finished:
            raise RuntimeError("audio spool not finished")
        return split_spool(self.path, self._log, self.rate, self.channels, ranges, paths, cancel)

    def remove(self) -> None:
        self.finish()
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass


def split_spool(path, log, rate: int, channels: int,
                ranges: Sequence[tuple[Fraction, Fraction]], paths: Sequence,
                cancel=None) -> list[dict]:
    """Replay a spool (raw s16 file ``path`` plus its ``(pos, n)`` ``log``, an int64
    buffer) into an ``AudioSplitter``: one WAV per range; returns its per-chunk stats."""
    sp = AudioSplitter(ranges, [Path(p) for p in paths], rate, channels)
    log = np.frombuffer(log, dtype=np.int64).reshape(-1, 2)
    with open(path, "rb") as f:
        for pos, n in log.tolist():
            if cancel is not None and cancel.is_set():
                raise AudioCancelled("audio split cancelled")
            data = np.fromfile(f, dtype="<i2", count=n * channels)
            if data.shape[0] != n * channels:
                raise OSError(f"{path}: audio spool is short")
            sp.add_samples(pos, data.reshape(n, channels))
    return sp.finish()


class AudioCancelled(Exception):
    """``split_audio_file`` was told to stop (the caller is failing)."""


def split_audio_file(src: str, ranges: Sequence[tuple[Fraction, Fraction]],
                     paths: Sequence[str], rate: int, channels: int, cancel=None,
                     missing_ok: bool = False) -> list[dict] | None:
    """Decode the first audio stream of ``src`` and write one WAV per range (see
    ``AudioSplitter``); returns its per-chunk stats. Reads the file on its own, so it
    can run in another process (or thread) while the video is remuxed. ``cancel``: a
    ``threading.Event``; once set, raises ``AudioCancelled`` before the next packet.
    ``missing_ok``: return None (write nothing) when ``src`` has no audio stream."""
    import av
    try:
        container = av.open(str(src))
    except (av.FFmpegError, OSError) as e:
        raise BadInput(f"cannot read audio of {src}: {e}") from None
    try:
        if not container.streams.audio:
            if missing_ok:
                return None
            raise BadInput(f"{src}: no audio stream")
        stream = container.streams.audio[0]
        splitter = AudioSplitter(ranges, [Path(p) for p in paths], rate, channels)
        try:
            for pkt in container.demux(stream):
                if cancel is not None and cancel.is_set():
                    raise AudioCancelled("audio split cancelled")
                try:
                    frames = pkt.decode()
                except av.FFmpegError:
                    continue          # a corrupt audio packet: its samples stay silent
                for f in frames:
                    splitter.add_frame(f)
        except av.FFmpegError:
            pass                      # truncated tail: the rest stays silent
        return splitter.finish()
    finally:
        container.close()


class AudioProcess:
    """``split_audio_file`` in a child Python process (parallel to the caller).

    Started with ``python -m companion.dataset.audio`` (not multiprocessing, so it never
    re-imports the caller's ``__main__``); arguments go in as JSON on stdin, stats come
    back as JSON on stdout. ``result()`` waits and returns the stats, re-raising a child
    failure as NMError with the child's one-line message; ``stop()`` kills the child if
    it still runs (the caller is failing), so it never writes into a folder being
    deleted."""

    def __init__(self, src, ranges, paths, rate: int, channels: int):
        import json
        import subprocess
        import sys
        job = {"src": str(src), "ranges": [[str(Fraction(a)), str(Fraction(b))] for a, b in ranges],
               "paths": [str(p) for p in paths], "rate": int(rate), "channels": int(channels)}
        self._proc = subprocess.Popen([sys.executable, "-m", "companion.dataset.audio"],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE)
        try:
            self._proc.stdin.write(json.dumps(job).encode())
            self._proc.stdin.close()
        except OSError:
            pass   # the child died at once: result() reports it
        self._proc.stdin = None   # closed: communicate() must not touch it

    def result(self) -> list[dict]:
        import json
        from companion.util.errors import NMError
        out, err = self._proc.communicate()
        if self._proc.returncode == 0:
            return json.loads(out)
        lines = err.decode(errors="replace").strip().splitlines()
        text = lines[-1] if lines else f"exit code {self._proc.returncode}"
        if text.startswith("error: "):
            text = text[len("error: "):]
        if self._proc.returncode == 2:
            raise BadInput(text)
        raise NMError(f"audio split failed: {text}", exit_code=self._proc.returncode or 1)

    def stop(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()


def _main() -> int:
    """Child entry point: JSON job on stdin -> WAVs; stats JSON on stdout."""
    import json
    import sys
    from companion.util.errors import NMError
    try:
        job = json.loads(sys.stdin.read())
        ranges = [(Fraction(a), Fraction(b)) for a, b in job["ranges"]]
        stats = split_audio_file(job["src"], ranges, job["paths"], job["rate"], job["channels"])
    except NMError as e:
        sys.stderr.write(f"error: {e}\n")
        return e.exit_code
    except Exception as e:  # noqa: BLE001 - reported to the parent as one line
        sys.stderr.write(f"error: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}\n")
        return 1
    sys.stdout.write(json.dumps(stats))
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
