"""nm-validate on real session folders and dataset roots: valid ones pass, every kind of
damage is reported with the file it is in, a flipped byte anywhere is caught and named."""
from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from companion.cli.validate_cli import main as validate_main
from companion.contract.schemas import (ACTIONS_PROCESSED_SCHEMA, ACTIONS_RAW_SCHEMA,
                                        CHUNK_INDEX_SCHEMA, EVENTS_SCHEMA)
from companion.contract.version import FORMAT_VERSION
from companion.validate import Problem, validate_path
from companion.validate.checks import check_chunk_tiling, check_frame_refs
from companion.validate.session import parse_integrity
from companion.util.errors import BadInput
from tests.test_owa import T0, frames_table_for, make_h264

SID = "sess1"


# --------------------------------------------------------------------------- builders

def _events_table(frame_t: np.ndarray, end_t: int) -> pa.Table:
    """EVENTS_SCHEMA rows: one before the video, several on frames, one after the end."""
    times = [int(frame_t[0]) - 5_000_000] + [int(frame_t[i]) + 1000 for i in (0, 3, 3, 10, 40)] + [end_t + 10]
    rows = []
    for k, t in enumerate(times):
        ref = int(np.searchsorted(frame_t, t, side="right") - 1)
        ref = None if ref < 0 or t >= end_t else ref
        rows.append({n: None for n in EVENTS_SCHEMA.names} | {
            "t_ns": t, "event_type": "key_down" if k % 2 else "mouse_move", "frame_ref": ref,
            "session_id": SID, "hash": hashlib.sha256(str(k).encode()).hexdigest(),
            "source": "keyboard" if k % 2 else "mouse", "key_code": 65 if k % 2 else None,
            "mouse_x": None if k % 2 else 0.5, "mouse_y": None if k % 2 else 0.25})
    return pa.Table.from_pylist(rows, schema=EVENTS_SCHEMA)


def write_integrity(folder: Path, names: list[str]) -> None:
    lines = [f"{hashlib.sha256((folder / n).read_bytes()).hexdigest()}  {n}\n" for n in sorted(names)]
    (folder / "integrity.sha256").write_text("".join(lines))


def build_session(folder: Path, video_src: Path | None = None) -> Path:
    """A valid session folder built from the contract (real H.264 MKV, real Parquet)."""
    folder.mkdir(parents=True)
    video = folder / f"{SID}.mkv"
    if video_src is None:
        make_h264(video, seconds=2, fps=30)
    else:
        shutil.copy(video_src, video)
    frames = frames_table_for(video)
    pq.write_table(frames, folder / "frames.parquet")
    ft = frames.column("t_ns").to_numpy()
    interval = int(np.median(np.diff(ft)))
    end_t = int(ft[-1]) + interval
    events = _events_table(ft, end_t)
    pq.write_table(events, folder / "events.parquet")
    (folder / f"{SID}.jsonl").write_text(
        json.dumps({"timestamp_ns": T0, "event_src": "control_publisher",
                    "event_data": json.dumps(["mouse.move", 1, 2])}) + "\n")
    meta = {"format_version": FORMAT_VERSION, "session_id": SID, "captured_at": "2025-02-21T06:27:30.371Z",
            "resolution": [64, 48], "capture_fps": 30.0, "codec": "h264", "dropped_frames": 0,
            "consent": {"record_screen": True, "record_audio": False, "record_input": True},
            "privacy": {"chat_redacted": False, "pii_regions": []}, "env": {"os": "Linux"},
            "alignment": {"anchor_source": "captions", "confidence": "high",
                          "video_file": video.name, "frame_count": frames.num_rows,
                          "event_count": events.num_rows, "end_t_ns": end_t}}
    (folder / "metadata.json").write_text(json.dumps(meta, indent=2))
    write_integrity(folder, [video.name, "frames.parquet", "events.parquet", "metadata.json",
                             f"{SID}.jsonl"])
    return folder


def encode_chunk(path: Path, n_frames: int, fps: int = 30) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                    f"testsrc=size=64x48:rate={fps}", "-frames:v", str(n_frames), "-c:v", "libx264",
                    "-g", "10", "-pix_fmt", "yuv420p", str(path)], check=True)


def chunk_metadata(vid: str, cid: int, s: int, e: int, fps: int) -> dict:
    return {
        "format_version": FORMAT_VERSION,
        "uuid": f"{vid}_chunk_{cid:04d}_actions", "chunk_id": f"{cid:04d}", "chunk_size": e - s,
        "original_video": {"resolution": [64, 48], "video_id": vid, "source": "screen",
                           "url": None, "start_time": s / fps, "end_time": e / fps,
                           "duration": (e - s) / fps, "start_frame": s, "end_frame": e, "fps": fps},
        "modality_config": {"screen": {"enabled": True}, "webcam": {"enabled": False},
                            "audio": {"enabled": False, "channels": None, "sample_rate": None},
                            "keyboard": {"enabled": True},
                            "mouse": {"enabled": True, "coordinate_space": "screen"},
                            "gamepad": {"enabled": False}},
        "bbox_controller_overlay": [0, 0, 0, 0],
        "bbox_game_area": {"xtl": 0.0, "ytl": 0.0, "xbr": 1.0, "ybr": 1.0},
        "bbox_others": [],
        "sync": {"timebase": "ms", "video_offset_ms": 0, "audio_offset_ms": 0},
    }


