"""writer.py + layout.py: the seed 000 dataset layout written from real generated videos."""
from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import time
import wave
import zlib
from pathlib import Path

import av
import numpy as np
import pyarrow.parquet as pq
import pytest

from companion.contract.metadata import validate_json
from companion.contract.schemas import (ACTIONS_PROCESSED_SCHEMA, ACTIONS_RAW_SCHEMA,
                                        CHUNK_INDEX_SCHEMA)
from companion.contract.version import FORMAT_VERSION
from companion.dataset.layout import (DEFAULT_NUM_SHARDS, chunk_name, ensure_dataset, shard_of,
                                      validate_video_id)
from companion.dataset.writer import rebuild_index, recover, remove_video, write_dataset
from companion.util.errors import BadInput
from companion.util.progress import Progress
from tests.test_dataset_media import (decode_numbers, events_table, frames_table, make_video,
                                      scan)

REPO = Path(__file__).resolve().parents[1]
MS = 1_000_000


def _session(tmp_path, name="rec", n=95, gop=10, bframes=3, audio="pcm"):
    src = tmp_path / f"{name}.mkv"
    make_video(src, n, gop=gop, bframes=bframes, audio=audio)
    sc = scan(src)
    frames = frames_table(sc)
    ft = frames.column("t_ns").to_numpy()
    ft = np.concatenate([ft, ft[-1] + 33_333_333 * np.arange(1, 100)])  # times past the end
    rows = [dict(t_ns=int(ft[5]) + MS, event_type="key_down", source="keyboard",
                 state="pressed", key_code=87, key="w", code="KeyW"),
            dict(t_ns=int(ft[40]) + 2 * MS, event_type="key_up", source="keyboard",
                 state="released", key_code=87, key="w", code="KeyW"),
            dict(t_ns=int(ft[61]), event_type="mouse_move", source="mouse",
                 mouse_x_px=64.0, mouse_y_px=32.0, mouse_x_norm=0.5, mouse_y_norm=0.5)]
    events = events_table(rows, ft[:n], session_id=name)
    meta = {"session_id": name, "input_device": "keyboard+mouse", "clock_drift_ppm": 1.5,
            "alignment": {"anchor_source": "captions", "confidence": "high"}}
    return sc, frames, events, meta


