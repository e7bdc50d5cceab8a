"""Import the app's current export (seed 000) as a session folder in our layout.

The export is ``<session_id>.zip`` holding ``<session_id>.webm`` (screen video, maybe
audio), ``<session_id>_input.json`` (``{"sessionId", "startTime" (epoch ms),
"duration" (ms), "inputEvents": [...]}``) and ``<session_id>_metadata.json``.
:func:`import_zip` writes ``<workdir>/<session_id>/`` with

- ``<session_id>.webm``: the video, extracted byte for byte;
- ``<session_id>.jsonl``: the input events in our JSONL shape (contract/events.py);
- ``metadata.json``: session metadata (seed 001 fields) with the export's metadata kept
  verbatim under ``source_export`` and what the import did under ``import``.

Event mapping (docs/contracts/session-folder.md, "Zip import"):

- ``timestamp`` (epoch ms, may be fractional) -> ``timestamp_ns`` = round(ms * 1e6).
- ``keydown``/``keyup`` -> ``["keyboard.press"|"keyboard.release", vk, key]`` with
  ``vk = dom_code_to_vk(code)``, else the VK of a one-character ``key``, else null.
  Modifier flags (ctrlKey...) are not copied: modifier keys are events of their own.
- ``mousemove`` -> ``["mouse.move", x, y]`` in SCREEN pixels: ``screenX``/``screenY``
  (the DOM's screen coordinates, which is what the screen recording shows; ``x``/``y``
  are clientX/clientY, relative to the app's page). When only ``x``/``y`` are present
  (the export gives no screen coordinates for clicks), the page's screen offset last
  seen on a mousemove (``screenX - x``) is added; before any mousemove it is 0.
  DOM coordinates are CSS pixels: on a display scaled by devicePixelRatio they are not
  device pixels, and the export does not record the ratio.
- ``mousedown``/``mouseup`` -> ``["mouse.click", x, y, button, pressed]`` with the DOM
  button index mapped to ``left middle right x1 x2``.
- ``wheel`` (not produced by the current app, accepted if present) ->
  ``["mouse.scroll", x, y, dx, dy]`` with dx/dy = -deltaX/100, -deltaY/100 (DOM deltas
  are pixels, positive down; ours are notches, positive up as pynput reports them).
- A ``recorder`` event ``{"event": "recording.started", "anchor_source":
  "export_start_time"}`` at ``startTime``: the WebM has no anchors, so the aligner maps
  video pts 0 to this time and marks the alignment low-confidence; a
  ``recording.stopped`` event at ``startTime + duration`` when the duration is known.

Events with a missing/ill-typed field or of an unknown type are skipped and counted in
``metadata.json`` ``import.skipped`` by reason, never guessed.

Zip safety: entries escaping the folder (``..``, absolute paths, drive letters),
symlinks, too many entries, too many total bytes and implausible compression ratios
are refused before anything is extracted; only the three members are ever read.
"""
from __future__ import annotations

import datetime as _dt
import json
import math
import re
import stat
import zipfile
import zlib
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path, PurePosixPath
from typing import Any

from ..contract import events as ev
from ..contract.keys import char_to_vk, dom_code_to_vk
from ..contract.metadata import loads_json_strict
from ..contract.version import FORMAT_VERSION
from ..util.atomic import atomic_dir, write_json_atomic, write_text_atomic
from ..util.errors import BadInput, EnvProblem

ANCHOR_SOURCE = "export_start_time"


@dataclass(frozen=True)
class ZipLimits:
    """Bounds an export must respect before anything is extracted.

    ``max_total_bytes``: sum of the declared uncompressed sizes of all entries.
    ``max_json_bytes``: each of the two JSON members. They are parsed in memory, which
    costs about 5.6 times the member's size at the peak (measured: a 138-byte mousemove
    event costs ~640 bytes of Python objects while parsed and converted), and about
    0.2 s per MB; 256 MiB is ~1.9 million events (hours of continuous mouse movement at
    the browser's event rate) for ~1.5 GB of memory and under a minute. The metadata
    member is a few KB.
    ``max_entries``: entries in the archive. ``max_ratio``: uncompressed/compressed size
    of any entry larger than ``ratio_floor_bytes`` (zip bombs reach ratios near 1000).
    """

    max_total_bytes: int = 64 * 1024**3
    max_json_bytes: int = 256 * 1024**2
    max_entries: int = 1000
    max_ratio: float = 200.0
    ratio_floor_bytes: int = 1024 * 1024


