"""dataset.audio_child: the scan's AAC decoded in a child process (real child processes,
real PyAV). The spool, its placement log and the WAVs cut from it must be byte-identical
to the in-process spool's; anything going wrong falls back without losing audio."""
from __future__ import annotations

import glob
import os
from fractions import Fraction
from pathlib import Path

import pytest

import companion.dataset.audio_child as audio_child
from companion.align.demux import scan_video
from companion.align.session import align_session
from companion.dataset import mux_copy
from companion.dataset.audio import AudioSpool
from companion.dataset.audio_child import ChildAudioSpool, start_process, wanted
from tests.test_align_overlap import _reference, _same_dataset, _session, _Spy, _tree

FIXTURES = sorted(glob.glob(str(Path(__file__).parent / "fixtures" / "*.mkv")))


def _spools(tmp_path, path, **scan_kw):
    """(in-process spool, child spool) after scanning ``path`` once with each."""
    got = {}

    def local(rate, channels):
        got["local"] = AudioSpool(tmp_path / "local.s16", rate, channels)
        return got["local"]

    def child(rate, channels):
        got["child"] = ChildAudioSpool(start_process(), tmp_path / "child.s16", rate, channels)
        return got["child"]

    scan_video(path, audio_sink=local)
    scan_video(path, audio_sink=child, **scan_kw)
    return got["local"], got["child"]


@pytest.mark.parametrize("path", FIXTURES, ids=[Path(p).name for p in FIXTURES])
def test_child_spool_and_wavs_are_byte_identical(tmp_path, path):
    """Real OBS recordings (AAC): same log, same PCM, same WAVs and stats."""
    a, b = _spools(tmp_path, path)
    assert b._sent and b._local is None            # the child decoded it
    assert a.usable(a.rate, a.channels) and b.usable(a.rate, a.channels)
    assert b.proc is None                           # child reaped
    assert list(a._log) == list(b._log) and len(a._log)
    assert (tmp_path / "local.s16").read_bytes() == (tmp_path / "child.s16").read_bytes()
    ranges = [(Fraction(0), Fraction(1)), (Fraction(1), Fraction(5, 2)), (Fraction(5, 2), Fraction(9))]
    wa = [tmp_path / f"a{i}.wav" for i in range(3)]
    wb = [tmp_path / f"b{i}.wav" for i in range(3)]
    assert a.split(ranges, wa) == b.split(ranges, wb)
    assert [p.read_bytes() for p in wa] == [p.read_bytes() for p in wb]


def test_pyav_reader_decodes_in_process_and_stops_the_child(tmp_path):
    """When PyAV's demuxer reads the file (packets one by one), the child is stopped
    and the same spool is made in process."""
    a, b = _spools(tmp_path, FIXTURES[0], mkv_walker=False)
    assert b._local is not None and b.proc is None
    assert b.usable(a.rate, a.channels)
    assert (tmp_path / "local.s16").read_bytes() == (tmp_path / "child.s16").read_bytes()


def test_dead_child_falls_back_to_in_process(tmp_path):
    proc = start_process()
    proc.kill()
    proc.wait()
    got = {}

    def child(rate, channels):
        got["c"] = ChildAudioSpool(proc, tmp_path / "child.s16", rate, channels)
        return got["c"]

    scan_video(FIXTURES[0], audio_sink=child)
    c = got["c"]
    assert c._local is not None and c.usable(c.rate, c.channels)
    a, _ = _spools(tmp_path, FIXTURES[0])
    assert (tmp_path / "local.s16").read_bytes() == (tmp_path / "child.s16").read_bytes()


def test_child_failure_is_reported_not_raised(tmp_path):
    """The child cannot decode (the recording is gone): usable() is False with the
    child's reason; nothing raises, the caller decodes from the file instead."""
    src = tmp_path / "gone.mkv"
    src.write_bytes(b"not a video")
    c = ChildAudioSpool(start_process(), tmp_path / "c.s16", 48000, 2)
    assert c.begin_blocks(src, 1, Fraction(1, 1000), 0) is True
    c.add_blocks([0], [0], [4])            # may already fail: the child may have quit
    c.end_blocks()
    c.finish()
    assert c.usable(48000, 2) is False
    assert c.error is not None and str(c.error)
    c.remove()
    assert not (tmp_path / "c.s16").exists()


def test_walk_cut_short_leaves_the_child_spool_unusable(tmp_path):
    """The walk started streaming blocks and the scan stopped before their end: the
    child sees its input end inside the job; the spool is unusable, nothing raises."""
    a, _ = _spools(tmp_path, FIXTURES[0])
    c = ChildAudioSpool(start_process(), tmp_path / "c.s16", a.rate, a.channels)
    assert c.begin_blocks(FIXTURES[0], 1, Fraction(1, 1000), 0)
    c.finish()                              # no end_blocks: as when the scan failed
    assert c.usable(a.rate, a.channels) is False and "cut short" in str(c.error)


