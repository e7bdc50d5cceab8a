"""OBS configuration: the recording-setup check, ``--configure-obs``, and ``setup-obs``.

Two halves:

1. Live checks over obs-websocket (:func:`check_recording_setup`,
   :func:`configure_recording`): is the current profile recording MKV, through the normal
   recording output (``ffmpeg_muxer``, where the OBS script's captions land), with an
   encoder whose packets get captions? Problems are explained in plain words.
   Whatever the encoder, the OBS script also writes the anchors to a sidecar file, so
   a setup where captions cannot land still aligns; captions are the copy that travels
   inside the MKV.

2. Offline installation into an OBS config folder (:func:`setup_obs`): copy the
   timestamp script into ``DIR/scripts/``, install a scene collection from ``scenes/``
   into ``DIR/basic/scenes/`` with the script in its ``modules.scripts-tool``, make it
   the current collection, and enable obs-websocket (``global.ini [OBSWebSocket]`` for
   obs-websocket 5.0-5.4 / OBS 28-30.1 and ``plugin_config/obs-websocket/config.json``
   for 5.5+ / OBS 30.2+; both are written because obs-websocket 5.5 migrates the
   ``global.ini`` values and 5.4 ignores ``config.json``). Every file it changes is
   first copied to ``<file>.<YYYYmmdd-HHMMSS>.bak``. OBS must not be running (it
   rewrites these files when it exits).

Default OBS config folders: Linux ``~/.config/obs-studio`` (flatpak
``~/.var/app/com.obsproject.Studio/config/obs-studio``), Windows
``%APPDATA%\\obs-studio``, macOS ``~/Library/Application Support/obs-studio``.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import re
import secrets
import shutil
import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from companion.util.atomic import write_json_atomic, write_text_atomic
from companion.util.errors import BadInput, EnvProblem, OBSProblem

DATASET_CHUNK_SECONDS = 20
RECOMMENDED_KEYINT_SEC = 2  # divides the 20 s dataset chunk: chunks can start on keyframes
SCRIPT_NAME = "nm_timestamps.py"
SCRIPT_PLACEHOLDER = "@NM_SCRIPT_PATH@"
SCENES = {"linux": "linux_screen.json", "windows": "windows_game.json", "macos": "macos_screen.json"}

# Simple output mode encoder names (basic.ini SimpleOutput/RecEncoder, StreamEncoder)
_SIMPLE_ENCODERS = {
    "x264": ("h264", "obs_x264"), "x264_lowcpu": ("h264", "obs_x264"),
    "nvenc": ("h264", "jim_nvenc"), "nvenc_hevc": ("hevc", "jim_hevc_nvenc"),
    "nvenc_av1": ("av1", "jim_av1_nvenc"), "qsv": ("h264", "obs_qsv11"),
    "qsv_hevc": ("hevc", "obs_qsv11_hevc"), "qsv_av1": ("av1", "obs_qsv11_av1"),
    "amd": ("h264", "h264_texture_amf"), "amd_hevc": ("hevc", "h265_texture_amf"),
    "amd_av1": ("av1", "av1_texture_amf"), "apple_h264": ("h264", "com.apple.videotoolbox.videoencoder.ave.avc"),
    "apple_hevc": ("hevc", "com.apple.videotoolbox.videoencoder.ave.hevc"),
}


def encoder_codec(encoder_id: str | None) -> str | None:
    """Best guess of the codec ("h264", "hevc", "av1") an OBS encoder id produces."""
    if not encoder_id:
        return None
    e = encoder_id.lower()
    if e in _SIMPLE_ENCODERS:
        return _SIMPLE_ENCODERS[e][0]
    if "av1" in e:
        return "av1"
    if "hevc" in e or "h265" in e or "265" in e:
        return "hevc"
    if "264" in e or "avc" in e or e in ("jim_nvenc", "ffmpeg_nvenc", "obs_qsv11", "obs_qsv11_v2"):
        return "h264"
    return None


def _is_amf_or_qsv(encoder_id: str) -> bool:
    e = encoder_id.lower()
    return "amf" in e or "amd" in e or "qsv" in e


# ============================================================ live checks (websocket)

@dataclass
class Finding:
    """One result of the setup check. ``level``: "error" (anchors cannot be recorded as
    the session folder needs), "warning" (works, but worse), "info"."""

    level: str
    message: str
    fix: str | None = None  # what --configure-obs would change, in words


@dataclass
class RecordingSetup:
    """The current profile's recording settings as read over obs-websocket."""

    mode: str                     # "Simple" | "Advanced"
    format_key: str               # "RecFormat" (OBS 29) or "RecFormat2" (30+)
    rec_format: str | None
    output_kind: str              # "ffmpeg_muxer" | "ffmpeg_output"
    encoder: str | None           # OBS encoder id actually used for the recording
    codec: str | None
    bitrate_kbps: int | None      # configured CBR/VBR bitrate, None for CRF/CQP
    keyint_sec: int | None        # None: unknown / encoder default
    quality: str | None = None    # Simple: RecQuality
    simple_encoder: str | None = None   # Simple: the basic.ini encoder name ("x264", ...)
    use_advanced: bool = False    # Simple: SimpleOutput/UseAdvanced (custom x264 options on)
    x264_settings: str = ""       # Simple: SimpleOutput/x264Settings (custom x264 options)
    fps: tuple[int, int] | None = None  # (num, den) of OBS's video settings, if known


