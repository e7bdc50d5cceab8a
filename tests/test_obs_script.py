"""obs_script/nm_timestamps.py: its settings, one log line per recording, no work while
not recording, and per-recording frame counts.

Two kinds of test:

* ``test_real_obs_*`` start a real OBS 29 under Xvfb (companion/capture/headless.py) with
  the script loaded and its settings set in the scene collection, record through
  obs-websocket, and check what OBS wrote: the recording folder, OBS's own log, the
  captions demuxed from the MKV and the sidecar.
* The other tests run the script's recording logic OUTSIDE OBS with a stand-in
  ``obspython`` module (``FakeObs`` below: a frame clock advanced by hand, counters set
  by the test, a call log). They are pure-logic tests of the state machine and the
  settings plumbing; they do not prove anything about OBS itself, which is what the
  real-OBS tests are for.
"""
from __future__ import annotations

import importlib.util
import json
import re
import sys
import time
import types
from pathlib import Path

import pytest

from companion.capture.metadata import build_session_metadata, frame_counts
from tests.obs_harness import ObsInstance, obs_available

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "obs_script" / "nm_timestamps.py"
STALL_SCRIPT = REPO / "tests" / "obs_scripts" / "stall_first_recording.py"
INTERVAL = 33_333_333  # 30 fps


# ============================================================ stand-in obspython (pure logic)

class FakeObs(types.ModuleType):
    """Just enough of obspython for nm_timestamps.py, with every call logged."""

    LOG_INFO, LOG_WARNING = 300, 200
    OBS_FRONTEND_EVENT_RECORDING_STARTING = 5
    OBS_FRONTEND_EVENT_RECORDING_STARTED = 6
    OBS_FRONTEND_EVENT_RECORDING_STOPPING = 7
    OBS_FRONTEND_EVENT_RECORDING_STOPPED = 8
    OBS_FRONTEND_EVENT_EXIT = 17

    def __init__(self, tmp: Path):
        super().__init__("obspython")
        self.calls: list[str] = []
        self.logs: list[tuple[int, str]] = []
        self.captions: list[str] = []
        self.mono = 1_000_000_000_000
        self.frame_ns = self.mono
        self.active = False
        self.lagged = 0
        self.rendered = 0
        self.out_path = str(tmp / "rec.mkv")
        self.event_cb = None
        self.signals: dict[str, object] = {}
        self.output = object()
        self.enc_pause_offset = 0      # the video encoder's cumulative paused ns

    def __getattribute__(self, name):
        v = super().__getattribute__(name)
        if (name.startswith(("obs_", "os_", "signal_", "script_log", "video_"))
                and callable(v)):
            super().__getattribute__("calls").append(name)
        return v

    # clocks and counters
    def os_gettime_ns(self): return self.mono
    def obs_get_video_frame_time(self): return self.frame_ns
    def obs_get_frame_interval_ns(self): return INTERVAL
    def obs_get_lagged_frames(self): return self.lagged
    def obs_get_total_frames(self): return self.rendered
    def obs_get_version_string(self): return "29.0.2"
    def obs_video_info(self): return types.SimpleNamespace(fps_num=30, fps_den=1)
    def obs_get_video_info(self, vi): return True

    # output
    def obs_frontend_get_recording_output(self): return self.output
    def obs_output_active(self, o): return self.active
    def obs_output_release(self, o): pass
    def obs_output_get_total_frames(self, o): return 90
    def obs_output_get_frames_dropped(self, o): return 0
    def obs_output_get_width(self, o): return 320
    def obs_output_get_height(self, o): return 240
    def obs_output_get_settings(self, o): return {"path": self.out_path}
    def obs_output_get_video_encoder(self, o): return "enc"
    def obs_encoder_get_codec(self, e): return "h264"
    def obs_encoder_get_pause_offset(self, e): return self.enc_pause_offset
    def obs_output_get_signal_handler(self, o): return "handler"
    def obs_output_output_caption_text2(self, o, text, d): self.captions.append(text)
    def signal_handler_connect(self, h, name, cb): self.signals[name] = cb
    def signal_handler_disconnect(self, h, name, cb): self.signals.pop(name, None)

    # data / properties / frontend
    def obs_data_get_string(self, d, k): return d.get(k, "")
    def obs_data_get_bool(self, d, k): return d.get(k, d.get("default:" + k))
    def obs_data_get_double(self, d, k): return d.get(k, d.get("default:" + k))
    def obs_data_set_default_bool(self, d, k, v): d["default:" + k] = v
    def obs_data_set_default_double(self, d, k, v): d["default:" + k] = v
    def obs_data_release(self, d): pass
    def obs_properties_create(self): return []
    def obs_properties_add_bool(self, p, k, label): p.append(k)
    def obs_properties_add_float(self, p, k, label, lo, hi, step): p.append((k, lo, hi))
    def obs_frontend_add_event_callback(self, cb): self.event_cb = cb
    def script_log(self, level, msg): self.logs.append((level, msg))

    # driving
    def tick(self, script, n=1):
        for _ in range(n):
            self.mono += INTERVAL
            self.frame_ns += INTERVAL
            script.script_tick(INTERVAL / 1e9)

    def event(self, ev):
        self.event_cb(ev)

    def record(self, script, ticks=30, stopping=True):
        self.event(self.OBS_FRONTEND_EVENT_RECORDING_STARTING)
        self.tick(script, 2)                 # starting, output not active yet
        self.active = True
        self.tick(script, ticks)
        if stopping and "stopping" in self.signals:
            self.signals["stopping"](None)
        self.active = False
        self.event(self.OBS_FRONTEND_EVENT_RECORDING_STOPPED)