def _tree(root: Path) -> dict[str, str]:
    """Relative path -> sha256 of every visible file under root."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if p.is_file() and not any(part.startswith(".") for part in rel.parts):
            out[rel.as_posix()] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def test_layout_files_content_and_metadata(tmp_path):
    sc, frames, events, meta = _session(tmp_path)
    root = tmp_path / "ds"
    buf = io.StringIO()
    prog = Progress("dataset", stream=buf)
    summary = write_dataset(root, "rec", sc, frames, events, meta, chunk_seconds=1.0,
                            progress=prog)
    assert prog.total == 4 and prog.done == 4
    shard = f"SHARD_{zlib.crc32(b'rec') % DEFAULT_NUM_SHARDS:04d}"
    assert summary["shard"] == shard and summary["chunks"] == 4 and summary["copied"] == 4
    assert summary["events"] == 3 and summary["audio"] is True

    ds = json.loads((root / "dataset.json").read_text())
    assert ds["format_version"] == FORMAT_VERSION and ds["num_shards"] == DEFAULT_NUM_SHARDS
    assert validate_json(ds, "dataset") == []

    index = pq.read_table(root / "index.parquet")
    assert index.schema.equals(CHUNK_INDEX_SCHEMA, check_metadata=False)
    rows = index.to_pylist()
    assert [(r["chunk_id"], r["start_frame"], r["end_frame"]) for r in rows] == [
        (0, 0, 30), (1, 30, 60), (2, 60, 90), (3, 90, 95)]
    ft = frames.column("t_ns").to_numpy()
    for r in rows:
        c = r["chunk_id"]
        name = chunk_name("rec", c)
        assert r["video_path"] == f"video/{shard}/rec/{name}.mp4"
        assert r["audio_path"] == f"audio/{shard}/rec/{name}.wav"
        assert r["actions_dir"] == f"actions/{shard}/rec/{name}"
        assert r["start_t_ns"] == ft[r["start_frame"]]
        nums, _ = decode_numbers(root / r["video_path"])
        assert nums == list(range(r["start_frame"], r["end_frame"]))
        with wave.open(str(root / r["audio_path"])) as w:
            assert w.getframerate() == 48000 and w.getnchannels() == 2
        adir = root / r["actions_dir"]
        raw = pq.read_table(adir / "actions_raw.parquet")
        proc = pq.read_table(adir / "actions_processed.parquet")
        assert raw.schema.equals(ACTIONS_RAW_SCHEMA, check_metadata=False)
        assert proc.schema.equals(ACTIONS_PROCESSED_SCHEMA, check_metadata=False)
        assert raw.num_rows == r["n_events"]
        m = json.loads((adir / "metadata.json").read_text())
        assert validate_json(m, "chunk_metadata") == []
        ov = m["original_video"]
        assert m["uuid"] == f"{name}_actions" and m["chunk_id"] == f"{c:04d}"
        assert m["chunk_size"] == r["end_frame"] - r["start_frame"]
        assert ov["resolution"] == [64, 128] and (ov["width"], ov["height"]) == (128, 64)
        assert ov["url"] == r["video_path"] and ov["fps"] == 30.0
        assert (ov["start_frame"], ov["end_frame"]) == (r["start_frame"], r["end_frame"])
        assert ov["start_time"] == pytest.approx(sc.pts[r["start_frame"]] / 1000)
        assert m["modality_config"]["audio"] == {"enabled": True, "channels": 2,
                                                 "sample_rate": 48000}
        assert m["modality_config"]["keyboard"]["enabled"] is True
        assert m["bbox_game_area"] == {"xtl": 0.0, "ytl": 0.0, "xbr": 1.0, "ybr": 1.0}
        assert m["sync"]["clock_drift_ppm"] == 1.5 and m["video"]["cut"] == "copy"
        assert m["t_ns"]["start"] == r["start_t_ns"] and m["t_ns"]["end"] == r["end_t_ns"]
        assert m["timing"] == {"segments": [0], "frame_slots_missing": 0}
    # the key held from chunk 0 into chunk 1 is a 'held' row at the start of chunk 1
    p1 = pq.read_table(root / rows[1]["actions_dir"] / "actions_processed.parquet").to_pylist()
    assert (p1[0]["state"], p1[0]["code"], p1[0]["timestamp_ms"]) == ("held", "KeyW", 0)
    assert (p1[1]["event_type"], p1[1]["frame_idx"]) == ("keyup", 10)
    # nothing left in the work areas
    assert list((root / ".staging").iterdir()) == []


def test_rerun_replaces_chunks_and_removes_stale_ones(tmp_path):
    sc, frames, events, meta = _session(tmp_path)
    root = tmp_path / "ds"
    write_dataset(root, "rec", sc, frames, events, meta, chunk_seconds=1.0)
    before = _tree(root)
    assert sum("rec_chunk_0003" in k for k in before) == 5   # mp4, wav, 2 parquet, json
    write_dataset(root, "rec", sc, frames, events, meta, chunk_seconds=2.0)
    after = _tree(root)
    assert not any("rec_chunk_0002" in k or "rec_chunk_0003" in k for k in after)
    idx = pq.read_table(root / "index.parquet").to_pylist()
    assert [(r["start_frame"], r["end_frame"]) for r in idx] == [(0, 60), (60, 95)]
    # same input again: byte-identical media and actions (idempotent)
    write_dataset(root, "rec", sc, frames, events, meta, chunk_seconds=2.0)
    again = _tree(root)
    same = [k for k in after if k.endswith((".mp4", ".wav", ".parquet"))]
    assert same and all(after[k] == again[k] for k in same)


def test_rerun_without_audio_removes_the_audio_folder(tmp_path):
    sc, frames, events, meta = _session(tmp_path, audio="pcm")
    root = tmp_path / "ds"
    write_dataset(root, "rec", sc, frames, events, meta, chunk_seconds=1.0)
    assert any(k.startswith("audio/") for k in _tree(root))
    sc2, frames2, _, _ = _session(tmp_path / "x" if (tmp_path / "x").mkdir() is None else
                                  tmp_path, audio=None)
    write_dataset(root, "rec", sc2, frames2, events, meta, chunk_seconds=1.0)
    assert not any(k.startswith("audio/") for k in _tree(root))
    assert all(r["audio_path"] is None for r in pq.read_table(root / "index.parquet").to_pylist())


def test_failure_midway_leaves_the_previous_state(tmp_path):
    """A video that breaks while its chunks are being cut (truncated after the scan) must
    leave the dataset exactly as it was, with no partial chunk anywhere."""
    sc, frames, events, meta = _session(tmp_path, gop=45)    # re-encoded chunks
    root = tmp_path / "ds"
    s = write_dataset(root, "rec", sc, frames, events, meta, chunk_seconds=1.0)
    assert (s["copied"], s["reencoded"]) == (1, 3)
    m = json.loads((root / pq.read_table(root / "index.parquet").column("actions_dir")[0]
                    .as_py() / "metadata.json").read_text())
    assert m["video"] == {"path": m["original_video"]["url"], "cut": "reencode",
                          "reencode_reason": "frame 30 (first of the next chunk) is not a "
                                             "keyframe; whole chunk re-encoded: no complete "
                                             "GOP inside the chunk"}
    assert decode_numbers(root / m["video"]["path"])[0] == list(range(30))
    before = _tree(root)
    src = Path(sc.path)
    src.write_bytes(src.read_bytes()[: src.stat().st_size * 2 // 3])
    with pytest.raises(BadInput):
        write_dataset(root, "rec", sc, frames, events, meta, chunk_seconds=1.0)
    assert _tree(root) == before
    assert list((root / ".staging").iterdir()) == []
    # a first write that fails leaves no trace of the video at all
    with pytest.raises(BadInput):
        write_dataset(root, "other", sc, frames, events, meta, chunk_seconds=1.0)
    assert not any("other" in k for k in _tree(root))


def test_interrupted_swap_is_rolled_forward(tmp_path):
    """Simulate a run killed between two renames of its swap: the journal is on disk, the
    actions folder is already swapped, the video folder is not. recover() finishes it."""
    from companion.dataset import writer
    sc, frames, events, meta = _session(tmp_path)
    root = tmp_path / "ds"
    write_dataset(root, "rec", sc, frames, events, meta, chunk_seconds=1.0)
    real_apply = writer._apply_journal
    calls = []

    def crash_after_first_move(root_, journal):
        spec = json.loads(journal.read_text())
        staged, final = spec["moves"][0]
        trash = root_ / spec["staging"] / ".trash"
        trash.mkdir()
        os.replace(root_ / final, trash / "0.x")
        os.replace(root_ / staged, root_ / final)
        calls.append(1)
        raise KeyboardInterrupt   # the process dies here (nothing else runs)

    writer._apply_journal = crash_after_first_move
    try:
        with pytest.raises(KeyboardInterrupt):
            write_dataset(root, "rec", sc, frames, events, meta, chunk_seconds=2.0)
    finally:
        writer._apply_journal = real_apply
    assert calls == [1]
    assert (root / ".staging" / "rec.swap.json").exists()
    recover(root)
    assert not (root / ".staging" / "rec.swap.json").exists()
    rebuild_index(root)
    tree = _tree(root)
    assert not any("rec_chunk_0002" in k for k in tree)           # new state, complete
    assert sum(k.endswith(".mp4") for k in tree) == 2
    assert list((root / ".staging").iterdir()) == []


def test_root_check_tolerates_dataset_json_linked_in_mid_check(tmp_path, monkeypatch):
    """Another run links its dataset.json into the new root between this run's "is there
    a dataset.json" check and its listing of the folder (seen once in CI in the
    concurrent-writers test below, one of five processes failing): that is a dataset
    root, not a foreign file. The race is forced here by listing through a wrapper."""
    from companion.dataset.layout import check_dataset_root
    root = tmp_path / "ds"
    root.mkdir()
    real = Path.iterdir

    def iterdir(self):
        if self == root and not (root / "dataset.json").exists():
            (root / "dataset.json").write_text("{}\n")    # the other run, just now
        return real(self)

    monkeypatch.setattr(Path, "iterdir", iterdir)
    check_dataset_root(root)
    (root / "notes.txt").write_text("x")                   # a foreign file is still refused
    (root / "dataset.json").unlink()
    with pytest.raises(BadInput, match="notes.txt"):
        check_dataset_root(root)


def test_concurrent_writers_into_one_root(tmp_path):
    """Four processes create the root and write different videos at the same moment."""
    sc, frames, events, meta = _session(tmp_path, n=40, audio=None)
    pq.write_table(frames, tmp_path / "frames.parquet")
    pq.write_table(events, tmp_path / "events.parquet")
    root = tmp_path / "ds"
    start = time.time() + 2.0
    code = f"""
