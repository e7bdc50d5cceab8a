"""nm-align end to end on timing cases the OBS fixtures do not have.

- Clock drift: a generated 12 s 30 fps MKV (FFmpeg) with a sidecar whose clock pairs say
  the wall clock runs 50 ppm fast against OBS's clock (with an NTP-style jitter of a few
  µs): the frames' epoch times, clock_drift_ppm and the fit residuals in metadata.json
  follow from the pairs. (The anchors are generated: the drift of a real clock over a
  test's seconds is too small to measure.)
- The low-confidence fallback (no captions, no sidecar) across a pause: the real OBS
  recording with a 1 s pause (tests/fixtures), captions stripped, and the companion's
  recording.started / paused / resumed markers at the frames' true times: frames after
  the pause keep their time instead of landing a pause earlier.
"""
from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pyarrow.parquet as pq

from companion.align.session import align_session
from tests.test_align_session import MKV, SIDECAR, expected_frame_times, line, write_events

M0 = 700_000_000_000
E0 = 1_790_000_000_000_000_000
I30 = 33_333_333
PPM = 50


def test_clock_drift_is_fitted_end_to_end(tmp_path):
    d = tmp_path / "drift"
    d.mkdir()
    mkv = d / "drift.mkv"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=160x120:rate=30",
                    "-frames:v", "360", "-c:v", "libx264", "-preset", "ultrafast", "-g", "30",
                    "-bf", "0", str(mkv)], check=True)
    rng = np.random.default_rng(7)
    rec = [{"kind": "header", "caption_version": 1, "recording_id": "DRIFT001", "fps_num": 30,
            "fps_den": 1, "interval_ns": I30, "output_width": 160, "output_height": 120},
           {"kind": "segment", "recording_id": "DRIFT001", "segment": 0, "pts_base": 0,
            "frame_ns": M0, "interval_ns": I30, "pause_offset_ns": 0}]
    jitter = rng.integers(-3000, 3000, size=13)
    for s in range(13):
        m = M0 + s * 1_000_000_000 + 123_456
        e = E0 + (m - M0) + (m - M0) * PPM // 1_000_000 + int(jitter[s])
        rec.append({"kind": "clock", "epoch_ns": e, "mono_ns": m})
    (d / "drift.anchors.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rec))
    frame_mono = M0 + np.arange(360, dtype=np.int64) * I30
    truth = E0 + (frame_mono - M0) + (frame_mono - M0) * PPM // 1_000_000
    write_events(d, "drift", [int(t) for t in truth])
    summary = align_session(mkv, progress=False)
    assert summary["confidence"] == "exact" and summary["anchor_source"] == "sidecar"
    al = json.loads((d / "metadata.json").read_text())
    assert abs(al["clock_drift_ppm"] - PPM) < 0.5   # 3 µs jitter over 12 s: ~0.25 ppm
    a = al["alignment"]
    assert a["clock_pairs"] == 13 and a["clock_drift_ppm"] == al["clock_drift_ppm"]
    assert 0 < a["clock_fit_residual_max_ns"] <= 6000 and 0 < a["clock_fit_residual_rms_ns"] <= 3000
    frames = pq.read_table(d / "frames.parquet")
    assert frames.column("mono_ns").to_pylist() == frame_mono.tolist()
    t = np.asarray(frames.column("t_ns").to_pylist(), dtype=np.int64)
    # the fit through jittered pairs: within the jitter of the true line, and the drift
    # shows as the 12 s span growing by 50 ppm (600 µs) beyond the monotonic span
    assert np.max(np.abs(t - truth)) < 3000
    assert abs((t[-1] - t[0]) - (frame_mono[-1] - frame_mono[0]) - 598_333) < 6000


def test_start_marker_fallback_places_frames_after_a_pause(tmp_path):
    ft = expected_frame_times()               # the true times, from the real sidecar
    pause_after = [r for r in map(json.loads, SIDECAR.read_text().splitlines())
                   if r["kind"] == "pause"][0]["frames_before"]            # 32 frames
    d = tmp_path / "bare"
    d.mkdir()
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(MKV), "-map", "0", "-c", "copy",
                    "-bsf:v", "filter_units=remove_types=6", str(d / "bare.mkv")], check=True)
    started, paused, resumed = ft[0], ft[pause_after - 1] + I30, ft[pause_after]
    markers = [line(started, "recorder", {"event": "recording.started"}),
               line(paused, "recorder", {"event": "recording.paused"}),
               line(resumed, "recorder", {"event": "recording.resumed"})]
    write_events(d, "bare", ft, extra_lines=markers)
    s = align_session(d / "bare.mkv", progress=False)
    assert s["anchor_source"] == "recording_start_marker" and s["confidence"] == "low"
    assert any("pause" in w for w in s["warnings"])
    t = pq.read_table(d / "frames.parquet").column("t_ns").to_pylist()
    # the container's millisecond timestamps are all the fallback has: within 1 ms
    err = np.abs(np.asarray(t) - np.asarray(ft))
    assert err.max() < 1_000_000, err
    assert json.loads((d / "metadata.json").read_text())["alignment"]["marker_pauses"] == 1
    # without the pause markers the frames after the pause land ~1 s early (what the
    # markers fix): the same recording and start marker, pause markers removed
    d2 = tmp_path / "nopause"
    d2.mkdir()
    shutil.copy(d / "bare.mkv", d2 / "nopause.mkv")
    write_events(d2, "nopause", ft, extra_lines=markers[:1])
    align_session(d2 / "nopause.mkv", progress=False)
    t2 = np.asarray(pq.read_table(d2 / "frames.parquet").column("t_ns").to_pylist())
    late = np.asarray(ft[pause_after:]) - t2[pause_after:]
    assert np.all(np.abs(late - (resumed - paused)) < 1_000_000)