def load_script(tmp_path, settings=None):
    """A fresh copy of nm_timestamps.py bound to a FakeObs; ``settings`` as the Scripts
    dialog would save them (absent keys take the script's defaults)."""
    fake = FakeObs(tmp_path)
    sys.modules["obspython"] = fake
    try:
        spec = importlib.util.spec_from_file_location(f"nm_ts_{id(fake)}", SCRIPT)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    finally:
        del sys.modules["obspython"]
    data = dict(settings or {})
    mod.script_defaults(data)
    mod.script_load(data)
    return mod, fake


def rec_lines(logs):
    return [m for _, m in logs if m.startswith("nm_timestamps: recording ")]


def sidecar_records(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


# ---------------------------------------------------------------- settings

def test_settings_dialog_lists_each_setting_with_its_default(tmp_path):
    mod, fake = load_script(tmp_path)
    props = mod.script_properties()
    assert "enabled" in props and "captions" in props and "sidecar" in props
    assert ("clock_interval_s", 0.1, 60.0) in props
    assert mod.SETTINGS == {"enabled": True, "captions": True, "sidecar": True,
                            "clock_interval_s": 1.0}
    mod.script_update({"enabled": False, "captions": False, "sidecar": False,
                       "clock_interval_s": 0.0})
    assert mod.SETTINGS == {"enabled": False, "captions": False, "sidecar": False,
                            "clock_interval_s": 0.1}  # clamped to the dialog's minimum


def test_disabled_script_does_nothing_for_a_recording(tmp_path):
    mod, fake = load_script(tmp_path, {"enabled": False})
    fake.calls.clear()
    fake.record(mod)
    assert mod._rec is None
    assert fake.captions == [] and rec_lines(fake.logs) == []
    assert not list(tmp_path.glob("*.anchors.jsonl"))
    assert fake.calls == [], fake.calls   # not one OBS call per tick while disabled


def test_no_obs_calls_while_not_recording(tmp_path):
    mod, fake = load_script(tmp_path)
    fake.calls.clear()
    fake.tick(mod, 100)
    assert fake.calls == []
    fake.record(mod, ticks=10)
    fake.calls.clear()
    fake.tick(mod, 100)          # after the recording stopped
    assert fake.calls == []


def test_sidecar_off_writes_no_file_and_captions_off_sends_none(tmp_path):
    mod, fake = load_script(tmp_path, {"sidecar": False})
    fake.record(mod)
    assert not list(tmp_path.glob("*.anchors.jsonl"))
    assert fake.captions and fake.captions[0].startswith("NM1 A ")
    assert rec_lines(fake.logs)[0].endswith("sidecar off")
    mod2, fake2 = load_script(tmp_path / "x", {"captions": False})
    (tmp_path / "x").mkdir()
    fake2.record(mod2)
    assert fake2.captions == []
    kinds = [r["kind"] for r in sidecar_records(tmp_path / "x" / "rec.anchors.jsonl")]
    assert kinds[:2] == ["header", "segment"] and kinds[-1] == "stop"


def test_one_log_line_per_recording(tmp_path):
    mod, fake = load_script(tmp_path)
    for _ in range(3):
        fake.record(mod, ticks=15)
    lines = rec_lines(fake.logs)
    assert len(lines) == 3, fake.logs
    assert len({ln.split()[2] for ln in lines}) == 3   # a new recording id each time
    mod.script_unload()                                 # nothing running: no extra line
    assert len(rec_lines(fake.logs)) == 3


@pytest.mark.parametrize("interval_s", [0.3, 1.0, 2.5])
def test_clock_pairs_follow_the_interval_setting(tmp_path, interval_s):
    mod, fake = load_script(tmp_path, {"clock_interval_s": interval_s})
    fake.record(mod, ticks=300)   # 10 s at 30 fps
    monos = [r["mono_ns"] for r in sidecar_records(tmp_path / "rec.anchors.jsonl")
             if r["kind"] == "clock"]
    gaps = [b - a for a, b in zip(monos, monos[1:])]
    assert gaps and all(interval_s * 1e9 <= g < interval_s * 1e9 + INTERVAL for g in gaps), gaps
    # a pair at the start, then one per interval rounded up to the next tick
    span = 299 * INTERVAL / 1e9   # first active tick to the last
    assert int(span / (interval_s + INTERVAL / 1e9)) <= len(monos) - 1 <= span / interval_s


def test_stop_record_counts_only_this_recordings_frames(tmp_path):
    mod, fake = load_script(tmp_path)
    fake.lagged, fake.rendered = 500, 90_000       # OBS has been running a while
    fake.event(fake.OBS_FRONTEND_EVENT_RECORDING_STARTING)
    fake.active = True
    fake.tick(mod)                                 # first active tick: counters read
    fake.lagged += 7
    fake.rendered += 100
    fake.signals["stopping"](None)
    # the handler itself only remembers the time: a write or counter read there would
    # delay the stop time OBS reads right after it (and the frames its muxer keeps)
    assert [r["kind"] for r in sidecar_records(tmp_path / "rec.anchors.jsonl")].count("stopping") == 0
    fake.tick(mod)                                 # the next frame: record and counters
    stopping = [r for r in sidecar_records(tmp_path / "rec.anchors.jsonl") if r["kind"] == "stopping"]
    assert len(stopping) == 1 and stopping[0]["signal_mono_ns"] == fake.mono - INTERVAL
    fake.lagged += 3                               # after the stop time: not this recording's
    fake.tick(mod)
    fake.active = False
    fake.event(fake.OBS_FRONTEND_EVENT_RECORDING_STOPPED)
    stop = sidecar_records(tmp_path / "rec.anchors.jsonl")[-1]
    assert stop["kind"] == "stop"
    assert stop["recording_lagged_frames"] == 7 and stop["recording_rendered_frames"] == 100
    assert stop["recording_output_dropped_frames"] == 0
    assert stop["counters_end_at"] == "stopping"
    assert stop["lagged_frames"] == 510            # OBS's lifetime total, kept as before
    assert " 7 lagged" in rec_lines(fake.logs)[0]
    # no stopping signal (output failed): counted up to the stopped event instead
    fake.record(mod, ticks=5, stopping=False)
    stop2 = sidecar_records(tmp_path / "rec.anchors.jsonl")[-1]
    assert stop2["counters_end_at"] == "stopped" and stop2["recording_lagged_frames"] == 0


def test_segment_records_carry_obs_encoder_pause_offset(tmp_path):
    """Each segment record carries the video encoder's paused total as OBS counts it
    (read at the tick the record is written), beside the script's own pause_offset_ns."""
    mod, fake = load_script(tmp_path)
    fake.event(fake.OBS_FRONTEND_EVENT_RECORDING_STARTING)
    fake.active = True
    fake.tick(mod, 3)
    fake.signals["pause"](None)
    fake.tick(mod, 10)
    # OBS's own edges say the pause lasted 11 frames (the script will say 10 below:
    # as if its pause handler had run a frame late); the encoder holds OBS's number
    fake.enc_pause_offset = 11 * INTERVAL
    fake.signals["unpause"](None)
    fake.tick(mod, 3)
    fake.active = False
    fake.event(fake.OBS_FRONTEND_EVENT_RECORDING_STOPPED)
    segs = [r for r in sidecar_records(tmp_path / "rec.anchors.jsonl") if r["kind"] == "segment"]
    assert [s["segment"] for s in segs] == [0, 1]
    assert segs[0]["obs_pause_offset_ns"] == 0
    assert segs[1]["obs_pause_offset_ns"] == 11 * INTERVAL
    assert segs[1]["pause_offset_ns"] == 10 * INTERVAL
    hdr = sidecar_records(tmp_path / "rec.anchors.jsonl")[0]
    assert hdr["script_version"] == mod.SCRIPT_VERSION
    # an OBS without obs_encoder_get_pause_offset: the field is left out, nothing fails
    del FakeObs.obs_encoder_get_pause_offset
    try:
        fake.record(mod, ticks=5)
    finally:
        FakeObs.obs_encoder_get_pause_offset = lambda self, e: self.enc_pause_offset
    segs = [r for r in sidecar_records(tmp_path / "rec.anchors.jsonl") if r["kind"] == "segment"]
    assert "obs_pause_offset_ns" not in segs[-1]


# ---------------------------------------------------------------- metadata.json counts

def test_metadata_frame_counts_name_their_source():
    d, lag, src = frame_counts({"recording_lagged_frames": 3, "lagged_frames": 900},
                               {"outputSkippedFrames": 2, "renderSkippedFrames": 900})
    assert (d, lag) == (2, 3)
    assert "lagged_frames: obs script sidecar, this recording" in src
    assert "dropped_frames: obs-websocket GetStats outputSkippedFrames" in src
    d, lag, src = frame_counts({"lagged_frames": 900}, None)   # script 1.0.0 sidecar
    assert (d, lag) == (None, 900) and "lifetime total" in src
    d, lag, src = frame_counts(None, {"outputSkippedFrames": 1, "renderSkippedFrames": 40})
    assert (d, lag) == (1, 40) and "renderSkippedFrames, OBS lifetime total" in src
    assert frame_counts(None, None) == (None, None, None)


# ============================================================ real OBS 29



def _wait_log(obs, pattern, n, timeout=15.0):
    deadline = time.monotonic() + timeout
    while True:
        found = re.findall(pattern, obs.log_text(), re.M)
        if len(found) >= n or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def _wait_stop_record(sidecar, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sidecar.exists() and '"kind":"stop"' in sidecar.read_text():
            break
        time.sleep(0.1)
    return sidecar_records(sidecar)


REC_LINE = r"nm_timestamps: recording ([0-9A-F]{8}): .*sidecar (.*)$"


@pytest.mark.obs
@pytest.mark.skipif(not obs_available(), reason="needs obs-studio and Xvfb")
def test_real_obs_sidecar_off_clock_interval_and_log_lines(tmp_path):
    """Sidecar off, clock pairs every 0.3 s: two recordings in one OBS leave no sidecar,
    exactly one nm_timestamps line each in OBS's log, and caption clock pairs 0.3 s apart."""
    from companion.align.demux import scan_video
    from companion.contract.captions import ClockPair, SegmentAnchor, decode_caption
    settings = {"sidecar": False, "clock_interval_s": 0.3}
    with ObsInstance(tmp_path, fps_num=30, script_settings=settings) as obs:
        mkvs = [obs.record(wait_sidecar=False, seconds=3.0), obs.record(wait_sidecar=False, seconds=2.0)]
        lines = _wait_log(obs, REC_LINE, 2)
        time.sleep(1.0)
        lines = re.findall(REC_LINE, obs.log_text(), re.M)
        log = obs.log_text()
    assert len(lines) == 2, lines                      # one line per recording, no more
    assert all(sidecar == "off" for _, sidecar in lines)
    assert lines[0][0] != lines[1][0]
    assert not list(obs.record_dir.glob("*.anchors.jsonl"))
    assert "cannot write sidecar" not in log
    for mkv, (rec_id, _s) in zip(mkvs, lines):
        assert mkv.exists()
        recs = [decode_caption(t) for _, t in scan_video(mkv).captions]
        assert any(isinstance(r, SegmentAnchor) and r.recording_id == rec_id for r in recs)
        monos = sorted(r.mono_ns for r in recs if isinstance(r, ClockPair) and r.recording_id == rec_id)
        gaps = [(b - a) / 1e9 for a, b in zip(monos, monos[1:])]
        # pending captions are freed at stop, so the last second's pairs may be missing
        assert len(monos) >= 4, monos
        assert min(gaps) >= 0.3, gaps                  # never sooner than the setting
        assert sorted(gaps)[len(gaps) // 2] < 0.3 + 2 * INTERVAL / 1e9, gaps  # not 1 s


def _obs_output_frame_logs(log):
    """Per recording, from OBS's own stop log of the recording output: (drawn, lagged)."""
    out = []
    for m in re.finditer(r"Output '[^']*file_output': Total drawn frames: (\d+)(?: \((\d+) attempted\))?",
                         log):
        shown, attempted = int(m.group(1)), m.group(2)
        out.append((int(attempted) if attempted else shown,
                    int(attempted) - shown if attempted else 0))
    return out


@pytest.mark.obs
@pytest.mark.skipif(not obs_available(), reason="needs obs-studio and Xvfb")
def test_real_obs_two_recordings_count_their_own_lagged_frames(tmp_path):
    """Two recordings in one OBS; a test script stalls OBS's graphics thread during the
    first only. Each stop record's recording_lagged_frames matches OBS's own per-output
    count in its log, and the second's does not include the first's."""
    with ObsInstance(tmp_path, fps_num=30, extra_scripts=[(STALL_SCRIPT, {})]) as obs:
        stops, headers = [], []
        for secs in (3.0, 3.0):
            mkv = obs.record(wait_sidecar=False, seconds=secs)
            recs = _wait_stop_record(mkv.with_name(mkv.stem + ".anchors.jsonl"))
            stops.append(recs[-1])
            headers.append(recs[0])
        _wait_log(obs, r"file_output': Total drawn frames", 2)
        stats = obs.client().get_stats()   # after the second recording stopped
        obs_counts = _obs_output_frame_logs(obs.log_text())
    assert [s["kind"] for s in stops] == ["stop", "stop"]
    assert all(s["counters_end_at"] == "stopping" for s in stops)
    assert len(obs_counts) == 2, obs_counts
    first, second = stops
    lag1, lag2 = first["recording_lagged_frames"], second["recording_lagged_frames"]
    # a 0.25 s stall every 20 ticks at 30 fps in the first recording (~4 in 3 s): OBS
    # misses ~6 frames per stall
    assert lag1 >= 10, first
    assert lag2 < lag1 / 2, (lag1, lag2)               # not carried over from the first
    for stop, (drawn, lagged_obs) in zip(stops, obs_counts):
        # OBS's own per-output count spans from its output start (a few ms before the
        # script's first active tick) to the end of data capture (after the muxer drained,
        # ~0.5 s after "stopping"): it contains the script's span, and the stalls fall
        # inside both
        assert stop["recording_lagged_frames"] <= lagged_obs <= stop["recording_lagged_frames"] + 3, \
            (stop, lagged_obs)
        assert stop["recording_rendered_frames"] <= drawn, (stop, drawn)
        # render frames from the first recorded frame to the stop time = frames in the file
        assert abs(stop["recording_rendered_frames"] - stop["total_frames"]) <= 5, stop
        assert stop["recording_output_dropped_frames"] == 0
    # the old field is OBS's lifetime total: the second stop still includes the first's lag
    assert second["lagged_frames"] >= lag1 + lag2
    assert headers[1]["counters_at_start"]["lagged"] >= lag1
    # metadata.json takes this recording's count and says so
    md = build_session_metadata(
        session_id="s", started_epoch_ns=headers[1]["started_epoch_ns"], status="complete",
        end_reason="test", obs_version="29", obs_websocket_version="5", sidecar_stop=second,
        obs_stats={"outputSkippedFrames": stats.output_skipped_frames,
                   "renderSkippedFrames": stats.render_skipped_frames},
        consent=False, consent_source=None, record_audio=None, privacy={}, keyboard=False,
        mouse=False)
    assert md["lagged_frames"] == lag2
    assert stats.render_skipped_frames >= lag1 + lag2  # what the old code reported
    assert "this recording" in md["frame_counts_source"]