# the export's metadata is kept verbatim under source_export in metadata.json, which
# nm-align reads nested at most 32 levels (session.META_MAX_DEPTH): one less here
_MAX_META_DEPTH = 31
_SESSION_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
_MAX_MS = (2**63 - 1) // 1_000_000          # beyond this, ns overflow int64
_MAX_COORD = 10_000_000                     # screen pixels / wheel deltas beyond this are junk
_BUTTONS = {idx: name for name, idx in ev.DOM_BUTTON_INDEX.items()}
_COPY_CHUNK = 1024 * 1024


# --------------------------------------------------------------------------- zip checks

def _entry_problem(info: zipfile.ZipInfo) -> str | None:
    name = info.filename
    if "\x00" in name:
        return "has a NUL byte in its name"
    norm = name.replace("\\", "/")
    if norm.startswith("/") or re.match(r"^[A-Za-z]:", norm):
        return "has an absolute path"
    if ".." in PurePosixPath(norm).parts:
        return "escapes the extraction folder (..)"
    mode = (info.external_attr >> 16) & 0xFFFF
    if info.create_system == 3 and stat.S_ISLNK(mode):
        return "is a symbolic link"
    return None


def _check_archive(zf: zipfile.ZipFile, limits: ZipLimits, zname: str) -> list[zipfile.ZipInfo]:
    infos = zf.infolist()
    if len(infos) > limits.max_entries:
        raise BadInput(f"{zname}: {len(infos)} entries, more than the limit of {limits.max_entries}")
    total = 0
    for info in infos:
        why = _entry_problem(info)
        if why:
            raise BadInput(f"{zname}: unsafe entry {info.filename!r} {why}")
        if info.flag_bits & 0x1:
            raise BadInput(f"{zname}: entry {info.filename!r} is encrypted")
        total += info.file_size
        if (info.file_size > limits.ratio_floor_bytes
                and info.file_size > limits.max_ratio * max(info.compress_size, 1)):
            raise BadInput(f"{zname}: entry {info.filename!r} expands {info.file_size} bytes from "
                           f"{info.compress_size} (compression ratio above {limits.max_ratio:g})")
    if total > limits.max_total_bytes:
        raise BadInput(f"{zname}: {total} bytes uncompressed, more than the limit of "
                       f"{limits.max_total_bytes}")
    return infos


def _is_junk(name: str) -> bool:
    """macOS Finder's resource forks (``__MACOSX/``, ``._name``): never members."""
    parts = PurePosixPath(name.replace("\\", "/")).parts
    return any(p == "__MACOSX" for p in parts) or (bool(parts) and parts[-1].startswith("._"))


def _find_members(infos: list[zipfile.ZipInfo], zname: str) -> tuple[str, dict[str, zipfile.ZipInfo]]:
    """Find the session id and the three members (top level or in one folder)."""
    files = [i for i in infos if not i.is_dir() and not _is_junk(i.filename)]
    by_base: dict[str, list[zipfile.ZipInfo]] = {}
    for i in files:
        by_base.setdefault(PurePosixPath(i.filename.replace("\\", "/")).name, []).append(i)
    inputs = sorted(b[: -len("_input.json")] for b in by_base if b.endswith("_input.json"))
    if not inputs:
        raise BadInput(f"{zname}: not an app export: no <session_id>_input.json member")
    if len(inputs) > 1:
        raise BadInput(f"{zname}: more than one *_input.json member ({', '.join(inputs[:3])})")
    sid = inputs[0]
    if not _SESSION_ID_RE.match(sid):
        raise BadInput(f"{zname}: session id {sid!r} is not a safe folder name")
    members = {}
    for role, base in (("video", f"{sid}.webm"), ("input", f"{sid}_input.json"),
                       ("metadata", f"{sid}_metadata.json")):
        found = by_base.get(base, [])
        if not found:
            raise BadInput(f"{zname}: missing member {base}")
        if len(found) > 1:
            raise BadInput(f"{zname}: member {base} appears {len(found)} times")
        members[role] = found[0]
    return sid, members


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int, zname: str) -> bytes:
    if info.file_size > limit:
        raise BadInput(f"{zname}: {info.filename} is {info.file_size} bytes, more than {limit}")
    try:
        with zf.open(info) as f:
            data = f.read(limit + 1)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError,
            NotImplementedError, RuntimeError) as e:
        raise BadInput(f"{zname}: cannot read {info.filename}: {_one_line(e)}") from None
    if len(data) > limit:
        raise BadInput(f"{zname}: {info.filename} is larger than {limit} bytes")
    return data


