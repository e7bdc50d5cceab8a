"""Dataset work started before the recording is scanned (``nm-align --dataset``).

Import-light on purpose (PyAV, numpy and the stdlib; no pyarrow): ``nm-align`` reads the
container header and starts the ffmpeg stream copy while the rest of the program is
still importing, so ffmpeg's single-threaded pass, the longest single piece of work,
starts first. ``writer.write_dataset(..., early=...)`` checks
everything against the real scan and plan before using it.
"""
from __future__ import annotations

import os
import secrets
import shutil
from fractions import Fraction
from pathlib import Path

from companion.util.errors import NMError

from .layout import DATASET_META, STAGING, validate_video_id


class EarlyStart:
    """Dataset work begun before the recording is scanned (``nm-align --dataset``).

    ``begin`` makes the video's staging folder; ``on_header`` (called by nm-align with
    ``header.read_header`` before the scan, or by the scan) starts the chunk copy: for
    an H.264, HEVC or AV1 MKV (AAC or no audio) a ``mux_copy.MuxCopy`` that writes the
    chunk MP4s from the scan's Matroska walk (this object is the scan's ``walk_sink``),
    else ``ffmpeg_copy.EarlyCopy`` cutting them while the scan runs. The scan's
    ``audio_sink`` is an ``audio.AudioSpool`` decoding the audio packets the scan reads,
    so the WAVs need no second read of the recording. ``write_dataset(...,
    early=...)`` adopts the staging folder and uses all of it only after checking it
    against the real scan and plan. Everything is best effort: what cannot start is
    skipped and the normal path does that work. ``discard`` (idempotent) stops both and
    removes what was not adopted, including a root folder ``begin`` created."""

    def __init__(self, root: Path, video_id: str, chunk_seconds: float, src: Path,
                 fps_hint: Fraction | None, use_ffmpeg: bool, checksums: bool | str = True):
        self.checksums = checksums     # the walk copy child hashes the MP4s it writes (algorithm)
        self.root, self.video_id, self.chunk_seconds = root, video_id, chunk_seconds
        self.src, self.fps_hint, self.use_ffmpeg = src, fps_hint, use_ffmpeg
        self.staging: Path | None = None
        self.copy = None
        self.spool = None
        self._audio_proc = None        # audio_child's process, until audio_sink takes it
        self._header_seen = False
        self.adopted = False
        self._made: list[Path] = []

    @classmethod
    def begin(cls, root, video_id: str, chunk_seconds: float, src, fps_hint=None,
              use_ffmpeg: bool = True, checksums: bool | str = True) -> "EarlyStart | None":
        root = Path(root)
        try:
            validate_video_id(video_id)
            if root.exists() and not (root / DATASET_META).is_file():
                return None        # new roots and datasets only; ensure_dataset judges the rest
        except (NMError, OSError):
            return None
        e = cls(root, video_id, chunk_seconds, Path(src), fps_hint, use_ffmpeg, checksums)
        try:
            missing = [root / STAGING]
            d = root
            while not d.exists() and d != d.parent:
                missing.append(d)
                d = d.parent
            for d in sorted(missing, key=lambda x: len(x.parts)):
                if not d.exists():
                    d.mkdir()
                    e._made.append(d)       # removed again by discard() if still empty
            st = root / STAGING / f"{video_id}.{os.getpid()}.{secrets.token_hex(4)}"
            st.mkdir()
            e.staging = st
        except OSError:
            e.discard()
            return None
        return e

    def on_header(self, info) -> None:
        """Start the ffmpeg stream copy from the container header (once)."""
        if self._header_seen:
            return
        self._header_seen = True
        try:
            self._start_copy(info)
        except Exception:  # noqa: BLE001 - best effort: the normal path runs ffmpeg
            self.copy = None

    def _start_copy(self, info) -> None:
        from .chunking import frames_per_chunk
        from .ffmpeg_copy import _DECODER_ALIASES, FAST_CODECS, EarlyCopy, find_ffmpeg
        from .mux_copy import MuxCopy
        from companion.align.header import snap_standard_rate
        if self.staging is None or not self.use_ffmpeg:
            return
        fps = self.fps_hint
        if not fps and info.rates:
            r = info.rates[0]
            fps = snap_standard_rate(r, Fraction(1, 2000)) or r
        if not fps or fps <= 0:
            return
        size = frames_per_chunk(fps, self.chunk_seconds)
        work = self.staging / "video" / ".nm-mux-early"
        if info.container.startswith("matroska") and MuxCopy.supports(info.codec) and \
                info.audio_codec in (None, "aac"):      # audio the walker reads (AAC or none)
            # the scan's Matroska walk gives every frame's place in the file (walk_sink)
            self.copy = MuxCopy.start(work, size, self.checksums)
            if self.copy is not None:
                from . import audio_child
                if info.audio_codec == "aac" and audio_child.wanted(self.checksums):
                    self._audio_proc = audio_child.start_process()   # decodes beside the walk
                return
        exe = find_ffmpeg()
        if exe is None or _DECODER_ALIASES.get(info.codec, info.codec) not in FAST_CODECS:
            return
        if info.first_pts is None or not info.declared_end_s:
            return
        est = int(info.declared_end_s * float(fps) * 1.05) + 2 * size
        self.copy = EarlyCopy(exe, self.src, self.staging / "video" / ".nm-ffmpeg-early",
                              info.codec, info.time_base, info.first_pts, size, est)

    # -- the scan's walk_sink (demux.scan_video): forwarded to a MuxCopy early copy --
    def _mux(self):
        return self.copy if hasattr(self.copy, "put_walk") else None

    @property
    def step(self) -> int:
        """Video blocks between ``walk_blocks`` calls (0: none wanted)."""
        m = self._mux()
        return m.step if m is not None else 0

    def walk_blocks(self, *cols) -> None:
        m = self._mux()
        if m is not None:
            m.walk_blocks(*cols)

    def put_walk(self, table) -> None:
        m = self._mux()
        if m is not None:
            m.put_walk(table)

    def audio_sink(self, rate: int, channels: int):
        """An ``AudioSpool`` in the staging folder for the scan's audio packets (a
        ``ChildAudioSpool`` when the audio child was started), or None."""
        from .audio import AudioSpool
        if self.staging is None:
            return None
        path = self.staging / ".audio-spool.s16"
        if self._audio_proc is not None:
            from .audio_child import ChildAudioSpool
            proc, self._audio_proc = self._audio_proc, None
            self.spool = ChildAudioSpool(proc, path, rate, channels)
            return self.spool
        try:
            self.spool = AudioSpool(path, rate, channels)
        except OSError:
            self.spool = None
        return self.spool

    def take(self, root: Path, video_id: str) -> Path | None:
        """The staging folder for ``write_dataset`` (None: not usable for this call)."""
        if self.staging is None or self.adopted or video_id != self.video_id or \
                Path(root).resolve() != self.root.resolve() or not self.staging.is_dir():
            return None
        self.adopted = True
        return self.staging

    def discard(self) -> None:
        if self._audio_proc is not None:
            from .audio_child import stop_process
            proc, self._audio_proc = self._audio_proc, None
            stop_process(proc)
        if self.copy is not None:
            c, self.copy = self.copy, None
            c.discard()
        if self.spool is not None:
            sp, self.spool = self.spool, None
            sp.remove()
        if not self.adopted and self.staging is not None:
            shutil.rmtree(self.staging, ignore_errors=True)
            self.staging = None
        if not self.adopted:
            for d in reversed(self._made):
                try:
                    d.rmdir()              # only if still empty
                except OSError:
                    pass
        self._made = []




