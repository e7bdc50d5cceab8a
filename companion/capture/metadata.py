"""Build a session folder's ``metadata.json`` (seed 001 fields) from gathered values.

Pure: :func:`build_session_metadata` takes values, returns a dict; the caller writes it
atomically. JSON Schema: companion/contract/jsonschema/session_metadata.schema.json.
nm-align later adds an ``alignment`` section and fills ``clock_drift_ppm``.

Field meanings (units in brackets):

- ``format_version``: companion/contract/version.py FORMAT_VERSION (semver).
- ``session_id``; ``captured_at``: UTC ISO 8601 time the recording started (the OBS
  script's sidecar header, else OBS's start event, else the session start).
- ``status``: "complete", or "incomplete" when the session ended abnormally (OBS quit
  or crashed mid-recording, the recording failed to stop...); ``end_reason`` says why.
- ``resolution``: [width, height] of the recorded video [px] (OBS output size);
  ``base_resolution``: OBS canvas [px].
- ``refresh_hz``: display refresh rate [Hz] if known, else null.
- ``capture_fps``: OBS frame rate [frames/s] (fps_num / fps_den); ``fps_num``/``fps_den``.
- ``codec``: recorded video codec ("h264", ...); ``encoder``: OBS encoder id;
  ``bitrate_kbps``: configured video bitrate [kbit/s] or, if unknown, the file's
  average bitrate; null if neither is known.
- ``input_device``: "keyboard+mouse", "keyboard", "mouse" or "none" (what was logged).
- ``window_id``: the last active window id seen (X11 id / HWND / CGWindowNumber), string.
- ``lagged_frames``: frames the renderer missed during this recording (OBS repeats the
  last picture to keep the grid) [frames]: the OBS script's sidecar ``stop`` record
  ``recording_lagged_frames`` (OBS's counter at the recording's start and at its
  "stopping" signal); without it (no sidecar, or a script older than 1.1.0) OBS's
  lifetime total, and ``frame_counts_source`` says so.
- ``dropped_frames``: frames OBS skipped for encoding lag [frames] (the picture before is
  repeated). No OBS script API reads that counter, so it comes from obs-websocket
  ``GetStats.outputSkippedFrames`` read after the recording stopped: OBS zeroes it when
  its video output gets its first consumer, so it covers this recording unless a
  stream, replay buffer or virtual camera was running across it.
- ``frame_counts_source``: where each of the two came from, in words.
- ``clock_drift_ppm``: null until nm-align measures it [ppm].
- ``consent``: record_screen / record_audio / record_input (booleans) + ``source``
  ("--consent" or "config file").
- ``privacy``: seed 001 ``chat_redacted``/``pii_regions`` plus the companion's window
  filters (PrivacyFilter.describe()).
- ``env``: os, os_release, machine, python, obs_version, obs_websocket_version,
  obs_platform, client_version (companion), gpu (null: not measured).
- ``audio``: "captured by OBS in the recording (the companion never records audio)".
- ``files``: names of the session's files, relative to the session folder.
- ``events``: counts written/dropped per source.
"""
from __future__ import annotations

import datetime as _dt
import platform
import sys
from typing import Any

from companion.contract.version import FORMAT_VERSION

AUDIO_NOTE = ("audio, if any, is captured by OBS into the recording (its audio sources and "
              "tracks); the companion never records audio itself")


