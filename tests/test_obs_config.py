"""The recording-setup check and ``--configure-obs`` (companion/capture/obs_config.py).

* The decision table (:func:`assess_setup`) over output mode x encoder x OBS version is
  pure: tested as a function of a RecordingSetup and a version tuple.
* What --configure-obs writes for a Simple-mode profile is checked against a real OBS 29
  (headless, tests/obs_harness.py): the profile is changed through obs-websocket, read
  back from OBS and from basic.ini, and a recording made afterwards has its keyframes
  every 2 s (read from the MKV), where before it had x264's default.
* ``configure_recording``'s encoder switches for encoders OBS 29 on this machine does not
  have (AMF, QSV, HEVC) use ``DictClient``, a stand-in for the obs-websocket client backed
  by a dict of profile parameters: it tests our decisions, not OBS.
"""
from __future__ import annotations

import json
import types
from pathlib import Path

import av
import pytest

from companion.capture import obs_config
from companion.capture.obs_config import (RecordingSetup, assess_setup, configure_recording,
                                          keyint_frames, with_x264_keyint, x264_keyint)
from tests.obs_harness import ObsInstance, obs_available

X264_FIX = "switch the recording encoder to x264"


def setup(mode="Advanced", encoder="obs_x264", codec="h264", quality=None, kind="ffmpeg_muxer",
          fmt="mkv", simple_encoder=None, use_advanced=False, x264="", fps=(30, 1)):
    return RecordingSetup(mode, "RecFormat", fmt, kind, encoder, codec, None, None, quality,
                          simple_encoder=simple_encoder, use_advanced=use_advanced,
                          x264_settings=x264, fps=fps)


def levels(findings):
    return sorted((f.level, f.fix) for f in findings)


# ============================================================ decision table (pure)

# (encoder id, codec) x OBS version -> does the check ask for x264?
ENCODERS = [("obs_x264", "h264"), ("jim_nvenc", "h264"), ("jim_hevc_nvenc", "hevc"),
            ("jim_av1_nvenc", "av1"), ("h264_texture_amf", "h264"), ("h265_texture_amf", "hevc"),
            ("obs_qsv11", "h264"), ("obs_qsv11_av1", "av1"),
            ("com.apple.videotoolbox.videoencoder.ave.hevc", "hevc"),
            ("com.apple.videotoolbox.videoencoder.prores-xq", "prores")]


@pytest.mark.parametrize("version", [(29, 0, 2), (30, 1, 2), (30, 2, 0), (31, 0, 0)])
@pytest.mark.parametrize("encoder,codec", ENCODERS)
def test_decision_table_encoder_by_obs_version(encoder, codec, version):
    f = assess_setup(setup(encoder=encoder, codec=codec), version)
    amf_qsv = "amf" in encoder or "qsv" in encoder
    captions_codec = codec == "h264" or (version >= (30, 2) and codec in ("hevc", "av1"))
    wants_x264 = amf_qsv or not captions_codec
    assert any(x.fix == X264_FIX for x in f) == wants_x264, f
    assert not any(x.level == "error" for x in f)
    if codec in ("hevc", "av1") and version >= (30, 2):
        # kept: OBS 30.2+ carries captions in HEVC SEI / AV1 metadata OBUs
        assert any(x.level == "info" and "kept" in x.message for x in f), f
    if codec in ("hevc", "av1") and version < (30, 2):
        assert any("H.264 SEI only" in x.message for x in f), f
    if codec == "prores" and version >= (30, 2):
        assert any("H.264, HEVC and AV1 only" in x.message for x in f), f
    if amf_qsv:
        assert any("high priority" in x.message for x in f), f


@pytest.mark.parametrize("mode,kind,quality", [("Advanced", "ffmpeg_output", None),
                                               ("Simple", "ffmpeg_output", "Lossless")])
def test_decision_table_ffmpeg_output_drops_captions(mode, kind, quality):
    f = assess_setup(setup(mode=mode, kind=kind, quality=quality, simple_encoder="x264",
                           codec="utvideo" if mode == "Simple" else "h264"), (29, 0, 2))
    assert ("warning", "use the standard recording output with x264") in levels(f)


@pytest.mark.parametrize("fmt", ["mp4", "mov", "flv", None])
def test_decision_table_non_mkv_is_an_error(fmt):
    f = assess_setup(setup(fmt=fmt), (29, 0, 2))
    assert [x.level for x in f] == ["error"] and "not MKV" in f[0].message


