"""Which events log belongs to which recording, and arguments refused before any write.

On the committed OBS 29 recording (tests/fixtures) with events logs in the companion's
exact shape: a log of another session (its session.start names another id) and a log
from before or after the recording are refused with one line and nothing written; a log
that overlaps the recording, also one whose session.start comes after the first frame
(watch mode attaches to a recording already running) or a log without a session.start
(open-world-agents, zip exports), is accepted."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_align_session import MKV, SIDECAR, expected_frame_times, line, write_events

S = 1_000_000_000


def _session(tmp_path, name="s1"):
    d = tmp_path / name
    d.mkdir()
    (d / f"{name}.mkv").write_bytes(MKV.read_bytes())
    (d / f"{name}.anchors.jsonl").write_bytes(SIDECAR.read_bytes())
    return d


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "companion.cli.align_cli", *map(str, args)],
                          capture_output=True, text=True, timeout=120)


def _refused(r, d, before, what):
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and r.stderr.strip().count("\n") == 0, r.stderr
    assert what in r.stderr, r.stderr
    assert sorted(p.name for p in d.iterdir()) == before


def test_log_of_another_session_is_refused(tmp_path):
    d = _session(tmp_path)
    write_events(d, "other", expected_frame_times())        # session.start names "other"
    (d / "other.jsonl").rename(d / "s1.jsonl")
    before = sorted(p.name for p in d.iterdir())
    r = _cli(d / "s1.mkv")
    _refused(r, d, before, "was logged for session 'other', not 's1'")
    assert "--session-id other" in r.stderr
    # the companion's metadata.json names the session: the files' names do not matter
    (d / "metadata.json").write_text(json.dumps({"format_version": "1.1.0", "session_id": "other",
                                                 "captured_at": "2026-01-01T00:00:00Z"}))
    assert _cli(d / "s1.mkv", "--quiet").returncode == 0
    # ... and the id given on the command line is what a renamed session is checked against
    (d / "metadata.json").unlink()
    assert _cli(d / "s1.mkv", "--quiet", "--session-id", "other").returncode == 0


@pytest.mark.parametrize("shift_s", [-60, 60, -86400])
def test_log_from_before_or_after_the_recording_is_refused(tmp_path, shift_s):
    d = _session(tmp_path)
    ft = expected_frame_times()
    span = ft[-1] - ft[0]
    # the whole log moved clear of the recording, 10 s slack included
    shift = shift_s * S + (span if shift_s > 0 else -span)
    write_events(d, "s1", [t + shift for t in ft])
    before = sorted(p.name for p in d.iterdir())
    _refused(_cli(d / "s1.mkv"), d, before, "does not belong to s1.mkv")


@pytest.mark.parametrize("shift_s", [-8, 8])
def test_log_overlapping_within_the_slack_is_accepted(tmp_path, shift_s):
    """A log that starts up to 10 s after the recording ends (or ends 10 s before it
    starts) is still taken: a slow stop or start of the recording."""
    d = _session(tmp_path)
    ft = expected_frame_times()
    # write_events' log runs from 5 ms before the first frame to 10 s after the last
    first, last = ft[0] - 5_000_000, ft[-1] + 10 * S
    shift = (ft[-1] + 8 * S - first) if shift_s > 0 else (ft[0] - 8 * S - last)
    write_events(d, "s1", [t + shift for t in ft])
    r = _cli(d / "s1.mkv", "--quiet")
    assert r.returncode == 0, r.stderr


def test_watch_mode_log_and_log_without_session_start_are_accepted(tmp_path):
    d = _session(tmp_path)
    ft = expected_frame_times()
    # watch mode: the session (and its marker) starts after the recording's first frames
    lines = [line(ft[5], "recorder", {"event": "session.start", "session_id": "s1"}),
             line(ft[6], "recorder", {"event": "recording.started", "attached": True}),
             line(ft[20], "control_publisher", ["keyboard.press", 87, "w"]),
             line(ft[21], "control_publisher", ["keyboard.release", 87, "w"])]
    (d / "s1.jsonl").write_text("\n".join(lines) + "\n")
    assert _cli(d / "s1.mkv", "--quiet").returncode == 0
    # no session.start at all (an open-world-agents log): only the time rule applies
    (d / "s1.jsonl").write_text("\n".join(lines[2:]) + "\n")
    assert _cli(d / "s1.mkv", "--quiet").returncode == 0


@pytest.mark.parametrize("value", ["nan", "inf", "-1", "0"])
def test_bad_chunk_length_is_refused_before_anything_is_written(tmp_path, value):
    d = _session(tmp_path)
    write_events(d, "s1", expected_frame_times())
    before = sorted(p.name for p in d.iterdir())
    r = _cli(d / "s1.mkv", "--dataset", tmp_path / "ds", "--chunk-seconds", value)
    _refused(r, d, before, "--chunk-seconds must be a positive number")
    assert not (tmp_path / "ds").exists()
    from companion.align.session import align_session
    from companion.util.errors import BadInput
    with pytest.raises(BadInput, match="chunk length"):
        align_session(d / "s1.mkv", dataset=tmp_path / "ds", chunk_seconds=float(value),
                      progress=False)
    assert sorted(p.name for p in d.iterdir()) == before and not (tmp_path / "ds").exists()


def _readonly_dir(tmp_path):
    """A read-only tmpfs (a real EROFS file system); None where this machine cannot mount."""
    ro = tmp_path / "ro"
    ro.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "none", str(ro)],
                       capture_output=True, text=True)
    return ro if r.returncode == 0 else None


@pytest.mark.parametrize("case", ["root_is_file", "foreign_folder", "bad_video_id",
                                  "bad_default_id", "read_only"])
def test_dataset_problems_are_found_before_any_output(tmp_path, case):
    name = "my game" if case == "bad_default_id" else "s1"
    d = _session(tmp_path, name)
    write_events(d, name, expected_frame_times())
    root = tmp_path / "ds"
    args = []
    code, what = 2, ""
    if case == "root_is_file":
        root.write_text("not a folder")
        what = "is not a directory"
    elif case == "foreign_folder":
        root.mkdir()
        (root / "holiday.jpg").write_bytes(b"x")
        what = "not a dataset root"
    elif case == "bad_video_id":
        args = ["--video-id", "../escape"]
        what = "invalid video id"
    elif case == "bad_default_id":
        what = "invalid video id 'my game'"
    else:
        ro = _readonly_dir(tmp_path)
        if ro is None:
            pytest.skip("cannot mount a read-only tmpfs here (needs root with mount rights)")
        root = ro / "ds"
        code, what = 4, "not writable (read-only file system)"
    before = sorted(p.name for p in d.iterdir())
    try:
        r = _cli(d / f"{name}.mkv", "--dataset", root, *args)
    finally:
        if case == "read_only":
            subprocess.run(["umount", str(tmp_path / "ro")], check=False)
    assert r.returncode == code, r.stderr
    assert "Traceback" not in r.stderr and r.stderr.strip().count("\n") == 0, r.stderr
    assert what in r.stderr, r.stderr
    assert sorted(p.name for p in d.iterdir()) == before


def test_torn_last_line_and_unknown_kinds_are_warned_on_stderr(tmp_path):
    d = _session(tmp_path)
    ft = expected_frame_times()
    write_events(d, "s1", ft, extra_lines=[line(ft[3], "gamepad_publisher", ["pad.button", 1])])
    with open(d / "s1.jsonl", "a") as f:
        f.write('{"timestamp_ns": 17952492')             # the logger killed mid-write
    r = _cli(d / "s1.mkv", "--quiet")
    assert r.returncode == 0, r.stderr
    assert "warning: s1.jsonl ends in a torn line" in r.stderr
    assert "warning: 1 line(s) of s1.jsonl are of kinds nm-align does not know" in r.stderr
    al = json.loads((d / "metadata.json").read_text())["alignment"]
    assert al["events_torn_tail"] and al["events_skipped_lines"] == 1
    assert any("torn line" in w for w in al["warnings"])


def test_new_dataset_root_files_are_readable_by_others(tmp_path):
    """dataset.json was created 0600 (mkstemp's mode) while every other file follows the
    umask: a dataset shared with other users could not be opened."""
    import os
    d = _session(tmp_path)
    write_events(d, "s1", expected_frame_times())
    old = os.umask(0o022)
    try:
        assert _cli(d / "s1.mkv", "--dataset", tmp_path / "ds", "--quiet").returncode == 0
    finally:
        os.umask(old)
    for p in (tmp_path / "ds").rglob("*"):
        if p.is_file() and not p.name.startswith("."):
            assert p.stat().st_mode & 0o777 == 0o644, p


def test_outputs_elsewhere_with_out_still_validate_and_preview(tmp_path):
    """--out DIR: the outputs go to DIR, the recording stays where it is;
    alignment.video_file is its path relative to DIR, which nm-validate and nm-preview
    follow (the recording is then outside DIR's integrity.sha256, which says so)."""
    from companion.load.preview import load_session
    from companion.validate.session import session_report
    d = _session(tmp_path)
    write_events(d, "s1", expected_frame_times())
    out = tmp_path / "outputs" / "s1"
    r = _cli(d / "s1.mkv", "--out", out, "--quiet")
    assert r.returncode == 0, r.stderr
    al = json.loads((out / "metadata.json").read_text())["alignment"]
    assert al["video_file"] == "../../s1/s1.mkv"
    rep = session_report(out)
    assert rep.problems == [] and rep.facts["frames"] == 91
    assert rep.facts["recording_outside"] == "../../s1/s1.mkv"
    src = load_session(out)
    assert Path(src.video).resolve() == (d / "s1.mkv").resolve() and len(src.file_frames) == 91
    v = subprocess.run([sys.executable, "-m", "companion.cli.validate_cli", str(out)],
                       capture_output=True, text=True, timeout=120)
    assert v.returncode == 0, v.stdout + v.stderr
    # the outputs there are still covered: a changed byte is named
    p = out / "events.parquet"
    b = bytearray(p.read_bytes())
    b[len(b) // 2] ^= 1
    p.write_bytes(bytes(b))
    assert any("events.parquet" in str(x) for x in session_report(out).problems)
    # and the session folder itself holds no outputs
    assert sorted(x.name for x in d.iterdir()) == ["s1.anchors.jsonl", "s1.jsonl", "s1.mkv"]