def _format_key(obs_version: str) -> str:
    from companion.capture.obsws import _version_tuple
    return "RecFormat2" if _version_tuple(obs_version)[0] >= 30 else "RecFormat"


def _truthy(v) -> bool:
    return str(v or "").strip().lower() in ("true", "1", "yes")


def read_recording_setup(client) -> RecordingSetup:
    """Read the recording settings of the current profile (no changes)."""
    g = client.get_profile_parameter
    mode = g("Output", "Mode") or "Simple"
    fkey = _format_key(client.version.obs_version)
    fps = None
    try:
        v = client.get_video_settings()
        if v.get("fpsNumerator") and v.get("fpsDenominator"):
            fps = (int(v["fpsNumerator"]), int(v["fpsDenominator"]))
    except Exception:
        fps = None
    if mode.lower() == "advanced":
        rec_type = g("AdvOut", "RecType") or "Standard"
        rec_format = g("AdvOut", fkey) or g("AdvOut", "RecFormat")
        rec_enc = g("AdvOut", "RecEncoder") or "none"
        enc = g("AdvOut", "Encoder") if rec_enc.lower() == "none" else rec_enc
        output_kind = "ffmpeg_output" if rec_type.lower() == "ffmpeg" else "ffmpeg_muxer"
        if output_kind == "ffmpeg_output":
            enc = g("AdvOut", "FFVEncoder") or enc
        return RecordingSetup("Advanced", fkey, rec_format, output_kind, enc,
                              encoder_codec(enc), None, None, fps=fps)
    quality = g("SimpleOutput", "RecQuality") or "Stream"
    rec_format = g("SimpleOutput", fkey) or g("SimpleOutput", "RecFormat")
    if quality == "Stream":
        name = g("SimpleOutput", "StreamEncoder") or "x264"
        try:
            bitrate = int(g("SimpleOutput", "VBitrate") or 0) or None
        except ValueError:
            bitrate = None
    else:
        name = g("SimpleOutput", "RecEncoder") or "x264"
        bitrate = None
    output_kind = "ffmpeg_output" if quality == "Lossless" else "ffmpeg_muxer"
    enc = _SIMPLE_ENCODERS.get(name, (None, name))[1]
    codec = "utvideo" if output_kind == "ffmpeg_output" else encoder_codec(name)
    x264s = g("SimpleOutput", "x264Settings") or ""
    keyint = None
    kf = x264_keyint(x264s)
    if quality == "Stream" and name == "x264" and _truthy(g("SimpleOutput", "UseAdvanced")) \
            and kf and fps:
        keyint = kf * fps[1] / fps[0]
        keyint = int(keyint) if keyint == int(keyint) else None
    return RecordingSetup("Simple", fkey, rec_format, output_kind, enc, codec, bitrate, keyint,
                          quality, simple_encoder=name,
                          use_advanced=_truthy(g("SimpleOutput", "UseAdvanced")),
                          x264_settings=x264s, fps=fps)