@pytest.mark.parametrize("quality,enc,use_adv,x264,fix", [
    ("Stream", "x264", False, "", True),                    # keyint not set yet
    ("Stream", "x264", True, "keyint=250", True),           # wrong value
    ("Stream", "x264", True, "bframes=0 keyint=60", False),  # already right: no finding
    ("Stream", "x264", False, "keyint=60", True),            # opts ignored without UseAdvanced
    ("Small", "x264", False, "", False),                     # OBS has no setting: info only
    ("HQ", "x264", True, "keyint=60", False),                # custom opts unused in HQ
    ("Stream", "nvenc", False, "", False),
])
def test_decision_table_simple_mode_keyframe_interval(quality, enc, use_adv, x264, fix):
    s = setup(mode="Simple", quality=quality, simple_encoder=enc,
              encoder=obs_config._SIMPLE_ENCODERS[enc][1], use_advanced=use_adv, x264=x264)
    f = assess_setup(s, (29, 0, 2))
    assert any(x.fix == "set the custom x264 option keyint" for x in f) == fix, f
    if quality == "Stream" and enc == "x264" and not fix:
        assert f == []
    elif not fix:
        assert [x.level for x in f] == ["info"]
        assert "does not expose the keyframe interval" in f[0].message
        assert f"Quality '{quality}'" in f[0].message


def test_x264_keyint_option_editing():
    assert x264_keyint("keyint=60") == 60 and x264_keyint("ref=1:keyint=48") == 48
    assert x264_keyint("min-keyint=10") is None and x264_keyint("") is None
    assert with_x264_keyint("", 60) == "keyint=60"
    assert with_x264_keyint("bframes=0 keyint=250 ref=2", 60) == "bframes=0 keyint=60 ref=2"
    assert with_x264_keyint("min-keyint=5", 60) == "min-keyint=5 keyint=60"
    assert keyint_frames((30, 1)) == 60 and keyint_frames((60000, 1001)) == 119
    assert keyint_frames(None) is None


# ============================================================ configure_recording (stand-in client)

class DictClient:
    """Stand-in obs-websocket client: profile parameters in a dict (see module docstring)."""

    def __init__(self, params, version="29.0.2", fps=(30, 1)):
        self.params = dict(params)
        from companion.capture.obsws import _version_tuple
        self.version = types.SimpleNamespace(obs_version=version,
                                             obs_tuple=_version_tuple(version))
        self.fps = fps

    def get_profile_parameter(self, cat, name):
        return self.params.get(f"{cat}/{name}")

    def set_profile_parameter(self, cat, name, value):
        self.params[f"{cat}/{name}"] = value

    def get_video_settings(self):
        return {"fpsNumerator": self.fps[0], "fpsDenominator": self.fps[1]}


@pytest.mark.parametrize("version,enc,switch", [
    ("29.0.2", "amd_hevc", True), ("30.2.0", "amd_hevc", True),   # AMF: always
    ("29.0.2", "nvenc_hevc", True), ("30.2.0", "nvenc_hevc", False),  # HEVC kept on 30.2+
    ("31.0.0", "nvenc_av1", False), ("29.0.2", "qsv", True), ("29.0.2", "nvenc", False)])
def test_configure_simple_small_quality_switches_encoder_only_when_needed(version, enc, switch):
    c = DictClient({"Output/Mode": "Simple", "SimpleOutput/RecQuality": "Small",
                    "SimpleOutput/RecEncoder": enc, "SimpleOutput/RecFormat2": "mkv",
                    "SimpleOutput/RecFormat": "mkv"}, version=version)
    changes = configure_recording(c)
    assert (c.params["SimpleOutput/RecEncoder"] == "x264") == switch, changes
    assert c.params["SimpleOutput/RecQuality"] == "Small"
    assert "SimpleOutput/x264Settings" not in c.params   # Small quality has no keyint


def test_configure_advanced_hevc_kept_on_30_2_and_switched_on_29(tmp_path):
    for version, expect in (("30.2.0", "jim_hevc_nvenc"), ("29.0.2", "obs_x264")):
        c = DictClient({"Output/Mode": "Advanced", "AdvOut/RecEncoder": "jim_hevc_nvenc",
                        "AdvOut/RecFormat2": "mkv", "AdvOut/RecFormat": "mkv",
                        "AdvOut/RecType": "Standard"}, version=version)
        prof = tmp_path / version
        prof.mkdir()
        configure_recording(c, prof)
        assert c.params["AdvOut/RecEncoder"] == expect
        assert json.loads((prof / "recordEncoder.json").read_text())["keyint_sec"] == 2


