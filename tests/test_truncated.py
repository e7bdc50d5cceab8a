"""Recordings cut short: an interrupted copy, a full disk, a recorder that crashed.

The committed OBS 29 recording (tests/fixtures) is cut in the ways those leave it: the
finalized file losing its last bytes (the segment's declared size then exceeds the file;
a 1% cut loses a single frame, which the duration tags' slack does not notice), and a
never-finalized file (segment of unknown size, as a crashed muxer leaves it) cut inside a
cluster. nm-align refuses both with one line unless --allow-truncated, which aligns the
frames that are there and says so in metadata.json; the result validates."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import av
import pyarrow.parquet as pq
import pytest

from companion.align import mkv
from companion.align.demux import matroska_cut, scan_video
from tests.test_align_session import MKV, SIDECAR, expected_frame_times, write_events

DATA = MKV.read_bytes()


def unknown_size_segment(data: bytes) -> bytes:
    """``data`` with the Segment's size replaced by "unknown" (same vint length), as a
    muxer that never reached its trailer leaves it."""
    b = bytearray(data)
    i = b.find(bytes.fromhex("18538067")) + 4
    n = 1
    while not b[i] & (0x80 >> (n - 1)):
        n += 1
    b[i:i + n] = bytes([0xFF >> (n - 1)]) + b"\xff" * (n - 1)
    return bytes(b)


def unknown_size_clusters(data: bytes) -> bytes:
    """Every Cluster's size made unknown too (a live-written file): each then ends at
    the next level-1 element."""
    b = bytearray(unknown_size_segment(data))
    lay = mkv.parse_layout(data)
    pos = lay.first_cluster
    while pos < lay.segment_end:
        eid, size, d = mkv.read_header(data, pos, len(data))
        if eid == mkv.CLUSTER:
            n = d - pos - 4
            b[pos + 4:d] = bytes([0xFF >> (n - 1)]) + b"\xff" * (n - 1)
        pos = d + size
    return bytes(b)


def _write(tmp_path, name, data) -> Path:
    p = tmp_path / f"{name}.mkv"
    p.write_bytes(data)
    return p


def cluster_offsets(data: bytes) -> list[int]:
    lay = mkv.parse_layout(data)
    out, pos = [], lay.first_cluster
    while pos < lay.segment_end:
        eid, size, d = mkv.read_header(data, pos, len(data))
        if eid == mkv.CLUSTER:
            out.append(pos)
        pos = d + size
    return out


def test_whole_files_are_not_cut(tmp_path):
    assert matroska_cut(MKV) is None
    assert matroska_cut(_write(tmp_path, "unk", unknown_size_segment(DATA))) is None
    assert matroska_cut(_write(tmp_path, "live", unknown_size_clusters(DATA))) is None
    # the live-written form still parses as the same recording
    with av.open(str(tmp_path / "live.mkv")) as c:
        assert sum(1 for p in c.demux(c.streams.video[0]) if p.size) == 91


@pytest.mark.parametrize("keep", [len(DATA) - 1, int(len(DATA) * 0.99), len(DATA) // 2, 800])
def test_finalized_file_cut_anywhere_is_found(tmp_path, keep):
    why = matroska_cut(_write(tmp_path, "cut", DATA[:keep]))
    assert why and "before the end of its Matroska segment" in why


@pytest.mark.parametrize("form", [unknown_size_segment, unknown_size_clusters])
def test_unfinalized_file_cut_inside_a_cluster_is_found(tmp_path, form):
    data = form(DATA)
    second = cluster_offsets(DATA)[1]
    for keep in (second + 3, second + 40, second + 2000, len(data) - 70):
        why = matroska_cut(_write(tmp_path, "crash", data[:keep]))
        assert why and why.startswith("the file ends inside"), (keep, why)
    # cut exactly between clusters: nothing in the file says it is short
    assert matroska_cut(_write(tmp_path, "edge", data[:second])) is None


def test_scan_reports_a_one_frame_cut_the_duration_check_misses(tmp_path):
    s = scan_video(_write(tmp_path, "cut", DATA[:int(len(DATA) * 0.99)]))
    assert s.truncated and "Matroska segment" in s.truncated_reason
    assert len(s.pts) == 90                     # one frame lost: within the duration slack
    assert "DURATION" not in s.truncated_reason


def _session(tmp_path, data) -> Path:
    d = tmp_path / "s1"
    d.mkdir()
    (d / "s1.mkv").write_bytes(data)
    (d / "s1.anchors.jsonl").write_bytes(SIDECAR.read_bytes())
    write_events(d, "s1", expected_frame_times())
    return d


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "companion.cli.align_cli", *map(str, args)],
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("case", ["cut_1pct", "crash"])
def test_refused_with_one_line_then_salvaged_with_allow_truncated(tmp_path, case):
    data = DATA[:int(len(DATA) * 0.99)] if case == "cut_1pct" else \
        unknown_size_segment(DATA)[:cluster_offsets(DATA)[1] + 3000]
    d = _session(tmp_path, data)
    before = sorted(p.name for p in d.iterdir())
    r = _cli(d / "s1.mkv", "--dataset", tmp_path / "ds")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().count("\n") == 0 and "truncated recording" in r.stderr
    assert "--allow-truncated" in r.stderr
    assert sorted(p.name for p in d.iterdir()) == before and not (tmp_path / "ds").exists()

    r = _cli(d / "s1.mkv", "--dataset", tmp_path / "ds", "--allow-truncated", "--quiet")
    assert r.returncode == 0, r.stderr
    assert "warning: truncated recording" in r.stderr
    with av.open(str(d / "s1.mkv")) as c:
        n = sum(1 for p in c.demux(c.streams.video[0]) if p.size)
    frames = pq.read_table(d / "frames.parquet")
    assert frames.num_rows == n < 91
    # the frames that are there keep their exact times (anchors come from the start)
    assert frames.column("t_ns").to_pylist() == expected_frame_times()[:n]
    al = json.loads((d / "metadata.json").read_text())["alignment"]
    assert al["truncated"] and al["start_check"]["method"] is None
    for target in (d, tmp_path / "ds"):
        v = subprocess.run([sys.executable, "-m", "companion.cli.validate_cli", str(target)],
                           capture_output=True, text=True, timeout=120)
        assert v.returncode == 0, v.stdout + v.stderr


def test_whole_recording_has_no_truncated_note(tmp_path):
    d = _session(tmp_path, DATA)
    assert _cli(d / "s1.mkv", "--quiet").returncode == 0
    assert json.loads((d / "metadata.json").read_text())["alignment"]["truncated"] is None