# -- Simple mode keyframe interval -------------------------------------------------
# OBS 29-31 Simple output mode has no keyframe-interval setting. Its recording encoders
# for the "Small"/"HQ"/"Indistinguishable" qualities get only CRF/CQP, preset and profile
# (x264: keyframe every 250 frames, x264's default), and ignore the custom options. With
# quality "Same as stream" the recording shares the streaming encoder, which - with x264
# and "Enable Advanced Encoder Settings" (SimpleOutput/UseAdvanced) - takes the custom x264
# options string (SimpleOutput/x264Settings) as x264 parameters, applied after OBS's own.
# So there, and only there, ``keyint=<frames>`` sets the interval; it is in frames, so
# it is RECOMMENDED_KEYINT_SEC * fps (OBS's own keyint_sec rounds the same way).

_KEYINT_RE = re.compile(r"(?:^|[\s:])keyint=(\d+)")


def x264_keyint(opts: str | None) -> int | None:
    """The ``keyint=N`` of an x264 options string (space or colon separated), or None."""
    m = _KEYINT_RE.search(opts or "")
    return int(m.group(1)) if m else None


def with_x264_keyint(opts: str | None, frames: int) -> str:
    """``opts`` with its ``keyint=`` set to ``frames`` (added if absent), other options kept."""
    opts = (opts or "").strip()
    if _KEYINT_RE.search(opts):
        return _KEYINT_RE.sub(lambda m: m.group(0)[:m.start(1) - m.start(0)] + str(frames), opts, count=1)
    return (opts + " " if opts else "") + f"keyint={frames}"


def keyint_frames(fps: tuple[int, int] | None, seconds: int = RECOMMENDED_KEYINT_SEC) -> int | None:
    """Frames in ``seconds`` at ``fps`` = (num, den), truncated as obs-x264 does."""
    if not fps or not fps[0] or not fps[1]:
        return None
    return seconds * fps[0] // fps[1]


def simple_keyint_configurable(s: RecordingSetup) -> bool:
    """Simple mode, the recording shares the x264 streaming encoder (quality "Same as
    stream"): the only Simple-mode setup where OBS takes a keyframe interval."""
    return (s.mode == "Simple" and s.output_kind == "ffmpeg_muxer" and s.quality == "Stream"
            and s.simple_encoder == "x264")