def _extract_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, dest: Path, zname: str) -> None:
    written = 0
    try:
        with zf.open(info) as src, open(dest, "wb") as out:
            while True:
                block = src.read(_COPY_CHUNK)
                if not block:
                    break
                written += len(block)
                # CPython's zipfile already stops at the declared size (and its CRC
                # check then fails); this bound holds whatever the zip reader does
                if written > info.file_size:
                    raise BadInput(f"{zname}: {info.filename} is longer than its declared size")
                out.write(block)
    except (zipfile.BadZipFile, zlib.error, EOFError, ValueError,
            NotImplementedError, RuntimeError) as e:
        raise BadInput(f"{zname}: cannot extract {info.filename}: {_one_line(e)}") from None
    except OSError as e:
        if e.errno is not None:      # the destination: disk full, permissions
            raise EnvProblem(f"cannot write {dest}: {e.strerror or _one_line(e)}") from None
        raise BadInput(f"{zname}: cannot extract {info.filename}: {_one_line(e)}") from None


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text[:200]


# --------------------------------------------------------------------------- conversion

def _num(v: Any) -> float | int | None:
    """A finite JSON number (not a bool), else None. Decimals (how the input JSON's
    fractional numbers are parsed, to keep timestamps exact) become int or float."""
    if type(v) is int:           # the common case, first
        return v
    if isinstance(v, Decimal):
        if not v.is_finite():
            return None
        v = int(v) if v == v.to_integral_value() and abs(v) < 2**63 else float(v)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    if isinstance(v, float):
        if not math.isfinite(v):
            return None
        if v.is_integer() and abs(v) < 2**53:
            return int(v)
    return v


def _ms_to_ns(ms: Any) -> int | None:
    """Epoch ms (int, float or exact Decimal) -> ns, rounded half-even; None if not a
    finite number in [0, int64 ns range]."""
    if type(ms) is int:
        return ms * 1_000_000 if 0 <= ms <= _MAX_MS else None
    if isinstance(ms, Decimal):
        if not ms.is_finite() or ms < 0 or ms > _MAX_MS:
            return None
        return int((ms * 1_000_000).to_integral_value(rounding=ROUND_HALF_EVEN))
    v = _num(ms)
    if v is None or v < 0 or v > _MAX_MS:
        return None
    if isinstance(v, int):
        return v * 1_000_000
    return int(round(v * 1_000_000))