def build_dataset(root: Path, vid: str = "vid0", bounds=((0, 20), (20, 40), (40, 47)),
                  fps: int = 30) -> Path:
    """A valid dataset root built from the contract: real chunk MP4s, real Parquet."""
    interval = 1_000_000_000 // fps
    frame_t = lambda f: T0 + f * interval  # noqa: E731
    rows = []
    for cid, (s, e) in enumerate(bounds):
        shard = "SHARD_0000"
        vpath = f"video/{shard}/{vid}/{vid}_chunk_{cid:04d}.mp4"
        adir = f"actions/{shard}/{vid}/{vid}_chunk_{cid:04d}"
        encode_chunk(root / vpath, e - s, fps)
        events = []
        for f in range(s, e, 3):
            t = frame_t(f) + 2_500_000
            events.append({"t_ns": t, "frame_ref": f, "frame_idx": f - s,
                           "timestamp_ms": (t - frame_t(s)) // 1_000_000})
        if cid == 0:   # an event before the first frame: no frame, negative ms
            t = frame_t(0) - 7_000_000
            events.insert(0, {"t_ns": t, "frame_ref": None, "frame_idx": None,
                              "timestamp_ms": -((frame_t(0) - t) // 1_000_000)})
        arows = []
        for k, ev in enumerate(events):
            arows.append({n: None for n in ACTIONS_PROCESSED_SCHEMA.names} | ev | {
                "source": "mouse", "event_type": "mousemove", "mouse_x": 10.0 + k, "mouse_y": 5.0,
                "mouse_x_norm": 0.1, "mouse_y_norm": 0.1, "meta": "{}", "is_valid": True,
                "confidence": 1.0})
        t = pa.Table.from_pylist(arows, schema=ACTIONS_PROCESSED_SCHEMA)
        (root / adir).mkdir(parents=True, exist_ok=True)
        pq.write_table(t, root / adir / "actions_processed.parquet")
        pq.write_table(t.drop_columns(["is_valid", "confidence", "notes"]).cast(ACTIONS_RAW_SCHEMA),
                       root / adir / "actions_raw.parquet")
        (root / adir / "metadata.json").write_text(json.dumps(chunk_metadata(vid, cid, s, e, fps)))
        rows.append(dict(video_id=vid, chunk_id=cid, shard=shard, start_frame=s, end_frame=e,
                         fps=float(fps), start_t_ns=frame_t(s), end_t_ns=frame_t(e),
                         n_events=len(arows), video_path=vpath, actions_dir=adir, audio_path=None))
    pq.write_table(pa.Table.from_pylist(rows, schema=CHUNK_INDEX_SCHEMA), root / "index.parquet")
    (root / "dataset.json").write_text(json.dumps({
        "format_version": FORMAT_VERSION, "num_shards": 1, "created_at": "2025-02-21T06:27:30Z",
        "videos": [{"video_id": vid, "n_frames": bounds[-1][1]}]}))
    return root


@pytest.fixture(scope="module")
def session_template(tmp_path_factory) -> Path:
    return build_session(tmp_path_factory.mktemp("tpl") / SID)


@pytest.fixture
def session(tmp_path, session_template) -> Path:
    dst = tmp_path / SID
    shutil.copytree(session_template, dst)
    return dst


@pytest.fixture(scope="module")
def dataset_template(tmp_path_factory) -> Path:
    return build_dataset(tmp_path_factory.mktemp("dstpl") / "ds")


@pytest.fixture
def dataset(tmp_path, dataset_template) -> Path:
    dst = tmp_path / "ds"
    shutil.copytree(dataset_template, dst)
    return dst


def msgs(problems: list[Problem]) -> list[str]:
    return [str(p) for p in problems]


def rewrite_parquet(path: Path, fn) -> None:
    t = pq.read_table(path)
    pq.write_table(fn(t), path)


def set_col(t: pa.Table, name: str, values) -> pa.Table:
    i = t.schema.get_field_index(name)
    return t.set_column(i, t.schema.field(i), pa.array(values, t.schema.field(i).type))


# --------------------------------------------------------------------------- sessions

def test_valid_session_passes(session):
    assert msgs(validate_path(session)) == []


@pytest.mark.parametrize("name", ["metadata.json", "frames.parquet", "events.parquet",
                                  f"{SID}.mkv", f"{SID}.jsonl"])
@pytest.mark.parametrize("where", [0.0, 0.5, 0.999])
def test_flipped_byte_in_any_artifact_is_caught_and_named(session, name, where):
    p = session / name
    data = bytearray(p.read_bytes())
    i = min(int(len(data) * where), len(data) - 1)
    data[i] ^= 0x01
    p.write_bytes(bytes(data))
    problems = validate_path(session)
    assert any(pr.path == str(p) and "does not match integrity.sha256" in pr.message
               for pr in problems), msgs(problems)


def test_flipped_byte_in_integrity_file_itself(session):
    p = session / "integrity.sha256"
    for i in (0, 70, len(p.read_bytes()) - 3):      # a hash digit, a file name, the last name
        fresh = bytearray(p.read_bytes())
        fresh[i] ^= 0x02
        p.write_bytes(bytes(fresh))
        assert validate_path(session), f"flip at byte {i} not caught"
        fresh[i] ^= 0x02
        p.write_bytes(bytes(fresh))
    assert validate_path(session) == []


def test_missing_and_unlisted_artifacts(session):
    (session / "events.parquet").unlink()
    lines = (session / "integrity.sha256").read_text().splitlines()
    (session / "integrity.sha256").write_text("\n".join(l for l in lines if "jsonl" not in l) + "\n")
    out = msgs(validate_path(session))
    assert f"{session}/events.parquet: listed in integrity.sha256 but missing" in out
    assert f"{session}/{SID}.jsonl: not covered by integrity.sha256" in out


def test_frames_problems(session):
    def damage(t):
        idx = t.column("frame_idx").to_numpy().copy()
        idx[5] = 99
        tn = t.column("t_ns").to_numpy().copy()
        tn[20] = tn[19] - 1
        return set_col(set_col(t, "frame_idx", idx), "t_ns", tn)
    rewrite_parquet(session / "frames.parquet", damage)
    out = msgs(validate_path(session))
    f = f"{session}/frames.parquet"
    assert any(m.startswith(f + ": frame_idx is not contiguous from 0: row 5 has 99") for m in out), out
    assert any(m.startswith(f + ": t_ns is not sorted (non-decreasing): row 20") for m in out), out
    assert any(m.startswith(f + ": sha256") for m in out)


def test_frames_row_count_and_pts_against_video(session):
    rewrite_parquet(session / "frames.parquet", lambda t: t.slice(0, t.num_rows - 1))
    out = msgs(validate_path(session))
    assert any("frames.parquet: has 59 rows, the video sess1.mkv has 60 frames" in m for m in out), out
    assert any("alignment.frame_count is 60, frames.parquet has 59 rows" in m for m in out), out


def test_frames_and_events_schema_mismatch(session):
    rewrite_parquet(session / "frames.parquet",
                    lambda t: t.drop_columns(["segment"]).append_column("extra", pa.array([1] * t.num_rows)))
    rewrite_parquet(session / "events.parquet",
                    lambda t: t.set_column(0, pa.field("t_ns", pa.float64()), t.column(0).cast(pa.float64(), safe=False)))
    out = msgs(validate_path(session))
    assert any("frames.parquet: missing column(s): segment" in m for m in out), out
    assert any("frames.parquet: unexpected column(s): extra" in m for m in out), out
    assert any("events.parquet: column t_ns has type double, expected int64" in m for m in out), out


def test_events_problems(session):
    def damage(t):
        ref = t.column("frame_ref").to_pylist()
        ref[2] = 10_000          # out of range
        ref[4] = 1               # wrong frame for its time
        ref[3] = None            # null inside the video
        tn = t.column("t_ns").to_numpy().copy()
        tn[5], tn[6] = tn[6], tn[5]
        sid = t.column("session_id").to_pylist()
        sid[1] = "other"
        return set_col(set_col(set_col(t, "frame_ref", ref), "t_ns", tn), "session_id", sid)
    rewrite_parquet(session / "events.parquet", damage)
    out = "\n".join(msgs(validate_path(session)))
    assert "events.parquet: frame_ref out of range [0, 60): row 2 has 10000" in out
    assert "events.parquet: frame_ref disagrees with frames.parquet t_ns: row 4" in out
    assert "events.parquet: frame_ref is null for an event inside the video: row 3" in out
    assert "events.parquet: t_ns is not sorted (non-decreasing): row 6" in out
    assert "events.parquet: session_id 'other' in events, metadata.json says 'sess1'" in out


def test_metadata_problems(session):
    meta = json.loads((session / "metadata.json").read_text())
    meta["format_version"] = "2.0.0"
    meta["resolution"] = [64]
    del meta["captured_at"]
    (session / "metadata.json").write_text(json.dumps(meta))
    out = "\n".join(msgs(validate_path(session)))
    assert "metadata.json: format_version 2.0.0 has major version 2; this reader supports major 1" in out
    assert "metadata.json: schema: captured_at: required field is missing" in out
    assert "metadata.json: schema: resolution: needs at least 2 items, has 1" in out
    (session / "metadata.json").write_text("{not json")
    out = msgs(validate_path(session))
    assert f"{session}/metadata.json: invalid JSON at line 1 column 2: Expecting property name " \
           f"enclosed in double quotes" in out


def test_corrupt_parquet_and_video_are_reported_not_raised(session):
    (session / "frames.parquet").write_bytes(b"PAR1 garbage")
    (session / f"{SID}.mkv").write_bytes(b"\x1a\x45\xdf\xa3 not really")
    out = "\n".join(msgs(validate_path(session)))
    assert "frames.parquet: not a readable Parquet file" in out
    assert f"{SID}.mkv: not a readable video" in out


def test_unaligned_session_says_run_nm_align(tmp_path):
    folder = tmp_path / "raw"
    folder.mkdir()
    make_h264(folder / "raw.mkv", seconds=0.5, audio=False)
    (folder / "metadata.json").write_text(json.dumps({
        "format_version": FORMAT_VERSION, "session_id": "raw", "captured_at": "2025-01-01T00:00:00Z"}))
    out = msgs(validate_path(folder))
    assert out == [f"{folder}/integrity.sha256: missing (run nm-align on this session)"]


def test_folder_of_sessions(tmp_path, session_template):
    shutil.copytree(session_template, tmp_path / "all" / "a")
    shutil.copytree(session_template, tmp_path / "all" / "b")
    (tmp_path / "all" / "b" / "events.parquet").write_bytes(b"x")
    out = msgs(validate_path(tmp_path / "all"))
    assert out and all(m.startswith(f"{tmp_path}/all/b/") for m in out)


# --------------------------------------------------------------------------- datasets

def test_valid_dataset_passes(dataset):
    assert msgs(validate_path(dataset)) == []


def test_chunk_gap_overlap_and_coverage(dataset):
    def damage(t):
        s = t.column("start_frame").to_pylist()
        s[2] = 41                         # gap [40, 41)
        return set_col(t, "start_frame", s)
    rewrite_parquet(dataset / "index.parquet", damage)
    out = "\n".join(msgs(validate_path(dataset)))
    assert "index.parquet: video vid0: gap: frames [40, 41) are in no chunk (before chunk 2)" in out
    # the chunk's video/metadata now disagree with the index too
    assert "vid0_chunk_0002.mp4: has 7 frames, chunk 2 covers 6" in out
    assert "vid0_chunk_0002/metadata.json: original_video.start_frame 40 but index.parquet says 41" in out

    rewrite_parquet(dataset / "index.parquet", lambda t: set_col(t, "start_frame", [0, 18, 40]))
    out = "\n".join(msgs(validate_path(dataset)))
    assert "overlap: chunk 1 starts at frame 18, before the previous chunk's end 20" in out

    rewrite_parquet(dataset / "index.parquet", lambda t: set_col(t, "start_frame", [0, 20, 40]).slice(0, 2))
    out = "\n".join(msgs(validate_path(dataset)))
    assert "video vid0: frames [40, 47) of the video are in no chunk" in out
    assert "vid0_chunk_0002: chunk folder not listed in index.parquet" in out
    assert "vid0_chunk_0002.mp4: not listed in index.parquet" in out


def test_chunk_video_frame_count(dataset):
    encode_chunk(dataset / "video/SHARD_0000/vid0/vid0_chunk_0001.mp4", 19)
    out = msgs(validate_path(dataset))
    assert out == [f"{dataset}/video/SHARD_0000/vid0/vid0_chunk_0001.mp4: has 19 frames, "
                   f"chunk 1 covers 20 (frames [20, 40))"]
    assert validate_path(dataset, check_videos=False) == []


def test_actions_problems(dataset):
    rel = "actions/SHARD_0000/vid0/vid0_chunk_0001/actions_raw.parquet"

    def damage(t):
        ts = t.column("timestamp_ms").to_pylist()
        ts[0] += 5
        fi = t.column("frame_idx").to_pylist()
        fi[1] = 25
        fr = t.column("frame_ref").to_pylist()
        fr[2] = 3
        return set_col(set_col(set_col(t, "timestamp_ms", ts), "frame_idx", fi), "frame_ref", fr)
    rewrite_parquet(dataset / rel, damage)
    out = "\n".join(msgs(validate_path(dataset)))
    assert f"{rel}: timestamp_ms is not ms since the chunk's first frame: row 0" in out
    assert f"{rel}: frame_idx out of range [0, 20): row 1 has 25" in out
    assert f"{rel}: frame_ref out of range [20, 40): row 2 has 3" in out
    rewrite_parquet(dataset / rel, lambda t: t.slice(1))
    out = "\n".join(msgs(validate_path(dataset)))
    assert f"{rel}: has 6 rows, index.parquet n_events says 7" in out


def test_actions_schema_and_chunk_metadata(dataset):
    rel = "actions/SHARD_0000/vid0/vid0_chunk_0000"
    rewrite_parquet(dataset / rel / "actions_processed.parquet", lambda t: t.drop_columns(["confidence"]))
    md = json.loads((dataset / rel / "metadata.json").read_text())
    del md["sync"]
    md["chunk_size"] = 21
    md["bbox_game_area"]["xbr"] = 1.5
    (dataset / rel / "metadata.json").write_text(json.dumps(md))
    out = "\n".join(msgs(validate_path(dataset)))
    assert f"{rel}/actions_processed.parquet: missing column(s): confidence" in out
    assert f"{rel}/metadata.json: schema: sync: required field is missing" in out
    assert f"{rel}/metadata.json: schema: bbox_game_area.xbr: 1.5 is above the maximum 1" in out
    assert f"{rel}/metadata.json: chunk_size 21 but the chunk covers 20 frames" in out


def test_held_rows_are_checked(dataset):
    """Held rows (keys/buttons, and from 1.1.0 the carried mouse position and focus):
    accepted when they follow the contract, each way of breaking it named."""
    rel = "actions/SHARD_0000/vid0/vid0_chunk_0001"
    start = T0 + 20 * (1_000_000_000 // 30)
    base = {n: None for n in ACTIONS_PROCESSED_SCHEMA.names} | dict(
        timestamp_ms=0, frame_idx=0, t_ns=start, frame_ref=20, state="held", is_valid=True,
        confidence=1.0)
    held = [base | dict(source="keyboard", event_type="keydown", key="a", code="KeyA"),
            base | dict(source="mouse", event_type="mousemove", mouse_x=12.0, mouse_y=5.0,
                        mouse_x_norm=0.1, mouse_y_norm=0.1, confidence=0.5),
            base | dict(source="window", event_type="focus", meta='{"title": "Game"}')]
    proc = dataset / rel / "actions_processed.parquet"
    original = pq.read_table(proc)

    def write(rows, body=original):
        pq.write_table(pa.concat_tables([pa.Table.from_pylist(rows, schema=ACTIONS_PROCESSED_SCHEMA),
                                         body.cast(ACTIONS_PROCESSED_SCHEMA)]), proc)
    write(held)
    assert msgs(validate_path(dataset)) == []
    write([held[0], held[1] | dict(mouse_x_norm=None), held[2] | dict(t_ns=start + 1),
           held[2] | dict(event_type="wheel", frame_idx=1)])
    out = "\n".join(msgs(validate_path(dataset)))
    assert "held mousemove row 1 has mouse_x_norm None: the carried position needs " \
           "normalized coordinates in [0, 1]" in out
    assert f"held row 2 has t_ns {start + 1}, expected {start} (the chunk start; 1 rows)" in out
    assert "held row 3 has event_type 'wheel'" in out
    assert "held row 3 has frame_idx 1, expected 0" in out
    write([held[1], held[1] | dict(mouse_y_norm=1.5)])
    out = "\n".join(msgs(validate_path(dataset)))
    assert "2 held mousemove rows (at most one per chunk)" in out
    assert "held mousemove row 1 has mouse_y_norm 1.5" in out
    # not first
    pq.write_table(pa.concat_tables([original.cast(ACTIONS_PROCESSED_SCHEMA).slice(0, 1),
                                     pa.Table.from_pylist(held[:1], schema=ACTIONS_PROCESSED_SCHEMA)]),
                   proc)
    out = "\n".join(msgs(validate_path(dataset)))
    assert "held rows must come first: row 0 is not held but row 1 is" in out
    # never in actions_raw
    write(held)
    raw = dataset / rel / "actions_raw.parquet"
    rewrite_parquet(raw, lambda t: set_col(t, "state", ["held"] + [None] * (t.num_rows - 1)))
    out = "\n".join(msgs(validate_path(dataset)))
    assert f"{rel}/actions_raw.parquet: 1 rows have state 'held' (row 0): carried state " \
           f"belongs in actions_processed only" in out


def test_dataset_json_and_missing_files(dataset):
    (dataset / "dataset.json").write_text(json.dumps({"format_version": "one"}))
    (dataset / "video/SHARD_0000/vid0/vid0_chunk_0000.mp4").unlink()
    shutil.rmtree(dataset / "actions/SHARD_0000/vid0/vid0_chunk_0002")
    out = "\n".join(msgs(validate_path(dataset)))
    assert "dataset.json: schema: format_version: 'one' does not match" in out
    assert "video/SHARD_0000/vid0/vid0_chunk_0000.mp4: missing (listed in index.parquet)" in out
    assert "actions/SHARD_0000/vid0/vid0_chunk_0002: missing (listed in index.parquet)" in out


def test_dataset_paths_escaping_root(dataset):
    rewrite_parquet(dataset / "index.parquet", lambda t: set_col(
        t, "video_path", ["../../etc/passwd", "/abs/x.mp4", t.column("video_path")[2].as_py()]))
    out = "\n".join(msgs(validate_path(dataset)))
    assert "video_path '../../etc/passwd' is not a relative path inside the dataset" in out
    assert "video_path '/abs/x.mp4' is not a relative path inside the dataset" in out


@pytest.mark.parametrize("rel", ["index.parquet", "dataset.json",
                                 "actions/SHARD_0000/vid0/vid0_chunk_0001/actions_raw.parquet",
                                 "actions/SHARD_0000/vid0/vid0_chunk_0001/metadata.json"])
def test_dataset_truncated_files_reported(dataset, rel):
    p = dataset / rel
    p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2])
    out = msgs(validate_path(dataset))
    assert any(m.startswith(str(p) + ": ") for m in out), out


# --------------------------------------------------------------------------- pure checks

def test_check_chunk_tiling_pure():
    assert check_chunk_tiling([(0, 0, 10), (1, 10, 20), (2, 20, 25)], 25) == []
    assert check_chunk_tiling([(1, 10, 20), (0, 0, 10)], None) == []
    assert "duplicate chunk_id(s) [1]" in check_chunk_tiling([(0, 0, 10), (1, 10, 20), (1, 20, 30)], 30)
    assert any("empty" in m for m in check_chunk_tiling([(0, 0, 0)], 0))
    assert any("longer than a full chunk" in m for m in check_chunk_tiling([(0, 0, 10), (1, 10, 25)], 25))
    assert any("differ in size" in m for m in check_chunk_tiling([(0, 0, 10), (1, 10, 15), (2, 15, 16)], 16))


def test_check_frame_refs_pure():
    ft = np.array([100, 200, 300], dtype=np.int64)
    t = np.array([50, 100, 250, 399, 400], dtype=np.int64)
    ref = np.array([0, 0, 1, 2, 0], dtype=np.int64)
    ok = np.array([False, True, True, True, False])
    assert check_frame_refs(t, ref, ok, ft, 400) == []
    assert check_frame_refs(t, ref, np.array([False, True, True, False, False]), ft, 400)
    ref2 = ref.copy()
    ref2[2] = 2
    assert "the frame on screen is 1" in check_frame_refs(t, ref2, ok, ft, 400)[0]


def test_parse_integrity_pure():
    h = "a" * 64
    entries, probs = parse_integrity(f"{h}  x.mkv\n{h} *y.bin\n\nbad line\n{h}  ../z\n{h}  x.mkv\n")
    assert entries == {"x.mkv": h, "y.bin": h}
    assert probs == ["line 4 is not '<sha256>  <file>'", "line 5 names a file outside the folder: '../z'",
                     "line 6 lists x.mkv a second time"]


# --------------------------------------------------------------------------- CLI

def test_cli_exit_codes_and_output(session, dataset, tmp_path, capsys):
    assert validate_main([str(session)]) == 0
    out = capsys.readouterr()
    assert out.out.strip() == (f"OK: session {session} matches the contract "
                               f"(5 files hashed, 60 frames, 7 events)")
    (session / "events.parquet").write_bytes(b"junk")
    assert validate_main([str(session)]) == 1
    out = capsys.readouterr()
    lines = out.out.strip().splitlines()
    assert lines and all(l.startswith(f"{session}/") for l in lines)
    assert "problem(s)" in out.err
    assert validate_main([str(session), "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["ok"] is False and doc["kind"] == "session"
    assert {"path": f"{session}/events.parquet",
            "message": "sha256 " + hashlib.sha256(b"junk").hexdigest()[:16] + "... does not match "
            "integrity.sha256 (" + doc["problems"][0]["message"].split("(")[1]} in doc["problems"]
    # a dataset without checksum files (written before format 1.2.0): valid, and said so
    assert validate_main([str(dataset), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "path": str(dataset), "kind": "dataset", "ok": True, "problems": [],
        "checked": {"videos": 1, "chunks": 3, "events": 18, "videos_without_checksums": 1}}
    assert validate_main([str(dataset)]) == 0
    assert capsys.readouterr().out.strip() == (
        f"OK: dataset {dataset} matches the contract (1 video, 3 chunks, 18 events, "
        f"1 video without checksums)")
    for bad in (tmp_path / "nope", session / "metadata.json", tmp_path / "emptydir"):
        if bad.name == "emptydir":
            bad.mkdir()
        assert validate_main([str(bad)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("nm-validate: error: ") and err.count("\n") == 1


def test_console_script_runs(session):
    exe = Path(sys.executable).parent / "nm-validate"
    if not exe.exists():
        pytest.skip("console script not installed")
    r = subprocess.run([str(exe), str(session)], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.startswith("OK: session")
    with pytest.raises(BadInput):
        validate_path(session / "nope")


# --------------------------------------------------------------------------- real pipeline

@pytest.fixture(scope="module")
def real_outputs(tmp_path_factory):
    """The app's zip export -> nm-align (session + dataset), with the real aligner and
    dataset writer."""
    from companion.align.session import align_session
    from tests.test_zip_export import good_members, make_webm, make_zip
    d = tmp_path_factory.mktemp("real")
    webm = make_webm(d / "v.webm", n_frames=75).read_bytes()
    z = make_zip(d / "exp1.zip", good_members("exp1", webm))
    summary = align_session(z, out=d / "work", dataset=d / "ds", chunk_seconds=1.0, progress=False)
    return d, summary


def test_real_zip_export_to_session_and_dataset_validates(real_outputs):
    d, summary = real_outputs
    assert summary["frames"] == 75
    assert msgs(validate_path(d / "work" / "exp1")) == []
    assert msgs(validate_path(d / "ds")) == []
    assert validate_main([str(d / "ds")]) == 0
    # the writer's carried-state rows are among what was validated
    held = [r["event_type"] for p in sorted((d / "ds").rglob("actions_processed.parquet"))
            for r in pq.read_table(p, columns=["state", "event_type"]).to_pylist()
            if r["state"] == "held"]
    assert "mousemove" in held


def test_real_session_tampering_is_named(real_outputs, tmp_path):
    d, _ = real_outputs
    src = d / "work" / "exp1"
    for name in sorted(p.name for p in src.iterdir() if p.name != "integrity.sha256"):
        dst = tmp_path / name.replace(".", "_")
        shutil.copytree(src, dst)
        p = dst / name
        data = bytearray(p.read_bytes())
        data[len(data) // 3] ^= 0x80
        p.write_bytes(bytes(data))
        problems = validate_path(dst)
        assert any(pr.path == str(p) and "does not match integrity.sha256" in pr.message
                   for pr in problems), (name, msgs(problems))


def test_real_dataset_damage_is_named(real_outputs, tmp_path):
    d, _ = real_outputs
    ds = tmp_path / "ds"
    shutil.copytree(d / "ds", ds)
    idx = pq.read_table(ds / "index.parquet").to_pylist()
    last = idx[-1]
    # a chunk video with one frame too few, re-made with ffmpeg
    encode_chunk(ds / last["video_path"], last["end_frame"] - last["start_frame"] - 1)
    # an actions row moved to another chunk's frame
    rel = f"{idx[0]['actions_dir']}/actions_raw.parquet"
    rewrite_parquet(ds / rel, lambda t: set_col(t, "frame_ref", [idx[1]["start_frame"]] +
                                                t.column("frame_ref").to_pylist()[1:]))
    # a stray file nobody indexed
    (ds / "video" / last["shard"] / last["video_id"] / "stray.mp4").write_bytes(b"x")
    out = "\n".join(msgs(validate_path(ds)))
    assert f"{last['video_path']}: has {last['end_frame'] - last['start_frame'] - 1} frames" in out
    assert f"{rel}: frame_ref out of range [{idx[0]['start_frame']}, {idx[0]['end_frame']})" in out
    assert "stray.mp4: not listed in index.parquet" in out
    # the per-video index part must agree with index.parquet
    rewrite_parquet(ds / "index.parquet", lambda t: t.slice(0, t.num_rows - 1))
    out = "\n".join(msgs(validate_path(ds)))
    assert f"index/{last['video_id']}.parquet: differs from the rows of video" in out


def test_real_session_out_as_owa_mkv_and_back_gives_same_frame_times(real_outputs, tmp_path):
    """Our aligned session -> OWA-style MKV -> nm-align on that MKV (anchors from the
    subtitle track): identical frame times, and the result validates."""
    from companion.align.session import align_session
    from companion.interop.owa import export_owa
    d, _ = real_outputs
    src = d / "work" / "exp1"
    frames = pq.read_table(src / "frames.parquet")
    owa = tmp_path / "owa"
    owa.mkdir()
    res = export_owa(src / "exp1.webm", frames, owa / "exp1.mkv", jsonl=src / "exp1.jsonl")
    assert res["jsonl"] == str(owa / "exp1.jsonl")
    assert (owa / "exp1.jsonl").read_bytes() == (src / "exp1.jsonl").read_bytes()
    res = align_session(owa / "exp1.mkv", progress=False)
    assert res["anchor_source"] == "owa_subtitles"
    back = pq.read_table(owa / "frames.parquet")
    assert back.num_rows == frames.num_rows
    assert np.array_equal(back.column("t_ns").to_numpy(), frames.column("t_ns").to_numpy())
    ev_a = pq.read_table(src / "events.parquet", columns=["t_ns", "frame_ref"])
    ev_b = pq.read_table(owa / "events.parquet", columns=["t_ns", "frame_ref"])
    assert ev_a.equals(ev_b)
    assert msgs(validate_path(owa)) == []


# --------------------------------------------------------------------------- JSON Schemas

def test_schema_validator_semantics():
    from companion.contract.metadata import check_format_version, validate_json
    base = {"format_version": "1.4.2", "session_id": "a.b-c_1", "captured_at": "2025-01-01T00:00:00.5+02:00"}
    assert validate_json(base, "session_metadata") == []
    assert validate_json(base | {"dropped_frames": 3.0}, "session_metadata") == []      # 3.0 is an integer
    assert validate_json(base | {"dropped_frames": True}, "session_metadata") == [
        "dropped_frames: expected integer or null, got boolean"]
    assert validate_json(base | {"dropped_frames": 2.5}, "session_metadata") == [
        "dropped_frames: expected integer or null, got number"]
    assert validate_json(base | {"session_id": "../x"}, "session_metadata") == [
        "session_id: '../x' does not match ^[A-Za-z0-9][A-Za-z0-9._-]*$"]
    assert validate_json(base | {"resolution": [1920, 0]}, "session_metadata") == [
        "resolution[1]: 0 is below the minimum 1"]
    assert validate_json(base | {"alignment": {"warnings": ["ok", 3]}}, "session_metadata") == [
        "alignment.warnings[1]: expected string, got number"]
    assert validate_json(base | {"future_key": {"anything": 1}}, "session_metadata") == []   # minor versions add keys
    assert validate_json([], "dataset") == ["(root): expected object, got array"]
    assert check_format_version("1.99.0-rc.1+build") is None
    assert "major version 0" in check_format_version("0.9.0")
    assert "not a semantic version" in check_format_version("1.0")
    assert "not a semantic version" in check_format_version(1)


def test_every_packaged_schema_uses_only_implemented_keywords():
    from companion.contract.metadata import SCHEMA_NAMES, _check_keywords, load_schema
    for name in SCHEMA_NAMES:
        s = load_schema(name)
        assert s["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    with pytest.raises(ValueError, match="'oneOf'"):
        _check_keywords({"properties": {"a": {"oneOf": []}}}, "#")


def test_capture_metadata_builder_output_is_valid():
    """The companion's metadata.json (companion/capture/metadata.py) meets the schema."""
    from companion.capture.metadata import build_session_metadata
    from companion.contract.metadata import validate_json
    md = build_session_metadata(
        session_id="s1", started_epoch_ns=1_700_000_000_123_456_789, status="complete",
        end_reason="stopped by user", obs_version="29.0.2", obs_websocket_version="5.1.0",
        video={"fpsNumerator": 60000, "fpsDenominator": 1001, "outputWidth": 1280, "outputHeight": 720,
               "baseWidth": 1920, "baseHeight": 1080},
        encoder={"codec": "h264", "encoder": "obs_x264", "bitrate_kbps": 2500},
        sidecar_stop={"total_frames": 100, "lagged_frames": 1, "skipped_frames": 0},
        consent=True, consent_source="--consent", record_audio=False, privacy={}, keyboard=True,
        mouse=True, window_id=0x3a00007)
    assert validate_json(md, "session_metadata") == []


@pytest.mark.parametrize("algo", ["xxh128", "sha256"])
def test_dataset_checksum_files_when_present(dataset, algo):
    """The contract's checksum files (format 1.2.0; 1.4.0: xxh128 or sha256), written here
    by hand from the contract's text (tests/test_dataset_integrity.py checks the writer's
    own): root integrity.sha256 over dataset.json and the index files,
    index/<video_id>.<algo> over every chunk file, root-relative xxh128sum / sha256sum
    lines. A flipped byte in a listed file is caught and named."""
    import xxhash
    sha = lambda n: hashlib.sha256((dataset / n).read_bytes()).hexdigest()  # noqa: E731
    new = xxhash.xxh3_128 if algo == "xxh128" else hashlib.sha256
    dig = lambda n: new((dataset / n).read_bytes()).hexdigest()  # noqa: E731
    chunk_files = sorted(p.relative_to(dataset).as_posix() for p in dataset.rglob("*")
                         if p.is_file() and p.relative_to(dataset).parts[0] in
                         ("actions", "video", "audio"))
    (dataset / "index").mkdir()
    pq.write_table(pq.read_table(dataset / "index.parquet"), dataset / "index" / "vid0.parquet")
    (dataset / "index" / f"vid0.{algo}").write_text("".join(f"{dig(n)}  {n}\n"
                                                            for n in chunk_files))
    (dataset / "integrity.sha256").write_text("".join(
        f"{sha(n)}  {n}\n" for n in ("dataset.json", "index.parquet", "index/vid0.parquet",
                                     f"index/vid0.{algo}")))
    assert msgs(validate_path(dataset)) == []
    for rel in ("index.parquet", chunk_files[-1]):
        p = dataset / rel
        data = bytearray(p.read_bytes())
        data[len(data) // 2] ^= 0x10
        p.write_bytes(bytes(data))
    out = msgs(validate_path(dataset))
    assert f"{dataset}/index.parquet: sha256 does not match integrity.sha256: the file changed " \
           f"after it was written" in out
    assert f"{dataset}/{chunk_files[-1]}: {algo} does not match index/vid0.{algo}: the file " \
           f"changed after it was written" in out


def test_frames_pts_ns_keyframes_and_slots_against_video(session):
    def damage(t):
        pns = t.column("pts_ns").to_numpy().copy()
        pns[7] += 1000
        kf = t.column("keyframe").to_pylist()
        kf[3] = not kf[3]
        t = set_col(set_col(t, "pts_ns", pns), "keyframe", kf)
        if "slot" in t.column_names:
            sl = t.column("slot").to_numpy().copy()
            sl[9] = sl[8]
            t = set_col(t, "slot", sl)
        return t
    rewrite_parquet(session / "frames.parquet", damage)
    out = "\n".join(msgs(validate_path(session)))
    assert "frames.parquet: pts_ns is not pts x time_base (1/1000 s): row 7" in out
    assert "frames.parquet: keyframe flags differ from the video sess1.mkv at frame 3 (1 frames)" in out
    if "slot" in pq.read_schema(session / "frames.parquet").names:
        assert "frames.parquet: slot is not strictly increasing: row 9" in out


def test_owa_round_trip_across_a_pause_keeps_frame_times(real_outputs, tmp_path):
    from companion.align.session import align_session
    from companion.interop.owa import export_owa
    d, _ = real_outputs
    src = d / "work" / "exp1"
    frames = pq.read_table(src / "frames.parquet")
    t = frames.column("t_ns").to_numpy().copy()
    t[40:] += 2_000_000_000                          # recording paused for 2 s after frame 39
    frames = set_col(frames, "t_ns", t)
    out = tmp_path / "p"
    out.mkdir()
    export_owa(src / "exp1.webm", frames, out / "p.mkv", jsonl=src / "exp1.jsonl")
    align_session(out / "p.mkv", progress=False)
    back = pq.read_table(out / "frames.parquet").column("t_ns").to_numpy()
    assert np.array_equal(back, t)


# --------------------------------------------------------------------------- real OBS recordings

FIXTURES = Path(__file__).parent / "fixtures"


def test_committed_obs_recording_aligned_validates(tmp_path):
    """The committed OBS 29 fixture (H.264 with B-frames, a pause, captions + sidecar),
    aligned by nm-align: valid; a flipped byte in the recording is named."""
    from companion.align.session import align_session
    stem = "obs29_h264_30fps_pause"
    for suffix in (".mkv", ".anchors.jsonl"):
        shutil.copy(FIXTURES / f"{stem}{suffix}", tmp_path / f"{stem}{suffix}")
    (tmp_path / f"{stem}.jsonl").write_text("")
    align_session(tmp_path / f"{stem}.mkv", progress=False)
    assert msgs(validate_path(tmp_path)) == []
    listed = (tmp_path / "integrity.sha256").read_text()
    assert f"{stem}.anchors.jsonl" in listed and f"{stem}.mkv" in listed
    p = tmp_path / f"{stem}.mkv"
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0x04
    p.write_bytes(bytes(data))
    assert any(pr.path == str(p) and "does not match integrity.sha256" in pr.message
               for pr in validate_path(tmp_path))


@pytest.mark.obs
def test_real_obs_capture_session_and_dataset_validate(obs_aligned):
    assert msgs(validate_path(obs_aligned["session"])) == []
    assert msgs(validate_path(obs_aligned["dataset"])) == []


def test_invalid_utf8_in_a_parquet_string_column_is_a_problem_not_a_crash(tmp_path):
    """Found by the fuzzer: a damaged page can hold bytes that are not UTF-8."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from companion.validate.common import Report, read_parquet
    bad = pa.Array.from_buffers(pa.string(), 1, [None, pa.py_buffer(b"\x00\x00\x00\x00\x02\x00\x00\x00"),
                                                 pa.py_buffer(b"\x80\x81")])
    pq.write_table(pa.table({"video_id": bad}), tmp_path / "index.parquet")
    rep = Report(tmp_path)
    assert read_parquet(rep, "index.parquet", ["video_id"]) is None
    assert any("index.parquet" in str(p) for p in rep.problems)