def assess_setup(s: RecordingSetup, obs_version: tuple[int, ...]) -> list[Finding]:
    """The setup check's decision table (pure): what keeps anchors from landing, and
    what --configure-obs would change. Rows: format (MKV or not); output (standard
    ``ffmpeg_muxer`` or FFmpeg output); codec x OBS version (H.264 always carries
    captions; HEVC and AV1 from OBS 30.2, kept as they are there; anything else never);
    AMD AMF / Intel QSV encoders; the keyframe interval (Simple mode: see
    :func:`simple_keyint_configurable`)."""
    out: list[Finding] = []
    version_str = ".".join(str(x) for x in obs_version)
    if (s.rec_format or "").lower() != "mkv":
        out.append(Finding(
            "error",
            f"OBS records {s.rec_format or 'an unknown format'}, not MKV: the session folder "
            f"needs an MKV (it survives a crash; an interrupted MP4/MOV is unreadable). "
            f"Set Settings > Output > Recording > Recording Format to 'Matroska Video (.mkv)'",
            fix=f"set {s.mode} recording format to mkv"))
    if s.output_kind == "ffmpeg_output":
        where = ("Recording Quality 'Lossless'" if s.mode == "Simple"
                 else "Recording Type 'Custom Output (FFmpeg)'")
        out.append(Finding(
            "warning",
            f"{where} records through OBS's FFmpeg output, which drops captions: anchors "
            f"will exist only in the sidecar file. Use the standard recording output",
            fix="use the standard recording output with x264"))
    codec = s.codec
    if codec and codec != "h264" and s.output_kind == "ffmpeg_muxer":
        if tuple(obs_version) < (30, 2) or codec not in ("hevc", "av1"):
            why = (f"OBS {version_str} attaches captions as H.264 SEI only"
                   if tuple(obs_version) < (30, 2) else
                   f"OBS {version_str} carries captions in H.264, HEVC and AV1 only")
            out.append(Finding(
                "warning",
                f"the recording encoder {s.encoder} makes {codec}; {why}, so captions will "
                f"not land (the sidecar still has the anchors). Use an H.264 encoder "
                f"(x264 or NVENC H.264)",
                fix="switch the recording encoder to x264"))
        else:
            out.append(Finding(
                "info",
                f"the recording encoder {s.encoder} makes {codec}: OBS {version_str} carries "
                f"captions in {codec} (HEVC SEI / AV1 metadata OBU, OBS 30.2+), so it is kept"))
    if s.encoder and _is_amf_or_qsv(s.encoder):
        out.append(Finding(
            "warning",
            f"the recording encoder {s.encoder} (AMD AMF / Intel QSV) marks every frame high "
            f"priority; without B-frames captions may never land (the sidecar still has "
            f"the anchors). x264 or NVENC is recommended",
            fix="switch the recording encoder to x264"))
    if s.mode == "Simple" and s.output_kind == "ffmpeg_muxer":
        want = keyint_frames(s.fps)
        if simple_keyint_configurable(s):
            have = x264_keyint(s.x264_settings) if s.use_advanced else None
            if have is None or (want is not None and have != want):
                out.append(Finding(
                    "info",
                    f"Simple output mode does not expose the keyframe interval as a setting; "
                    f"with Recording Quality 'Same as stream' and x264 it is the custom x264 "
                    f"option keyint=<frames>: {want or '2 s of'} frames ({RECOMMENDED_KEYINT_SEC} s) "
                    f"divides the {DATASET_CHUNK_SECONDS} s dataset chunks so every chunk is cut "
                    f"without re-encoding",
                    fix="set the custom x264 option keyint"))
        else:
            out.append(Finding(
                "info",
                f"Simple output mode does not expose the keyframe interval; with Recording "
                f"Quality '{s.quality}' and encoder {s.simple_encoder} OBS uses the encoder's "
                f"default (x264: 250 frames). A keyframe interval that divides the "
                f"{DATASET_CHUNK_SECONDS} s dataset chunks (e.g. {RECOMMENDED_KEYINT_SEC} s: "
                f"Advanced mode, or Simple with 'Same as stream' and x264) lets every chunk be "
                f"cut without re-encoding"))
    return out


def check_recording_setup(client) -> tuple[RecordingSetup, list[Finding]]:
    """Explain what about the current recording setup keeps anchors from landing."""
    s = read_recording_setup(client)
    return s, assess_setup(s, client.version.obs_tuple)