import sys, time, pyarrow.parquet as pq
sys.path.insert(0, {str(REPO)!r})
from tests.test_dataset_media import scan
from companion.dataset.writer import write_dataset
sc = scan({sc.path!r})
fr = pq.read_table({str(tmp_path / 'frames.parquet')!r})
ev = pq.read_table({str(tmp_path / 'events.parquet')!r})
time.sleep(max(0, {start} - time.time()))
write_dataset({str(root)!r}, sys.argv[1], sc, fr, ev, {{}}, chunk_seconds=0.5)
"""
    vids = [f"v{i}" for i in range(4)]
    # four different videos, plus a second writer of v0 racing the first one
    procs = [subprocess.Popen([sys.executable, "-c", code, v], cwd=REPO,
                              stderr=subprocess.PIPE, text=True) for v in vids + ["v0"]]
    for p in procs:
        _, err = p.communicate(timeout=240)
        assert p.returncode == 0, err
    idx = pq.read_table(root / "index.parquet").to_pylist()
    assert sorted({r["video_id"] for r in idx}) == vids
    assert len(idx) == 4 * 3                      # 40 frames / 15 per chunk -> 3 chunks
    ds = json.loads((root / "dataset.json").read_text())
    for v in vids:
        shard = f"SHARD_{shard_of(v, ds['num_shards']):04d}"
        rows = [r for r in idx if r["video_id"] == v]
        assert all(r["shard"] == shard for r in rows)
        assert all((root / r["video_path"]).is_file() for r in rows)
    assert not [p for p in root.iterdir() if p.name.startswith(".dataset.json")]
    assert sorted(p.name for p in (root / "video").rglob("*.mp4")) == sorted(
        f"{v}_chunk_{c:04d}.mp4" for v in vids for c in range(3))
    assert list((root / ".staging").iterdir()) == []
    # the checksum files (format 1.2.0) of every video, and the root file over all of
    # them, written under the locks by whichever run rebuilt the index last
    root_sums = {ln[66:]: ln[:64] for ln in (root / "integrity.sha256").read_text().splitlines()}
    assert sorted(root_sums) == sorted(["dataset.json", "index.parquet",
                                        *(f"index/{v}.{x}" for v in vids for x in ("parquet", "xxh128"))])
    for name, digest in root_sums.items():
        assert hashlib.sha256((root / name).read_bytes()).hexdigest() == digest
    from companion.validate import validate_report
    kind, problems, facts = validate_report(root)
    assert problems == [] and "videos_without_checksums" not in facts
    assert facts["files_hashed"] == len(root_sums) + 4 * 3 * 4   # 3 chunks x (mp4 + 3 actions)


def test_remove_video(tmp_path):
    sc, frames, events, meta = _session(tmp_path, audio=None)
    root = tmp_path / "ds"
    write_dataset(root, "a", sc, frames, events, meta, chunk_seconds=1.0)
    write_dataset(root, "b", sc, frames, events, meta, chunk_seconds=1.0)
    assert remove_video(root, "a") is True and remove_video(root, "a") is False
    assert {r["video_id"] for r in pq.read_table(root / "index.parquet").to_pylist()} == {"b"}
    assert not any("/a/" in k or k.startswith("index/a.") for k in _tree(root))
    assert (root / "index" / "b.xxh128").is_file()         # its checksums stay, a's are gone
    assert " index/a." not in (root / "integrity.sha256").read_text()
    from companion.validate import validate_path
    assert validate_path(root) == []


def test_bad_inputs_are_clear_errors(tmp_path):
    sc, frames, events, meta = _session(tmp_path, n=30, audio=None)
    root = tmp_path / "ds"
    for bad in ("", "../x", ".hidden", "a/b", "x" * 129, "sp ace"):
        with pytest.raises(BadInput, match="invalid video id"):
            write_dataset(root, bad, sc, frames, events, meta)
    assert validate_video_id("Sess-2024.01_a") == "Sess-2024.01_a"
    with pytest.raises(BadInput, match="another video"):
        write_dataset(root, "v", sc, frames.slice(0, 10), events, meta)
    home = tmp_path / "home"
    home.mkdir()
    (home / "thesis.tex").write_text("x")
    with pytest.raises(BadInput, match="not a dataset root"):
        write_dataset(home, "v", sc, frames, events, meta)
    ensure_dataset(tmp_path / "ds2", num_shards=4)
    with pytest.raises(BadInput, match="num_shards"):
        ensure_dataset(tmp_path / "ds2", num_shards=8)
    (tmp_path / "ds3").mkdir()
    (tmp_path / "ds3" / "dataset.json").write_text('{"format_version": "2.0.0", "num_shards": 4}')
    with pytest.raises(BadInput, match="major"):
        write_dataset(tmp_path / "ds3", "v", sc, frames, events, meta)
    with pytest.raises(BadInput, match="not found"):
        write_dataset(root, "v", sc, frames, events, meta, video_path=tmp_path / "nope.mkv")


def test_shards_spread_and_are_stable():
    shards = [shard_of(f"session_{i:05d}", 16) for i in range(2000)]
    counts = np.bincount(shards, minlength=16)
    assert counts.min() > 80 and counts.max() < 170        # ~125 each
    assert shard_of("session_00042", 16) == shards[42]


def test_with_the_real_demux_scan(tmp_path):
    """The same write with companion.align.demux.scan_video (the production scanner)."""
    demux = pytest.importorskip("companion.align.demux")
    src = tmp_path / "r.mkv"
    make_video(src, 70, gop=10, bframes=3, audio="aac")
    sc = demux.scan_video(src)
    frames = frames_table(scan(src))
    root = tmp_path / "ds"
    s = write_dataset(root, "r", sc, frames, None, {}, chunk_seconds=1.0)
    assert s["chunks"] == 3 and s["copied"] == 3 and s["audio"]
    for r in pq.read_table(root / "index.parquet").to_pylist():
        assert decode_numbers(root / r["video_path"])[0] == list(range(r["start_frame"],
                                                                       r["end_frame"]))


def test_wrong_event_types_are_a_one_line_error(tmp_path):
    import pyarrow as pa
    sc, frames, events, meta = _session(tmp_path, n=30, audio=None)
    root = tmp_path / "ds"
    write_dataset(root, "v", sc, frames, events, meta)
    bad = events.set_column(events.schema.get_field_index("t_ns"), "t_ns",
                            pa.array(["x"] * events.num_rows))
    with pytest.raises(BadInput, match="events table does not match"):
        write_dataset(root, "v", sc, frames, bad, meta)


def test_disk_full_midway_is_a_one_line_error_and_keeps_the_previous_state(tmp_path):
    """A real write failure (file size limit, as a full disk would do: EFBIG instead of
    ENOSPC) in a child process: one-line error, non-zero exit, dataset unchanged."""
    sc, frames, events, meta = _session(tmp_path, audio="pcm")
    root = tmp_path / "ds"
    write_dataset(root, "v", sc, frames, events, meta, chunk_seconds=1.0)
    before = _tree(root)
    pq.write_table(frames, tmp_path / "frames.parquet")
    pq.write_table(events, tmp_path / "events.parquet")
    code = f"""