def iso_utc(epoch_ns: int) -> str:
    """Epoch ns -> ``2024-01-01T12:00:00.123456Z`` (truncated to microseconds, exact)."""
    sec, ns = divmod(int(epoch_ns), 1_000_000_000)
    t = (_dt.datetime.fromtimestamp(sec, tz=_dt.timezone.utc)
         + _dt.timedelta(microseconds=ns // 1000))
    return t.strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z"


def companion_version() -> str:
    """The installed package version (or "unknown")."""
    try:
        from importlib.metadata import version
        return version("nm-obs-dataset")
    except Exception:
        return "unknown"


def host_env() -> dict:
    """The parts of ``env`` the companion knows without OBS."""
    return {
        "os": platform.system() or sys.platform,
        "os_release": platform.release(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "client": "nm-companion",
        "client_version": companion_version(),
        "gpu": None,
    }


def input_device_name(keyboard: bool, mouse: bool) -> str:
    """"keyboard+mouse" / "keyboard" / "mouse" / "none"."""
    parts = [n for n, on in (("keyboard", keyboard), ("mouse", mouse)) if on]
    return "+".join(parts) or "none"


STATS_SKIPPED = ("obs-websocket GetStats outputSkippedFrames after the recording (encoder-lag "
                 "skips since OBS's video output last started: this recording unless a "
                 "stream, replay buffer or virtual camera ran across it)")


def frame_counts(sidecar_stop: dict | None, obs_stats: dict | None):
    """(dropped_frames, lagged_frames, frame_counts_source) for one recording.

    Lagged: the OBS script's per-recording ``recording_lagged_frames`` when present;
    otherwise a lifetime total (an older script's ``lagged_frames``, else GetStats
    ``renderSkippedFrames``), named as such in the source. Dropped: a sidecar
    ``skipped_frames`` if present, else GetStats ``outputSkippedFrames``."""
    sc = sidecar_stop or {}
    st = obs_stats or {}
    dropped = lagged = None
    parts = []
    if sc.get("recording_lagged_frames") is not None:
        lagged = int(sc["recording_lagged_frames"])
        parts.append("lagged_frames: obs script sidecar, this recording")
    elif sc.get("lagged_frames") is not None:
        lagged = int(sc["lagged_frames"])
        parts.append("lagged_frames: obs script sidecar, OBS lifetime total (script older "
                     "than 1.1.0), not per recording")
    elif st.get("renderSkippedFrames") is not None:
        lagged = int(st["renderSkippedFrames"])
        parts.append("lagged_frames: obs-websocket GetStats renderSkippedFrames, OBS "
                     "lifetime total, not per recording")
    if sc.get("skipped_frames") is not None:
        dropped = int(sc["skipped_frames"])
        parts.append("dropped_frames: obs script sidecar")
    elif st.get("outputSkippedFrames") is not None:
        dropped = int(st["outputSkippedFrames"])
        parts.append("dropped_frames: " + STATS_SKIPPED)
    return dropped, lagged, ("; ".join(parts) or None)


def build_session_metadata(
    *,
    session_id: str,
    started_epoch_ns: int,
    status: str,
    end_reason: str,
    obs_version: str | None,
    obs_websocket_version: str | None,
    obs_platform: str | None = None,
    video: dict | None = None,
    encoder: dict | None = None,
    sidecar_stop: dict | None = None,
    obs_stats: dict | None = None,
    consent: bool,
    consent_source: str | None,
    record_audio: bool | None,
    privacy: dict,
    keyboard: bool,
    mouse: bool,
    window_id: Any = None,
    refresh_hz: float | None = None,
    events: dict | None = None,
    files: dict | None = None,
    recording_path: str | None = None,
    stopped_epoch_ns: int | None = None,
    attached: bool = False,
    env: dict | None = None,
    warnings: list[str] | None = None,
    recording_started_epoch_ns: int | None = None,
) -> dict:
    """Assemble metadata.json. Inputs:

    ``video``: obs-websocket GetVideoSettings (fpsNumerator, fpsDenominator, baseWidth,
    baseHeight, outputWidth, outputHeight). ``encoder``: {"codec", "encoder",
    "bitrate_kbps"} (values may be None). ``sidecar_stop``: the OBS script's stop
    record (total_frames, recording_lagged_frames; lagged_frames is OBS's lifetime total;
    skipped_frames if a script ever provides it). ``obs_stats``: GetStats read after the
    recording stopped (dropped frames; lagged only as a lifetime fallback). ``events``: writer/input counters.
    ``attached``: the companion joined a recording that was already running.
    ``started_epoch_ns``: when the companion's session began [epoch ns];
    ``recording_started_epoch_ns``: when OBS's recording began (the OBS script's sidecar
    header, else OBS's start event) -- ``captured_at`` uses it when known.
    """
    rec_start = recording_started_epoch_ns or started_epoch_ns
    video = video or {}
    encoder = encoder or {}
    fps_num = video.get("fpsNumerator")
    fps_den = video.get("fpsDenominator")
    fps = (fps_num / fps_den) if fps_num and fps_den else None
    ow, oh = video.get("outputWidth"), video.get("outputHeight")
    bw, bh = video.get("baseWidth"), video.get("baseHeight")

    dropped, lagged, frames_source = frame_counts(sidecar_stop, obs_stats)

    e = dict(host_env())
    e.update({"obs_version": obs_version, "obs_websocket_version": obs_websocket_version,
              "obs_platform": obs_platform})
    if env:
        e.update(env)

    md: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "session_id": session_id,
        "captured_at": iso_utc(rec_start),
        "status": status,
        "end_reason": end_reason,
        "game": None,
        "patch": None,
        "resolution": [int(ow), int(oh)] if ow and oh else None,
        "base_resolution": [int(bw), int(bh)] if bw and bh else None,
        "refresh_hz": refresh_hz,
        "capture_fps": fps,
        "fps_num": fps_num,
        "fps_den": fps_den,
        "codec": encoder.get("codec"),
        "encoder": encoder.get("encoder"),
        "bitrate_kbps": encoder.get("bitrate_kbps"),
        "input_device": input_device_name(keyboard and consent, mouse and consent),
        "window_id": None if window_id is None else str(window_id),
        "dropped_frames": dropped,
        "lagged_frames": lagged,
        "frame_counts_source": frames_source,
        "total_frames": int(sidecar_stop["total_frames"]) if sidecar_stop and
        sidecar_stop.get("total_frames") is not None else None,
        "clock_drift_ppm": None,
        "consent": {"record_screen": True,
                    "record_audio": bool(record_audio) if record_audio is not None else False,
                    "record_input": bool(consent),
                    "source": consent_source},
        "privacy": {"chat_redacted": False, "pii_regions": [], **privacy},
        "audio": AUDIO_NOTE,
        "env": e,
        "recording": {"attached_to_running_recording": attached,
                      "obs_output_path": recording_path,
                      "started_at": iso_utc(rec_start),
                      "session_started_at": iso_utc(started_epoch_ns),
                      "session_ended_at": iso_utc(stopped_epoch_ns) if stopped_epoch_ns else None,
                      "session_duration_s": round((stopped_epoch_ns - started_epoch_ns) / 1e9, 3)
                      if stopped_epoch_ns else None},
        "events": events or {},
        "files": files or {},
    }
    if warnings:
        md["warnings"] = list(warnings)
    return md