def configure_recording(client, profile_dir: Path | None = None) -> list[str]:
    """Apply the recommended recording settings to the current profile; return what was
    changed, in words. MKV format; the standard recording output; an H.264 encoder
    (x264) where the current one cannot carry captions (HEVC/AV1 encoders are kept on
    OBS 30.2+, which carries captions in them); the keyframe interval
    ``RECOMMENDED_KEYINT_SEC``:

    * Advanced mode: ``keyint_sec`` in the profile's recordEncoder.json (or
      streamEncoder.json when the recording uses the stream encoder) when
      ``profile_dir`` (the profile's folder) is given: OBS has no obs-websocket request
      for encoder settings, so without the folder it is left alone;
    * Simple mode: only with Recording Quality "Same as stream" and x264 (OBS's only
      Simple-mode path to a keyframe setting, see :func:`simple_keyint_configurable`):
      SimpleOutput/UseAdvanced=true and ``keyint=<frames>`` in SimpleOutput/x264Settings
      (other custom options kept), through obs-websocket. Other Simple qualities keep
      the encoder default; the setup check says so.

    The format is read by OBS at each recording start; encoder and output-type changes
    take effect after OBS re-creates its outputs (restart OBS, or open and OK the
    Settings dialog)."""
    s, findings = check_recording_setup(client)
    changed: list[str] = []
    set_ = client.set_profile_parameter
    sect = "AdvOut" if s.mode == "Advanced" else "SimpleOutput"
    if (s.rec_format or "").lower() != "mkv":
        set_(sect, s.format_key, "mkv")
        changed.append(f"{sect}/{s.format_key}: {s.rec_format} -> mkv")
    needs_encoder = any(f.fix == "switch the recording encoder to x264" for f in findings)
    if s.mode == "Simple":
        if s.output_kind == "ffmpeg_output" or (needs_encoder and s.quality == "Stream"):
            set_("SimpleOutput", "RecQuality", "Small")
            changed.append(f"SimpleOutput/RecQuality: {s.quality} -> Small (own x264 encoder)")
            set_("SimpleOutput", "RecEncoder", "x264")
            changed.append("SimpleOutput/RecEncoder -> x264")
        elif needs_encoder:
            set_("SimpleOutput", "RecEncoder", "x264")
            changed.append(f"SimpleOutput/RecEncoder: {s.encoder} -> x264")
        elif any(f.fix == "set the custom x264 option keyint" for f in findings):
            frames = keyint_frames(s.fps)
            if frames:
                if not s.use_advanced:
                    set_("SimpleOutput", "UseAdvanced", "true")
                    changed.append("SimpleOutput/UseAdvanced: false -> true (custom x264 options)")
                opts = with_x264_keyint(s.x264_settings, frames)
                set_("SimpleOutput", "x264Settings", opts)
                changed.append(f"SimpleOutput/x264Settings: {s.x264_settings!r} -> {opts!r} "
                               f"(keyframe every {RECOMMENDED_KEYINT_SEC} s)")
    else:
        if s.output_kind == "ffmpeg_output":
            set_("AdvOut", "RecType", "Standard")
            changed.append("AdvOut/RecType: FFmpeg -> Standard")
        if needs_encoder or s.output_kind == "ffmpeg_output":
            set_("AdvOut", "RecEncoder", "obs_x264")
            changed.append(f"AdvOut/RecEncoder: {s.encoder} -> obs_x264")
        if profile_dir is not None:
            rec_enc = client.get_profile_parameter("AdvOut", "RecEncoder") or "none"
            fname = "streamEncoder.json" if rec_enc.lower() == "none" else "recordEncoder.json"
            path = Path(profile_dir) / fname
            try:
                cur = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
            except (OSError, ValueError):
                cur = {}
            if not isinstance(cur, dict):
                cur = {}
            if cur.get("keyint_sec") != RECOMMENDED_KEYINT_SEC:
                backup_file(path)
                cur["keyint_sec"] = RECOMMENDED_KEYINT_SEC
                write_json_atomic(path, cur)
                changed.append(f"{fname}: keyint_sec -> {RECOMMENDED_KEYINT_SEC}")
    return changed


RESTART_NOTE = ("OBS applies encoder and output-type changes when it re-creates its outputs: "
                "restart OBS (or open Settings and press OK) before recording")


def needs_restart(changes: list[str]) -> bool:
    """True if any change (from :func:`configure_recording`) only takes effect after OBS
    re-creates its outputs: everything except the format and Simple mode's custom x264
    options, which OBS reads at each recording start (checked on OBS 29 in
    tests/test_obs_config.py)."""
    return any(not c.startswith(("SimpleOutput/RecFormat", "AdvOut/RecFormat",
                                 "SimpleOutput/x264Settings", "SimpleOutput/UseAdvanced"))
               for c in changes)


LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")