def sidecar_fps(path: Path) -> Fraction | None:
    """fps_num/fps_den of a sidecar's header line (a hint only; None if unreadable)."""
    import json
    try:
        with open(path, encoding="utf-8") as f:
            hdr = json.loads(f.readline())
        fps = Fraction(int(hdr["fps_num"]), int(hdr["fps_den"]))
        return fps if hdr.get("kind") == "header" and fps > 0 else None
    except Exception:  # noqa: BLE001 - no hint; the scan decides
        return None


def begin_early(video, root, chunk_seconds: float, video_id: str,
                checksums: bool | str = True) -> EarlyStart | None:
    """``nm-align VIDEO --dataset ROOT``'s head start: read the header of ``video`` (a
    plain video file; folders and zip exports are resolved later) and start ffmpeg at
    once. None when nothing could start; the caller passes the result to
    ``align_session(early_start=...)``, which consumes it."""
    from companion.align.header import read_header
    from companion.contract.sidecar import sidecar_path_for
    src = Path(video)
    try:
        if not src.is_file() or src.suffix.lower() == ".zip":
            return None
    except OSError:
        return None
    info = read_header(src)
    if info is None:
        return None
    e = EarlyStart.begin(Path(root), video_id, chunk_seconds, src,
                         sidecar_fps(sidecar_path_for(src)), checksums=checksums)
    if e is not None:
        e.on_header(info)
    return e