import resource, signal, sys, pyarrow.parquet as pq
sys.path.insert(0, {str(REPO)!r})
from tests.test_dataset_media import scan
from companion.dataset.writer import write_dataset
from companion.util.errors import NMError
sc = scan({sc.path!r})
fr = pq.read_table({str(tmp_path / 'frames.parquet')!r})
ev = pq.read_table({str(tmp_path / 'events.parquet')!r})
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (40_000, 40_000))   # the WAVs are 96 kB
try:
    write_dataset({str(root)!r}, "v", sc, fr, ev, {{}}, chunk_seconds=1.0)
except NMError as e:
    print("error:", e)
    sys.exit(e.exit_code)
"""
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 4, (r.stdout, r.stderr)
    assert r.stdout.count("\n") == 1 and "failed" in r.stdout and not r.stderr
    assert _tree(root) == before
    assert list((root / ".staging").iterdir()) == []


def test_nm_align_on_the_real_obs_fixture_writes_a_valid_dataset(tmp_path):
    """End to end with the other modules: align_session (real demux, captions, events
    JSONL) -> write_dataset -> nm-validate finds no problem. The committed OBS 29
    recording has a pause, so its keyframes are off the chunk grid (smart cuts), and the
    2 s chunks straddle the pause."""
    session = pytest.importorskip("companion.align.session")
    validate = pytest.importorskip("companion.validate")
    import shutil
    fx = Path(__file__).parent / "fixtures"
    for f in fx.glob("obs29_h264_30fps_pause.*"):
        shutil.copy(f, tmp_path / f.name)
    mkv = tmp_path / "obs29_h264_30fps_pause.mkv"
    jsonl = mkv.with_suffix(".jsonl")
    jsonl.write_text("")
    session.align_session(mkv, progress=False)                 # frame times first
    ft = pq.read_table(tmp_path / "frames.parquet").column("t_ns").to_numpy()

    def line(t, action, vk, name):
        return json.dumps({"timestamp_ns": int(t), "event_src": "control_publisher",
                           "event_data": json.dumps([action, vk, name])}) + "\n"
    jsonl.write_text(line(ft[10] + 1000, "keyboard.press", 65, "a")
                     + line(ft[75] + 1000, "keyboard.release", 65, "a"))
    root = tmp_path / "ds"
    s = session.align_session(mkv, dataset=root, chunk_seconds=2.0, progress=False)
    ds = s["dataset"]
    assert ds["chunks"] == 2 and ds["smart_cut"] == 2 and ds["events"] == 2
    assert validate.validate_path(root) == []
    idx = pq.read_table(root / "index.parquet").to_pylist()
    metas = [json.loads((root / r["actions_dir"] / "metadata.json").read_text()) for r in idx]
    assert [m["timing"]["segments"] for m in metas] == [[0, 1], [1]]
    p1 = pq.read_table(root / idx[1]["actions_dir"] / "actions_processed.parquet").to_pylist()
    assert [(r["event_type"], r["state"], r["frame_idx"]) for r in p1] == [
        ("keydown", "held", 0), ("keyup", "released", 15)]
    for r in idx:
        with av.open(str(root / r["video_path"])) as c:
            assert sum(1 for _ in c.decode(video=0)) == r["end_frame"] - r["start_frame"]


def _many_events(frames, extra_rows: int = 3000):
    """A few thousand events over the whole video: mouse moves (some repeated, some out of
    the frame), a key bounce over a chunk start, a key held over chunks, presses never
    released, equal-time duplicates, events before the first frame and after the end."""
    import pyarrow as pa
    from companion.contract.schemas import EVENTS_SCHEMA
    ft = frames.column("t_ns").to_numpy().astype(np.int64)
    rng = np.random.default_rng(7)
    t = np.sort(rng.integers(int(ft[0]) - 50 * MS, int(ft[-1]) + 80 * MS, extra_rows))
    x = rng.integers(-20, 140, extra_rows).astype(np.float32)
    x[::5] = x[1::5][: len(x[::5])]                                 # repeated positions
    rows = [dict(t_ns=int(a), event_type="mouse_move", source="mouse", mouse_x_px=float(b),
                 mouse_y_px=5.0, hash=f"m{int(a)}") for a, b in zip(t, x)]
    b1 = int(ft[30])
    rows += [dict(t_ns=int(ft[0]) - 9 * MS, event_type="key_down", source="keyboard",
                  state="pressed", key_code=16, code="ShiftLeft", key="Shift"),
             dict(t_ns=b1 - MS, event_type="key_up", source="keyboard", state="released",
                  key_code=16, code="ShiftLeft", key="Shift"),
             dict(t_ns=b1 + 2 * MS, event_type="key_down", source="keyboard",
                  state="pressed", key_code=16, code="ShiftLeft", key="Shift"),
             dict(t_ns=int(ft[70]), event_type="mouse_click", source="mouse", state="pressed",
                  mouse_button="left", button_index=0, mouse_x_px=1.0, mouse_y_px=1.0),
             dict(t_ns=int(ft[40]), event_type="focus", source="window", window_id="3",
                  metadata=[("title", "t")])]
    rows += [dict(rows[-1], hash="same")] * 2                       # equal-time duplicate
    cols = {f.name: [r.get(f.name) for r in rows] for f in EVENTS_SCHEMA}
    cols["session_id"] = ["rec"] * len(rows)
    cols["hash"] = [r.get("hash", f"h{i}") for i, r in enumerate(rows)]
    tbl = pa.Table.from_pydict(cols, schema=EVENTS_SCHEMA)
    return tbl.take(pa.array(np.argsort(tbl.column("t_ns").to_numpy(), kind="stable")))


def test_events_parquet_path_gives_the_same_dataset_as_the_table(tmp_path, monkeypatch):
    """write_dataset(events=path of events.parquet) streams the file in batches (tiny
    ones here, so every chunk boundary falls inside or between batches) and writes
    byte-identical files, the same metadata and the same summary as the table input."""
    from companion.dataset import writer
    sc, frames, events, meta = _session(tmp_path)
    events = _many_events(frames)
    path = tmp_path / "events.parquet"
    pq.write_table(events, path, row_group_size=1000)
    a = write_dataset(tmp_path / "a", "rec", sc, frames, events.take(
        np.random.default_rng(1).permutation(events.num_rows)), meta, chunk_seconds=1.0)
    monkeypatch.setattr(writer, "BATCH_ROWS", 7)
    b = write_dataset(tmp_path / "b", "rec", sc, frames, str(path), meta, chunk_seconds=1.0)
    assert {k: v for k, v in a.items() if k not in ("seconds", "root")} == \
        {k: v for k, v in b.items() if k not in ("seconds", "root")}
    ta, tb = _tree(tmp_path / "a"), _tree(tmp_path / "b")
    assert ta.pop("dataset.json") and tb.pop("dataset.json")      # created_at differs
    # ... and with it the root checksum file's line for it (when the runs straddle a second)
    ra = (tmp_path / "a" / "integrity.sha256").read_text().splitlines()
    rb = (tmp_path / "b" / "integrity.sha256").read_text().splitlines()
    assert [ln for ln in ra if not ln.endswith("  dataset.json")] == \
        [ln for ln in rb if not ln.endswith("  dataset.json")]
    assert ta.pop("integrity.sha256") and tb.pop("integrity.sha256")
    assert ta == tb
    assert sum(k.endswith("actions_processed.parquet") for k in ta) == 4
    assert a["events"] == sum(r["n_events"] for r in pq.read_table(
        tmp_path / "b" / "index.parquet").to_pylist()) < events.num_rows   # some outside
    p1 = pq.read_table(tmp_path / "b" / pq.read_table(tmp_path / "b" / "index.parquet")
                       .column("actions_dir")[1].as_py() / "actions_processed.parquet")
    assert p1.column("state")[0].as_py() == "held"                # Shift bounced over B1
    assert json.loads((tmp_path / "b" / pq.read_table(tmp_path / "b" / "index.parquet")
                       .column("actions_dir")[1].as_py() / "metadata.json").read_text()
                      )["modality_config"]["keyboard"]["enabled"] is True


def test_events_path_problems_are_one_line_errors(tmp_path):
    import pyarrow as pa
    sc, frames, events, meta = _session(tmp_path, n=30, audio=None)
    root = tmp_path / "ds"
    write_dataset(root, "v", sc, frames, events, meta)
    before = _tree(root)
    shuffled = tmp_path / "unsorted.parquet"
    pq.write_table(events.take(pa.array([2, 0, 1])), shuffled)
    with pytest.raises(BadInput, match=r"unsorted\.parquet: events are not sorted by t_ns"):
        write_dataset(root, "v", sc, frames, shuffled, meta)
    with pytest.raises(BadInput, match="events file not found"):
        write_dataset(root, "v", sc, frames, tmp_path / "nope.parquet", meta)
    (tmp_path / "junk.parquet").write_bytes(b"not parquet")
    with pytest.raises(BadInput, match="unreadable events file"):
        write_dataset(root, "v", sc, frames, tmp_path / "junk.parquet", meta)
    pq.write_table(events.drop_columns(["hash"]), tmp_path / "nohash.parquet")
    with pytest.raises(BadInput, match="lacks columns: hash"):
        write_dataset(root, "v", sc, frames, tmp_path / "nohash.parquet", meta)
    assert _tree(root) == before
    assert list((root / ".staging").iterdir()) == []