def test_60fps_recording_through_nm_align_dataset_validates(tmp_path):
    """The committed 60 fps OBS recording (start race, a pause, B-frames reordered across
    it) through the whole command: chunks of exactly 60 frames at --chunk-seconds 1, the
    frames' times in every chunk's metadata, and nm-validate passes on both outputs."""
    import sys
    fix = MKV.parent
    d = tmp_path / "s60"
    d.mkdir()
    shutil.copy(fix / "obs29_h264_60fps_startrace.mkv", d / "s60.mkv")
    shutil.copy(fix / "obs29_h264_60fps_startrace.anchors.jsonl", d / "s60.anchors.jsonl")
    from companion.contract.sidecar import read_sidecar
    sc = read_sidecar(d / "s60.anchors.jsonl")
    t0 = sc.clocks[0].epoch_ns
    write_events(d, "s60", [t0 + k * 16_666_667 for k in range(240)])
    ds = tmp_path / "ds"
    r = subprocess.run([sys.executable, "-m", "companion.cli.align_cli", str(d / "s60.mkv"),
                        "--dataset", str(ds), "--chunk-seconds", "1", "--json"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    n = s["frames"]
    assert s["confidence"] == "exact" and any("start race" in w for w in s["warnings"])
    frames = pq.read_table(d / "frames.parquet")
    idx = pq.read_table(ds / "index.parquet").sort_by("chunk_id").to_pylist()
    assert [(c["start_frame"], c["end_frame"]) for c in idx] == \
        [(a, min(a + 60, n)) for a in range(0, n, 60)]
    t = frames.column("t_ns").to_pylist()
    for c in idx:
        assert c["start_t_ns"] == t[c["start_frame"]]
    for target in (d, ds):
        v = subprocess.run([sys.executable, "-m", "companion.cli.validate_cli", str(target)],
                           capture_output=True, text=True, timeout=300)
        assert v.returncode == 0, v.stdout + v.stderr