def current_profile_dir(client, obs_config_dir: Path | None = None) -> Path | None:
    """The folder of OBS's current profile: in ``obs_config_dir`` if given, else (when
    OBS runs on this machine) in the default OBS config folder; None if not found."""
    if obs_config_dir is None:
        if client.host not in LOCAL_HOSTS:
            return None
        obs_config_dir = find_obs_config_dir()
        if obs_config_dir is None:
            return None
    try:
        name = client.request("GetProfileList").get("currentProfileName")
    except Exception:
        return None
    return find_profile_dir(Path(obs_config_dir), name) if name else None


def find_profile_dir(obs_config_dir: Path, profile_name: str) -> Path | None:
    """The folder of the profile called ``profile_name`` (basic.ini ``[General] Name``)."""
    root = Path(obs_config_dir) / "basic" / "profiles"
    if not root.is_dir():
        return None
    for d in sorted(root.iterdir()):
        ini = d / "basic.ini"
        try:
            text = ini.read_text(encoding="utf-8-sig")
        except OSError:
            continue
        if ini_get(text, "General", "Name") == profile_name:
            return d
    return None


# ============================================================ OBS config folders

def default_obs_config_dirs(platform: str | None = None) -> list[Path]:
    """Candidate OBS config folders for this OS, most likely first."""
    plat = platform or sys.platform
    home = Path.home()
    if plat.startswith("win"):
        appdata = os.environ.get("APPDATA") or str(home / "AppData" / "Roaming")
        return [Path(appdata) / "obs-studio"]
    if plat == "darwin" or plat == "macos":
        return [home / "Library" / "Application Support" / "obs-studio"]
    xdg = os.environ.get("XDG_CONFIG_HOME") or str(home / ".config")
    return [Path(xdg) / "obs-studio",
            home / ".var" / "app" / "com.obsproject.Studio" / "config" / "obs-studio"]


def find_obs_config_dir() -> Path | None:
    """The first existing default OBS config folder, or None."""
    for d in default_obs_config_dirs():
        if d.is_dir():
            return d
    return None


# ============================================================ INI editing (line based)

_SECTION_RE = re.compile(r"^\s*\[(.+?)\]\s*$")


def ini_get(text: str, section: str, key: str) -> str | None:
    """Value of ``key`` in ``[section]`` of OBS-style INI text (no interpolation)."""
    cur = None
    for line in text.splitlines():
        m = _SECTION_RE.match(line)
        if m:
            cur = m.group(1)
            continue
        if cur == section and "=" in line:
            k, v = line.split("=", 1)
            if k.strip() == key:
                return v.strip()
    return None


def ini_set(text: str, section: str, values: dict[str, str]) -> str:
    """Set ``key=value`` pairs in ``[section]``, keeping every other line as it was
    (OBS writes ``key=value`` without spaces; so does this). Adds the section if absent."""
    lines = text.splitlines()
    remaining = dict(values)
    out: list[str] = []
    cur = None
    sec_end = None  # index in `out` after the last line of the target section
    for line in lines:
        m = _SECTION_RE.match(line)
        if m:
            if cur == section:
                sec_end = len(out)
            cur = m.group(1)
            out.append(line)
            continue
        if cur == section and "=" in line:
            k = line.split("=", 1)[0].strip()
            if k in remaining:
                out.append(f"{k}={remaining.pop(k)}")
                continue
        out.append(line)
    if cur == section:
        sec_end = len(out)
    if remaining:
        new = [f"{k}={v}" for k, v in remaining.items()]
        if sec_end is None:
            if out and out[-1].strip():
                out.append("")
            out.append(f"[{section}]")
            out.extend(new)
        else:
            while sec_end > 0 and not out[sec_end - 1].strip():
                sec_end -= 1
            out[sec_end:sec_end] = new
    return "\n".join(out) + "\n"


# ============================================================ setup-obs

def backup_file(path: Path, stamp: str | None = None) -> Path | None:
    """Copy ``path`` to ``<path>.<stamp>.bak`` (stamp YYYYmmdd-HHMMSS) if it exists."""
    path = Path(path)
    if not path.exists():
        return None
    stamp = stamp or _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    bak = path.with_name(f"{path.name}.{stamp}.bak")
    n = 1
    while bak.exists():
        n += 1
        bak = path.with_name(f"{path.name}.{stamp}-{n}.bak")
    shutil.copy2(path, bak)
    return bak