# ============================================================ real OBS 29, Simple mode

class SimpleModeObs(ObsInstance):
    """The harness OBS with its profile in Simple output mode, recording quality "Same as
    stream" with x264, and a custom RTMP service (no service-recommended keyframe
    interval), so the stream encoder keeps x264's default keyframe interval."""

    def _seed_config(self):
        super()._seed_config()
        prof = self.home / ".config" / "obs-studio" / "basic" / "profiles" / "nm"
        ini = prof / "basic.ini"
        text = ini.read_text().replace("Mode=Advanced", "Mode=Simple")
        text = text.replace("[SimpleOutput]\n", "[SimpleOutput]\nStreamEncoder=x264\nVBitrate=1500\n")
        ini.write_text(text)
        (prof / "service.json").write_text(json.dumps(
            {"type": "rtmp_custom", "settings": {"server": "rtmp://127.0.0.1/live", "key": "k"}}))


def keyframe_indices(mkv: Path) -> list[int]:
    with av.open(str(mkv)) as c:
        v = c.streams.video[0]
        fps = v.average_rate or v.guessed_rate
        out = []
        for p in c.demux(v):
            if p.is_keyframe and p.pts is not None:
                out.append(round(float(p.pts * v.time_base * fps)))
    return sorted(out)




@pytest.mark.obs
@pytest.mark.skipif(not obs_available(), reason="needs obs-studio and Xvfb")
def test_real_obs_simple_mode_configure_sets_keyframe_interval(tmp_path):
    from companion.capture.obsws import connect
    with SimpleModeObs(tmp_path, fps_num=30) as obs:
        before = keyframe_indices(obs.record(wait_sidecar=False, seconds=5.0))
        c = connect("127.0.0.1", obs.port, obs.password, 10, events=False)
        try:
            s, findings = obs_config.check_recording_setup(c)
            assert (s.mode, s.quality, s.simple_encoder, s.codec) == ("Simple", "Stream", "x264", "h264")
            assert any(f.fix == "set the custom x264 option keyint" for f in findings), findings
            changes = configure_recording(c)
            assert any("x264Settings" in ch and "keyint=60" in ch for ch in changes), changes
            # OBS reads these at the next recording start: no restart (the recording
            # below, made without one, proves it)
            assert not obs_config.needs_restart(changes)
            # read back from OBS
            assert c.get_profile_parameter("SimpleOutput", "UseAdvanced") == "true"
            assert c.get_profile_parameter("SimpleOutput", "x264Settings") == "keyint=60"
            s2, findings2 = obs_config.check_recording_setup(c)
            assert not any(f.fix for f in findings2), findings2
            assert s2.keyint_sec == 2
            # a second run changes nothing
            assert configure_recording(c) == []
            # Small quality: OBS has no keyframe setting there; the check says so
            c.set_profile_parameter("SimpleOutput", "RecQuality", "Small")
            _, f3 = obs_config.check_recording_setup(c)
            assert [f.level for f in f3] == ["info"] and "Quality 'Small'" in f3[0].message
            c.set_profile_parameter("SimpleOutput", "RecQuality", "Stream")
        finally:
            c.close()
        after = keyframe_indices(obs.record(wait_sidecar=False, seconds=5.0))
        ini = (obs.home / ".config/obs-studio/basic/profiles/nm/basic.ini").read_text()
    assert obs_config.ini_get(ini, "SimpleOutput", "x264Settings") == "keyint=60"
    assert obs_config.ini_get(ini, "SimpleOutput", "UseAdvanced") == "true"
    # before: x264's default (250 frames) -> one keyframe in 5 s; after: every 60 frames
    assert before == [0], before
    assert len(after) >= 3 and all(b - a == 60 for a, b in zip(after, after[1:])), after


def test_needs_restart_only_for_changes_obs_reads_when_it_recreates_outputs():
    assert not obs_config.needs_restart(["AdvOut/RecFormat2: mp4 -> mkv"])
    assert not obs_config.needs_restart([
        "SimpleOutput/RecFormat: flv -> mkv",
        "SimpleOutput/UseAdvanced: false -> true (custom x264 options)",
        "SimpleOutput/x264Settings: '' -> 'keyint=60' (keyframe every 2 s)"])
    assert obs_config.needs_restart(["SimpleOutput/RecEncoder: amd -> x264"])
    assert obs_config.needs_restart(["recordEncoder.json: keyint_sec -> 2"])