def test_unused_child_is_stopped_by_finish_and_remove(tmp_path):
    c = ChildAudioSpool(start_process(), tmp_path / "c.s16", 48000, 2)
    proc = c.proc
    c.finish()                              # no job will come
    assert c.proc is None and proc.poll() is not None
    assert c.usable(48000, 2) is False
    c2 = ChildAudioSpool(start_process(), tmp_path / "c2.s16", 48000, 2)
    proc2 = c2.proc
    c2.remove()
    assert proc2.poll() is not None


def test_wanted_follows_cpus_and_checksums(monkeypatch):
    # on 2 CPUs only a SHA-256 hashing copy child leaves no room for it (True: XXH3-128)
    for cpus, checksums, want in [(1, False, False), (1, "xxh128", False), (2, "sha256", False),
                                  (2, True, True), (2, "xxh128", True), (2, False, True),
                                  (3, "sha256", True), (8, True, True)]:
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid, n=cpus: set(range(n)),
                            raising=False)
        assert wanted(checksums) is want, (cpus, checksums)


@pytest.mark.parametrize("checksums", [True, False])
def test_dataset_with_the_audio_child_is_identical(tmp_path, monkeypatch, checksums):
    """nm-align --dataset (Python API) with the child forced on: the same dataset as
    without any early work, the child used and reaped, nothing left behind."""
    d = _session(tmp_path, audio="aac")
    ref = _reference(tmp_path, d, monkeypatch)
    monkeypatch.setattr(audio_child, "wanted", lambda checksums: True)
    started = []
    orig = audio_child.start_process

    def spy_start():
        p = orig()
        started.append(p)
        return p
    monkeypatch.setattr(audio_child, "start_process", spy_start)
    spy = _Spy(monkeypatch)
    root = tmp_path / "ds"
    s = align_session(d, dataset=root, chunk_seconds=1.0, progress=False, checksums=checksums)
    assert isinstance(spy.early[0], mux_copy.MuxCopy)
    assert isinstance(spy.spool[0], ChildAudioSpool) and spy.spool[0].finished
    assert len(started) == 1 and started[0].poll() is not None
    assert s["dataset"]["audio"] is True
    _same_dataset(root, _tree(root), tmp_path / "ref", ref)
    assert not list(root.rglob("*.s16"))


def test_cli_no_checksums_on_two_cpus_uses_the_child(tmp_path, monkeypatch):
    """The CLI path a 2-CPU machine takes with --no-checksums: the child decodes."""
    from companion.cli import align_cli
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    d = _session(tmp_path, audio="aac")
    ref = _reference(tmp_path, d, monkeypatch)
    spy = _Spy(monkeypatch)
    root = tmp_path / "ds"
    rc = align_cli.main([str(d / "s1.mkv"), "--dataset", str(root), "--chunk-seconds", "1",
                         "--quiet", "--no-checksums"])
    assert rc == 0
    assert isinstance(spy.spool[0], ChildAudioSpool) and spy.spool[0].finished
    _same_dataset(root, _tree(root), tmp_path / "ref", ref)


def test_walk_giving_up_after_streaming_decodes_in_process(tmp_path, monkeypatch):
    """The walker sent blocks to the child and then gave up on the file (here: made to,
    after 100 blocks, with a batch every 16 audio blocks): PyAV's demuxer reads it
    again, the child is stopped and the spool is made in process, byte-identical."""
    import companion.align.demux as demux
    a, _ = _spools(tmp_path, FIXTURES[0])
    orig = demux.mkv.iter_blocks

    def gives_up(*args, **kw):
        for i, b in enumerate(orig(*args, **kw)):
            if i == 100:
                raise demux.WalkerDeclined("test: gives up mid-file")
            yield b
    monkeypatch.setattr(demux.mkv, "iter_blocks", gives_up)
    monkeypatch.setattr(demux, "AUDIO_FEED_STEP", 16)
    got = {}
    sent = []

    def child(rate, channels):
        got["c"] = c = ChildAudioSpool(start_process(), tmp_path / "child.s16", rate, channels)
        orig_add = c.add_blocks
        c.add_blocks = lambda *cols: sent.append(len(cols[0])) or orig_add(*cols)
        return c

    scan = scan_video(FIXTURES[0], audio_sink=child)
    c = got["c"]
    assert scan.demuxer == "pyav" and sent and c._sent        # blocks went out first
    assert c._local is not None and c.proc is None
    assert c.usable(a.rate, a.channels)
    assert (tmp_path / "local.s16").read_bytes() == (tmp_path / "child.s16").read_bytes()