def iso_utc_from_ns(t_ns: int) -> str:
    """Epoch ns -> ``YYYY-MM-DDTHH:MM:SS.mmmZ`` (UTC, millisecond precision)."""
    d = _dt.datetime.fromtimestamp(t_ns // 1_000_000_000, tz=_dt.timezone.utc)
    ms = (t_ns // 1_000_000) % 1000
    return d.strftime("%Y-%m-%dT%H:%M:%S") + f".{ms:03d}Z"


def _parse_iso_ms(text: Any) -> int | None:
    if not isinstance(text, str) or len(text) > 64:
        return None
    try:
        d = _dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if d.tzinfo is None:
        d = d.replace(tzinfo=_dt.timezone.utc)
    try:
        return int(round(d.timestamp() * 1000))
    except (OverflowError, OSError, ValueError):
        return None


_enc_str = json.encoder.encode_basestring          # C-accelerated, keeps non-ASCII
_enc_obj = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode


def _clean(v: Any) -> Any:
    """Replace lone UTF-16 surrogates (legal as JSON escapes, not encodable as UTF-8) by
    U+FFFD, recursively, so every string can be written as UTF-8."""
    if isinstance(v, str):
        try:
            v.encode("utf-8")
            return v
        except UnicodeEncodeError:
            return "".join("\ufffd" if 0xD800 <= ord(c) <= 0xDFFF else c for c in v)
    if isinstance(v, list):
        return [_clean(x) for x in v]
    if isinstance(v, dict):
        return {_clean(k): _clean(x) for k, x in v.items()}
    return v


def _jnum(v: int | float) -> str:
    """JSON text of a finite number, as json.dumps writes it."""
    return str(v) if type(v) is int else float.__repr__(float(v))


def _line_text(t_ns: int, src: str, data_text: str) -> str:
    """One JSONL line (no newline); ``data_text`` is the compact JSON of event_data."""
    return f'{{"timestamp_ns":{t_ns},"event_src":"{src}","event_data":{_enc_str(data_text)}}}'


def _line(t_ns: int, src: str, data: Any) -> str:
    return _line_text(t_ns, src, _enc_obj(data))


@dataclass
class ConvertedExport:
    """Result of :func:`convert_export`: JSONL lines (no newlines), metadata, counts."""

    lines: list[str]
    start_ns: int
    n_events: int
    skipped: dict[str, int]


def convert_export(input_doc: Any, metadata_doc: Any, source: str = "export") -> ConvertedExport:
    """Pure: the parsed ``_input.json`` (and ``_metadata.json`` for a fallback start time)
    -> our JSONL lines, sorted by time (stable). Raises BadInput if the document's shape
    is wrong or no start time can be found; skips (and counts) malformed events."""
    if isinstance(input_doc, list):          # tolerate a bare array of events
        input_doc = {"inputEvents": input_doc}
    if not isinstance(input_doc, dict):
        raise BadInput(f"{source}: input JSON must be an object with inputEvents")
    events = input_doc.get("inputEvents", [])
    if not isinstance(events, list):
        raise BadInput(f"{source}: inputEvents must be an array")
    start_ns = _ms_to_ns(input_doc.get("startTime"))
    if start_ns is None:
        session = metadata_doc.get("session") if isinstance(metadata_doc, dict) else None
        ms = _parse_iso_ms(session.get("startTime")) if isinstance(session, dict) else None
        start_ns = _ms_to_ns(ms) if ms is not None else None
    if start_ns is None:
        raise BadInput(f"{source}: no usable startTime (epoch ms) in the input or metadata JSON")

    skipped: dict[str, int] = {}

    def skip(reason: str) -> None:
        skipped[reason] = skipped.get(reason, 0) + 1

    out: list[tuple[int, int, str]] = []   # (t_ns, order, line)
    off_x: float = 0
    off_y: float = 0
    for i, e in enumerate(events):
        if not isinstance(e, dict):
            skip("not an object")
            continue
        t_ns = _ms_to_ns(e.get("timestamp"))
        if t_ns is None:
            skip("bad timestamp")
            continue
        kind = e.get("event")
        data = e.get("data")
        if not isinstance(data, dict):
            data = {}
        if kind in ("keydown", "keyup"):
            code = data.get("code")
            key = data.get("key")
            if not isinstance(key, str):
                key = None
            if not isinstance(code, str) and key is None:
                skip("key event without key or code")
                continue
            vk = dom_code_to_vk(code) if isinstance(code, str) else None
            if vk is None and key is not None and len(key) == 1:
                vk = char_to_vk(key)
            name = _clean(key if key is not None else code)
            action = ev.KEY_PRESS if kind == "keydown" else ev.KEY_RELEASE
            out.append((t_ns, i, _line_text(t_ns, ev.SRC_CONTROL, (
                f'["{action}",{"null" if vk is None else int(vk)},{_enc_str(name)}]'))))
        elif kind in ("mousemove", "mousedown", "mouseup", "wheel"):
            cx, cy = _num(data.get("x")), _num(data.get("y"))
            sx, sy = _num(data.get("screenX")), _num(data.get("screenY"))
            if sx is not None and sy is not None:
                if cx is not None and cy is not None:
                    off_x, off_y = sx - cx, sy - cy
                x, y = sx, sy
            elif cx is not None and cy is not None:
                x, y = _tidy(cx + off_x), _tidy(cy + off_y)
            else:
                skip(f"{kind} without coordinates")
                continue
            if not (abs(x) <= _MAX_COORD and abs(y) <= _MAX_COORD):   # also catches inf/nan
                skip(f"{kind} with coordinates out of range")
                continue
            if kind == "mousemove":
                out.append((t_ns, i, _line_text(t_ns, ev.SRC_CONTROL,
                                                f'["{ev.MOUSE_MOVE}",{_jnum(x)},{_jnum(y)}]')))
            elif kind == "wheel":
                dx, dy = _num(data.get("deltaX", 0)), _num(data.get("deltaY", 0))
                if dx is None or dy is None or not (abs(dx) <= _MAX_COORD and abs(dy) <= _MAX_COORD):
                    skip("wheel without deltas")
                    continue
                out.append((t_ns, i, _line(t_ns, ev.SRC_CONTROL,
                                           [ev.MOUSE_SCROLL, x, y, _tidy(-dx / 100), _tidy(-dy / 100)])))
            else:
                b = _num(data.get("button"))
                if not isinstance(b, int) or b not in _BUTTONS:
                    skip(f"{kind} with unknown button")
                    continue
                out.append((t_ns, i, _line(t_ns, ev.SRC_CONTROL,
                                           [ev.MOUSE_CLICK, x, y, _BUTTONS[b], kind == "mousedown"])))
        else:
            skip(f"unknown event type {str(kind)[:40]!r}" if isinstance(kind, str) else "no event type")
    n_events = len(out)
    out.append((start_ns, -2, _line(start_ns, ev.SRC_RECORDER, {
        "event": ev.REC_RECORDING_STARTED, "anchor_source": ANCHOR_SOURCE})))
    dur_ns = _ms_to_ns(input_doc.get("duration"))
    if dur_ns is not None and start_ns + dur_ns <= 2**63 - 1:
        out.append((start_ns + dur_ns, 2**62, _line(start_ns + dur_ns, ev.SRC_RECORDER, {
            "event": ev.REC_RECORDING_STOPPED, "anchor_source": ANCHOR_SOURCE})))
    out.sort(key=lambda r: (r[0], r[1]))
    return ConvertedExport([r[2] for r in out], start_ns, n_events, skipped)


def _tidy(v: float | int) -> float | int:
    if isinstance(v, float) and v.is_integer() and abs(v) < 2**53:
        return int(v)
    return v


def _get(d: Any, *path: str) -> Any:
    for p in path:
        if not isinstance(d, dict):
            return None
        d = d.get(p)
    return d


def build_session_metadata(session_id: str, metadata_doc: Any, conv: ConvertedExport,
                           video: dict, zip_name: str) -> dict:
    """Pure: our session metadata (seed 001 fields) for an imported export.

    ``video`` holds what probing the WebM found: ``width``, ``height``, ``codec``,
    ``fps`` (float or None), ``bitrate_kbps`` (float or None), ``has_audio``.
    """
    metadata_doc = _clean(metadata_doc)
    rec = _get(metadata_doc, "recording") or {}
    system = _get(metadata_doc, "system") or {}
    fps = _num(_get(metadata_doc, "ai", "frameRate"))
    if fps is None or fps <= 0:
        fps = video.get("fps")

    def flag(key: str, default: bool) -> bool:
        v = rec.get(key) if isinstance(rec, dict) else None
        return v if isinstance(v, bool) else default

    def text(d: Any, key: str) -> str | None:
        v = d.get(key) if isinstance(d, dict) else None
        return v if isinstance(v, str) else None

    w, h = video.get("width"), video.get("height")
    return {
        "format_version": FORMAT_VERSION,
        "session_id": session_id,
        "captured_at": iso_utc_from_ns(conv.start_ns),
        "game": None,
        "patch": None,
        "resolution": [w, h] if w and h else None,
        "refresh_hz": None,
        "capture_fps": fps,
        "codec": video.get("codec"),
        "bitrate_kbps": video.get("bitrate_kbps"),
        "input_device": "keyboard+mouse" if flag("inputTrackingEnabled", True) else None,
        "window_id": None,
        "dropped_frames": None,
        "lagged_frames": None,
        "clock_drift_ppm": None,
        "consent": {"record_screen": flag("screenRecordingEnabled", True),
                    "record_audio": flag("audioEnabled", bool(video.get("has_audio"))),
                    "record_input": flag("inputTrackingEnabled", True)},
        "privacy": {"chat_redacted": False, "pii_regions": []},
        "env": {"os": text(system, "platform"), "user_agent": text(system, "userAgent"),
                "language": text(system, "language"), "client_version": None,
                "capture_app": "app-export (seed 000 zip)"},
        "import": {"source": "zip_export", "zip_name": zip_name,
                   "anchor_source": ANCHOR_SOURCE, "start_ns": conv.start_ns,
                   "events_imported": conv.n_events, "skipped": conv.skipped,
                   "mouse_coordinates": "screen CSS pixels (DOM screenX/screenY)"},
        "source_export": metadata_doc if isinstance(metadata_doc, dict) else {"value": metadata_doc},
    }


def probe_video(path: Path) -> dict:
    """Container-level facts about a video (no decoding). BadInput if unreadable."""
    import av
    try:
        with av.open(str(path)) as c:
            if not c.streams.video:
                raise BadInput(f"{path.name}: no video stream")
            s = c.streams.video[0]
            rate = s.average_rate or s.guessed_rate
            br = c.bit_rate or 0
            return {"width": s.codec_context.width or None, "height": s.codec_context.height or None,
                    "codec": s.codec_context.name,
                    "fps": float(rate) if rate else None,
                    "bitrate_kbps": round(br / 1000, 3) if br else None,
                    "has_audio": bool(c.streams.audio)}
    except BadInput:
        raise
    except (av.FFmpegError, OSError, ValueError) as e:
        raise BadInput(f"{path.name}: not a readable video ({_one_line(e)})") from None


# --------------------------------------------------------------------------- entry point

def import_zip(zip_path: str | Path, workdir: str | Path, limits: ZipLimits = ZipLimits()) -> Path:
    """Turn the app's ``<session_id>.zip`` export into ``<workdir>/<session_id>/``.

    Returns the session folder. The folder is built under a temporary name and swapped
    in at the end (an existing folder of the same session is replaced, nothing partial
    is ever left). Raises BadInput (one line) for a missing/bad/unsafe zip or bad JSON.
    """
    zip_path = Path(zip_path)
    zname = zip_path.name
    if not zip_path.is_file():
        raise BadInput(f"{zip_path}: no such file")
    try:
        zf = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, zlib.error, EOFError, ValueError, NotImplementedError) as e:
        raise BadInput(f"{zname}: not a valid zip file ({_one_line(e)})") from None
    except OSError as e:
        raise BadInput(f"{zname}: cannot read ({e.strerror or _one_line(e)})") from None
    with zf:
        infos = _check_archive(zf, limits, zname)
        sid, members = _find_members(infos, zname)
        input_doc = loads_json_strict(
            _read_member(zf, members["input"], limits.max_json_bytes, zname),
            f"{zname}:{members['input'].filename}", exact_decimals=True)
        meta_doc = loads_json_strict(
            _read_member(zf, members["metadata"], limits.max_json_bytes, zname),
            f"{zname}:{members['metadata'].filename}", max_depth=_MAX_META_DEPTH)
        declared = input_doc.get("sessionId") if isinstance(input_doc, dict) else None
        if isinstance(declared, str) and declared and declared != sid:
            raise BadInput(f"{zname}: input JSON is for session {declared!r}, members are named {sid!r}")
        conv = convert_export(input_doc, meta_doc, source=f"{zname}:{members['input'].filename}")
        final = Path(workdir) / sid
        try:
            with atomic_dir(final) as tmp:
                video = tmp / f"{sid}.webm"
                _extract_member(zf, members["video"], video, zname)
                info = probe_video(video)
                write_text_atomic(tmp / f"{sid}.jsonl", "".join(ln + "\n" for ln in conv.lines))
                write_json_atomic(tmp / "metadata.json",
                                  build_session_metadata(sid, meta_doc, conv, info, zname))
        except RecursionError:
            raise BadInput(f"{zname}: {members['metadata'].filename} is nested too deeply") from None
        except OSError as e:
            raise EnvProblem(f"cannot write to {Path(workdir)}: {e.strerror or _one_line(e)}") from None
    return final


__all__ = ["ZipLimits", "import_zip", "convert_export", "build_session_metadata",
           "ConvertedExport", "probe_video", "iso_utc_from_ns", "ANCHOR_SOURCE"]