@dataclass
class SetupResult:
    """What setup-obs did. Paths are absolute. Never holds the password."""

    config_dir: Path
    script_path: Path
    collection_name: str
    collection_path: Path
    websocket_port: int
    password_source: str            # "given", "kept existing", "generated"
    written: list[Path] = field(default_factory=list)
    backups: list[Path] = field(default_factory=list)
    password_saved_to: Path | None = None


def _script_source() -> Path:
    ref = resources.files("obs_script").joinpath(SCRIPT_NAME)
    p = Path(str(ref))
    if not p.is_file():
        raise EnvProblem(f"the OBS script {SCRIPT_NAME} is missing from the installed package")
    return p


def load_scene_template(scene: str) -> dict:
    """The scene collection template ``scene`` ("linux", "windows", "macos")."""
    if scene not in SCENES:
        raise BadInput(f"unknown scene {scene!r}: choose one of {', '.join(SCENES)}")
    text = resources.files("scenes").joinpath(SCENES[scene]).read_text(encoding="utf-8")
    return json.loads(text)


def collection_file_stem(name: str) -> str:
    """OBS's file name for a scene collection name (spaces and unsafe chars -> '_')."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", name.strip()) or "NM"


def _write_changed(path: Path, data: bytes, result: SetupResult, stamp: str) -> None:
    old = path.read_bytes() if path.exists() else None
    if old == data:
        return
    if old is not None:
        b = backup_file(path, stamp)
        if b:
            result.backups.append(b)
    from companion.util.atomic import write_bytes_atomic
    write_bytes_atomic(path, data)
    result.written.append(path)


def obs_running_with(config_dir: Path) -> bool:
    """Best effort (Linux): is an OBS process running whose HOME holds ``config_dir``?"""
    if not sys.platform.startswith("linux"):
        return False
    target = str(Path(config_dir).resolve())
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            comm = (d / "comm").read_text().strip()
            if comm != "obs":
                continue
            env = (d / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        home = next((e[5:].decode(errors="replace") for e in env if e.startswith(b"HOME=")), None)
        xdg = next((e[16:].decode(errors="replace") for e in env if e.startswith(b"XDG_CONFIG_HOME=")), None)
        base = Path(xdg) if xdg else (Path(home) / ".config" if home else None)
        if base is not None and str((base / "obs-studio").resolve()) == target:
            return True
    return False


def setup_obs(config_dir: Path, scene: str = "linux", websocket_password: str | None = None,
              websocket_port: int = 4455, collection_name: str | None = None,
              activate: bool = True, force: bool = False) -> SetupResult:
    """Install the script + a scene collection and enable obs-websocket in ``config_dir``.

    ``websocket_password``: None keeps an existing password, else generates one.
    Raises BadInput/EnvProblem with one line on a bad folder or an OBS that is running
    on that folder (unless ``force``)."""
    config_dir = Path(config_dir).expanduser()
    if config_dir.exists() and not config_dir.is_dir():
        raise BadInput(f"{config_dir} is not a folder")
    if not force and obs_running_with(config_dir):
        raise EnvProblem(f"OBS is running with {config_dir}: quit OBS first (it overwrites its "
                         f"config when it exits), then run setup-obs again")
    if not (0 < int(websocket_port) < 65536):
        raise BadInput(f"invalid websocket port {websocket_port}")
    template = load_scene_template(scene)
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    try:
        config_dir.mkdir(parents=True, exist_ok=True)
        probe = config_dir / f".nm-write-test.{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise EnvProblem(f"cannot write to OBS config folder {config_dir}: {e.strerror}") from None

    name = collection_name or template.get("name") or "NM"
    stem = collection_file_stem(name)
    script_dst = (config_dir / "scripts" / SCRIPT_NAME).resolve()
    coll_path = config_dir / "basic" / "scenes" / f"{stem}.json"
    result = SetupResult(config_dir=config_dir.resolve(), script_path=script_dst,
                         collection_name=name, collection_path=coll_path.resolve(),
                         websocket_port=int(websocket_port), password_source="given")
    try:
        # 1. the script
        _write_changed(script_dst, _script_source().read_bytes(), result, stamp)
        # 2. the scene collection, with the script's absolute path
        template["name"] = name
        for entry in template.get("modules", {}).get("scripts-tool", []):
            if entry.get("path") in (SCRIPT_PLACEHOLDER, SCRIPT_NAME) or \
                    str(entry.get("path", "")).endswith("/" + SCRIPT_NAME):
                entry["path"] = script_dst.as_posix()
        _write_changed(coll_path, (json.dumps(template, indent=4) + "\n").encode(), result, stamp)

        # 3. global.ini: current collection + [OBSWebSocket]
        gpath = config_dir / "global.ini"
        gtext = gpath.read_text(encoding="utf-8-sig") if gpath.exists() else ""
        ws_json_path = config_dir / "plugin_config" / "obs-websocket" / "config.json"
        ws_json: dict = {}
        if ws_json_path.exists():
            try:
                ws_json = json.loads(ws_json_path.read_text(encoding="utf-8"))
                if not isinstance(ws_json, dict):
                    ws_json = {}
            except (OSError, ValueError):
                ws_json = {}
        password = websocket_password
        if password is None:
            password = ini_get(gtext, "OBSWebSocket", "ServerPassword") or ws_json.get("server_password")
            result.password_source = "kept existing" if password else "generated"
            if not password:
                password = secrets.token_urlsafe(18)
        if not password or any(c in password for c in "\r\n"):
            raise BadInput("the websocket password must be a non-empty single line")
        self_values = {"FirstLoad": "false", "ServerEnabled": "true",
                       "ServerPort": str(int(websocket_port)), "AlertsEnabled": "false",
                       "AuthRequired": "true", "ServerPassword": password}
        new_g = ini_set(gtext, "OBSWebSocket", self_values)
        if activate:
            new_g = ini_set(new_g, "Basic", {"SceneCollection": name, "SceneCollectionFile": stem})
        _write_changed(gpath, new_g.encode("utf-8"), result, stamp)
        ws_json.update({"first_load": False, "server_enabled": True,
                        "server_port": int(websocket_port), "alerts_enabled": False,
                        "auth_required": True, "server_password": password})
        _write_changed(ws_json_path, (json.dumps(ws_json, indent=4) + "\n").encode(), result, stamp)
        for p in (gpath, ws_json_path):
            try:
                os.chmod(p, 0o600)  # they hold the websocket password
            except OSError:
                pass
    except OSError as e:
        raise EnvProblem(f"setup-obs could not write {getattr(e, 'filename', config_dir)}: "
                         f"{e.strerror}") from None
    result._password = password  # type: ignore[attr-defined]  # for save_password only
    return result


def save_password(result: SetupResult, config_path: Path, host: str = "localhost") -> Path:
    """Store the websocket port/password in the companion's config file (mode 0600) so
    ``nm-companion start`` finds them. Keeps the file's other keys."""
    password = getattr(result, "_password", None)
    if not password:
        raise OBSProblem("no password to save")
    cfg: dict = {}
    if config_path.exists():
        try:
            cfg = json.loads(config_path.read_text(encoding="utf-8"))
            if not isinstance(cfg, dict):
                cfg = {}
        except (OSError, ValueError):
            cfg = {}
    new = dict(cfg)
    new.update({"host": cfg.get("host", host), "port": result.websocket_port, "password": password})
    if new == cfg and config_path.exists():
        result.password_saved_to = config_path
        return config_path
    cfg = new
    if config_path.exists():
        b = backup_file(config_path)
        if b:
            result.backups.append(b)
    config_path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(config_path, json.dumps(cfg, indent=2) + "\n")
    os.chmod(config_path, 0o600)
    result.password_saved_to = config_path
    return config_path
