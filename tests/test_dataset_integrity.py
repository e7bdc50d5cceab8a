"""Dataset integrity and coverage (format 1.2.0; the algorithm a choice since 1.4.0) on
REAL datasets written by nm-align:

- ``walk``: an x264 MKV with AAC (keyframes on the 1 s chunk grid) through
  ``align_session`` with the default checksums (XXH3-128, ``index/<vid>.xxh128``): the
  chunk MP4s come from the Matroska walk, copied and hashed by the ``util.rangecopy``
  child (``copy_tool == "mp4mux"``);
- ``obs``: the committed OBS 29 recording (B-frames, a pause: smart cuts, PyAV writes the
  MP4s, the writer hashes them) with ``checksums="sha256"`` (``index/<vid>.sha256``).

A flipped byte in any file, a flipped bit anywhere in a checksum file, a dropped last
chunk, broken time continuity, fps and shard rule are each caught and named by
nm-validate; older datasets without checksum files still validate.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import xxhash

from companion.align.session import align_session
from companion.contract.version import FORMAT_VERSION
from companion.validate import validate_path, validate_report
from companion.validate.common import Report
from companion.validate.dataset import check_root_checksums, check_video_checksums
from companion.validate.session import check_integrity, parse_integrity
from tests.test_align_overlap import _session

FIXTURES = Path(__file__).parent / "fixtures"
OBS = "obs29_h264_30fps_pause"


def _msgs(problems) -> list[str]:
    return [str(p) for p in problems]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """{"walk": (session folder, dataset root, summary), "obs": (...)}, built once."""
    out = {}
    d = tmp_path_factory.mktemp("walk")
    s = _session(d, name="w1", n=95, gop=30, audio="aac")
    summary = align_session(s / "w1.mkv", dataset=d / "ds", chunk_seconds=1.0, progress=False)
    assert summary["dataset"]["checksums"] == "xxh128"
    out["walk"] = (s, d / "ds", summary)
    d = tmp_path_factory.mktemp("obs")
    for suffix in (".mkv", ".anchors.jsonl"):
        shutil.copy(FIXTURES / f"{OBS}{suffix}", d / f"{OBS}{suffix}")
    (d / f"{OBS}.jsonl").write_text("")
    summary = align_session(d / f"{OBS}.mkv", dataset=d / "ds", chunk_seconds=1.0, progress=False,
                            checksums="sha256")
    assert summary["dataset"]["checksums"] == "sha256"
    out["obs"] = (d, d / "ds", summary)
    return out


@pytest.fixture(params=["walk", "obs"])
def ds(request, built, tmp_path) -> Path:
    """A private copy of one real dataset root."""
    root = tmp_path / "ds"
    shutil.copytree(built[request.param][1], root)
    return root


def _files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                  if p.is_file() and not any(x.startswith(".") for x in
                                             p.relative_to(root).parts))


def _sums(path: Path) -> dict[str, str]:
    return {ln.partition("  ")[2]: ln.partition("  ")[0] for ln in path.read_text().splitlines()}


def _digest(algo: str, data: bytes) -> str:
    return xxhash.xxh3_128(data).hexdigest() if algo == "xxh128" else \
        hashlib.sha256(data).hexdigest()


def _video_sums(root: Path) -> tuple[str, Path, str]:
    """(video id, its checksum file, the file's algorithm) of a one-video dataset."""
    (vid,) = set(pq.read_table(root / "index.parquet").column("video_id").to_pylist())
    (p,) = [root / "index" / f"{vid}.{a}" for a in ("xxh128", "sha256")
            if (root / "index" / f"{vid}.{a}").exists()]
    return vid, p, p.suffix[1:]


def test_the_two_datasets_take_the_two_copy_paths(built):
    assert built["walk"][2]["dataset"]["copy_tool"] == "mp4mux"
    assert built["walk"][2]["dataset"]["audio"] is True
    assert built["obs"][2]["dataset"]["copy_tool"] == "pyav"
    ds = built["obs"][2]["dataset"]
    assert ds["smart_cut"] + ds["reencoded"] > 0      # keyframes off the grid (a pause)


def test_checksum_files_cover_every_file_and_the_tools_accept_them(ds):
    """Every chunk file in the video's checksum file, the index files in the root's;
    ``xxh128sum -c`` / ``sha256sum -c`` (Debian's xxhash and coreutils) accept them."""
    idx = pq.read_table(ds / "index.parquet").to_pylist()
    vid, vfile, algo = _video_sums(ds)
    per_video, root_sums = _sums(vfile), _sums(ds / "integrity.sha256")
    chunk_files = [f for f in _files(ds) if f.split("/")[0] in ("actions", "video", "audio")]
    assert sorted(per_video) == chunk_files
    assert len(chunk_files) == len(idx) * (5 if idx[0]["audio_path"] else 4)
    assert sorted(root_sums) == ["dataset.json", "index.parquet", f"index/{vid}.parquet",
                                 f"index/{vid}.{algo}"]
    for name, digest in per_video.items():
        assert _digest(algo, (ds / name).read_bytes()) == digest, name
    for name, digest in root_sums.items():
        assert hashlib.sha256((ds / name).read_bytes()).hexdigest() == digest, name
    tool = {"xxh128": "xxh128sum", "sha256": "sha256sum"}[algo]
    for exe, files in (("sha256sum", ["integrity.sha256"]), (tool, [f"index/{vid}.{algo}"])):
        if shutil.which(exe):    # scripts/setup.sh installs both (packages coreutils, xxhash)
            r = subprocess.run([exe, "-c", "--strict", *files], cwd=ds, capture_output=True,
                               text=True)
            assert r.returncode == 0, r.stdout + r.stderr
    kind, problems, facts = validate_report(ds)
    assert problems == [] and facts["files_hashed"] == len(per_video) + len(root_sums)
    assert "videos_without_checksums" not in facts
    md = json.loads((ds / idx[0]["actions_dir"] / "metadata.json").read_text())
    assert md["format_version"] == FORMAT_VERSION   # 1.2.0 added them; any later 1.x keeps them
    assert tuple(map(int, FORMAT_VERSION.split(".")[:2])) >= (1, 2)
    assert md["original_video"]["total_frames"] == idx[-1]["end_frame"]
    assert md["original_video"]["total_chunks"] == len(idx)


def test_walk_copy_digests_come_from_the_copy_child(built, tmp_path, monkeypatch):
    """The MP4s of the walk dataset were hashed by the copy child (the writer never
    re-reads them): rebuild it with the writer's own file hashing disabled for .mp4 and
    the checksum file is still complete and right."""
    from companion.util import checksum
    s = built["walk"][0]
    real = checksum.file_digest
    read_mp4 = []

    def spy(path, algo):
        if str(path).endswith(".mp4"):
            read_mp4.append(path)
        return real(path, algo)
    monkeypatch.setattr(checksum, "file_digest", spy)
    for algo in ("xxh128", "sha256"):
        ds = tmp_path / algo
        summary = align_session(s / "w1.mkv", out=tmp_path / "o", dataset=ds,
                                chunk_seconds=1.0, progress=False, checksums=algo)
        assert summary["dataset"]["copy_tool"] == "mp4mux"
        assert read_mp4 == []
        sums = _sums(ds / "index" / f"w1.{algo}")
        mp4 = [n for n in sums if n.endswith(".mp4")]
        assert len(mp4) == summary["dataset"]["chunks"]
        for n in mp4:
            assert _digest(algo, (ds / n).read_bytes()) == sums[n]
        assert validate_path(ds) == []


def test_a_flipped_byte_in_any_file_is_caught_and_named(ds):
    files = _files(ds)
    assert len(files) > 10
    for rel, where in [(f, w) for f in files for w in ("middle", "end")]:
        p = ds / rel
        orig = p.read_bytes()
        data = bytearray(orig)
        # the middle (media / page data) and near the end (Parquet footer, JSON tail)
        data[len(data) // 2 if where == "middle" else len(data) - 10] ^= 0x01
        p.write_bytes(bytes(data))
        try:
            problems = validate_path(ds)
        finally:
            p.write_bytes(orig)
        if rel == "integrity.sha256":       # the root file: a hash or a line breaks
            assert problems, rel
            continue
        algo = _video_sums(ds)[2] if rel.split("/")[0] in ("actions", "video", "audio") \
            else "sha256"       # the root's integrity.sha256 covers the index files
        assert any(pr.path == str(p) and f"{algo} does not match" in pr.message
                   for pr in problems), (rel, where, _msgs(problems))
    assert validate_path(ds) == []


def _sweep(path: Path, check, positions=None) -> int:
    """Flip every bit of ``path`` (of the bytes at ``positions``) in turn; ``check()``
    must report a problem each time. Returns the number of flips."""
    orig = path.read_bytes()
    positions = range(len(orig)) if positions is None else positions
    missed = []
    try:
        for i in positions:
            for bit in range(8):
                data = bytearray(orig)
                data[i] ^= 1 << bit
                path.write_bytes(bytes(data))
                if not check():
                    missed.append((i, bit, bytes(data[max(0, i - 3):i + 4])))
    finally:
        path.write_bytes(orig)
    assert not missed, missed[:5]
    return len(positions) * 8


def test_every_bit_of_the_dataset_integrity_files_is_checked(built, tmp_path):
    """Each single-bit flip anywhere in the root integrity.sha256 of the walk dataset,
    and in the first line, the second line's start and the last bytes of its per-video
    checksum file (xxh128; the obs dataset's sha256 file: the first line), is reported (an
    upper-case hex letter included; every byte of a per-video file took 150 s, the lines
    are alike). Each flip runs the root or the per-video check alone
    (``check_root_checksums`` / ``check_video_checksums``, what ``nm-validate`` runs for
    these files)."""
    for name in ("walk", "obs"):
        ds = tmp_path / name
        shutil.copytree(built[name][1], ds)
        rows = pq.read_table(ds / "index.parquet").to_pylist()
        vid, p, algo = _video_sums(ds)
        parts = sorted(q.name for q in (ds / "index").iterdir())

        def check_root() -> bool:
            rep = Report(ds)
            check_root_checksums(rep, parts)
            return bool(rep.problems)

        def check_video() -> bool:
            rep = Report(ds)
            check_video_checksums(rep, vid, rows, algo)
            return bool(rep.problems)
        assert not check_root() and not check_video()
        text = p.read_bytes()
        n1 = text.index(b"\n") + 1
        if name == "walk":
            assert algo == "xxh128"
            assert _sweep(ds / "integrity.sha256", check_root) > 2000
            assert _sweep(p, check_video, [*range(n1 + 40), *range(len(text) - 4, len(text))]) \
                > 1000
        else:
            assert algo == "sha256"
            assert _sweep(p, check_video, range(n1)) > 800


def test_every_bit_of_a_real_session_integrity_file_is_checked(built, tmp_path):
    s = tmp_path / "s"
    shutil.copytree(built["walk"][0], s)
    sid = json.loads((s / "metadata.json").read_text())["session_id"]

    def check() -> bool:
        rep = Report(s)
        check_integrity(rep, sid)
        return bool(rep.problems)
    assert not check()
    assert _sweep(s / "integrity.sha256", check) > 2000


@pytest.mark.parametrize("algo", ["sha256", "xxh128"])
def test_upper_case_digest_is_refused(algo):
    h = _digest(algo, b"x")
    assert parse_integrity(f"{h}  a\n", algo) == ({"a": h}, [])
    up = h.replace("a", "A", 1) if "a" in h else h.replace("b", "B", 1)
    entries, probs = parse_integrity(f"{up}  a\n", algo)
    assert entries == {} and probs == [
        f"line 1: the {algo} has upper-case hex digits (written lower-case: the line changed)"]
    # a digest of the other algorithm's length is not a line of this file
    other = _digest("xxh128" if algo == "sha256" else "sha256", b"x")
    assert parse_integrity(f"{other}  a\n", algo) == ({}, [f"line 1 is not '<{algo}>  <file>'"])


def _drop_last_chunk(root: Path, rewrite_checksums: bool) -> dict:
    """Remove the last chunk everywhere a careless edit would: its files, its index rows
    (index.parquet and index/<vid>.parquet) and, with ``rewrite_checksums``, its lines of
    the video's checksum file, and the root integrity.sha256 made to match again. Only the
    other chunks' metadata.json still tell the video's length."""
    idx = pq.read_table(root / "index.parquet")
    last = idx.to_pylist()[-1]
    vid = last["video_id"]
    for rel in (last["video_path"], last["audio_path"]):
        if rel:
            (root / rel).unlink()
    shutil.rmtree(root / last["actions_dir"])
    kept = idx.slice(0, idx.num_rows - 1)
    pq.write_table(kept, root / "index.parquet")
    pq.write_table(kept, root / "index" / f"{vid}.parquet")
    if rewrite_checksums:
        _vid, p, _algo = _video_sums(root)
        p.write_text("".join(ln + "\n" for ln in p.read_text().splitlines()
                             if (root / ln.partition("  ")[2]).exists()))
        lines = [f"{hashlib.sha256((root / n).read_bytes()).hexdigest()}  {n}\n"
                 for n in sorted(_sums(root / "integrity.sha256"))]
        (root / "integrity.sha256").write_text("".join(lines))
    return last


@pytest.mark.parametrize("rewrite_checksums", [True, False])
def test_removing_the_last_chunk_is_caught(ds, rewrite_checksums):
    last = _drop_last_chunk(ds, rewrite_checksums)
    out = _msgs(validate_path(ds))
    vid, n = last["video_id"], last["end_frame"]
    assert f"{ds}/index.parquet: video {vid}: frames [{last['start_frame']}, {n}) of the video " \
           f"are in no chunk" in out, out
    assert any(m.endswith(f"original_video.total_chunks {last['chunk_id'] + 1} but index.parquet "
                          f"lists {last['chunk_id']} chunks of video {vid}") for m in out), out
    if rewrite_checksums:       # the checksums were made to agree: coverage alone catches it
        assert not any("does not match" in m or "missing" in m for m in out), out
    else:
        algo = _video_sums(ds)[2]
        assert f"{ds}/{last['video_path']}: listed in index/{vid}.{algo} but missing" in out


def test_coverage_without_checksum_files(ds):
    """A dataset without checksum files (format < 1.2.0 or --no-checksums) is valid and
    says so; the dropped last chunk is still caught from the chunks' total_frames."""
    vid, vfile, _algo = _video_sums(ds)
    (ds / "integrity.sha256").unlink()
    vfile.unlink()
    kind, problems, facts = validate_report(ds)
    assert problems == [] and facts["videos_without_checksums"] == 1
    last = _drop_last_chunk(ds, rewrite_checksums=False)
    assert f"{ds}/index.parquet: video {vid}: frames [{last['start_frame']}, " \
           f"{last['end_frame']}) of the video are in no chunk" in _msgs(validate_path(ds))


def test_root_checksums_required_with_per_video_ones_and_complete(ds):
    vid, p, algo = _video_sums(ds)
    sums = (ds / "integrity.sha256").read_text()
    (ds / "integrity.sha256").unlink()
    assert _msgs(validate_path(ds)) == [
        f"{ds}/integrity.sha256: missing: index/ has per-video checksum files ({vid}.{algo}, "
        f"...), which nm-align writes with it"]
    (ds / "integrity.sha256").write_text("".join(ln + "\n" for ln in sums.splitlines()
                                                 if not ln.endswith(f".{algo}")))
    assert _msgs(validate_path(ds)) == [f"{ds}/index/{vid}.{algo}: not covered by integrity.sha256"]
    # a per-video file missing a chunk file, and listing another video's file
    (ds / "integrity.sha256").write_text(sums)
    lines = p.read_text().splitlines()
    dropped = lines[0].partition("  ")[2]
    p.write_text("\n".join(lines[1:] + [f"{_digest(algo, (ds / 'dataset.json').read_bytes())}"
                                        f"  dataset.json"]) + "\n")
    out = _msgs(validate_path(ds))
    assert f"{ds}/{dropped}: not covered by index/{vid}.{algo}" in out
    assert f"{ds}/index/{vid}.{algo}: lists dataset.json, which is not a file of video {vid}'s " \
           f"chunks" in out
    # a stray file in the video's chunk folder, not in the index either
    p.write_text("\n".join(lines) + "\n")
    ad = pq.read_table(ds / "index.parquet").column("actions_dir")[0].as_py()
    (ds / ad / "extra.bin").write_bytes(b"x")
    assert f"{ds}/{ad}/extra.bin: not covered by index/{vid}.{algo}" in _msgs(validate_path(ds))
    (ds / ad / "extra.bin").unlink()
    # checksum files of both algorithms for one video (nm-align keeps one): the second is
    # reported, and both are still checked
    other = "sha256" if algo == "xxh128" else "xxh128"
    o = ds / "index" / f"{vid}.{other}"
    o.write_text("".join(f"{_digest(other, (ds / ln.partition('  ')[2]).read_bytes())}  "
                         f"{ln.partition('  ')[2]}\n" for ln in lines))
    (ds / "integrity.sha256").write_text(sums + f"{hashlib.sha256(o.read_bytes()).hexdigest()}"
                                                f"  index/{o.name}\n")
    out = _msgs(validate_path(ds))
    assert out == [f"{ds}/index/{vid}.sha256: a second checksum file of video {vid} (beside "
                   f"index/{vid}.xxh128; nm-align keeps one)"], out


def test_no_checksums_flag(built, tmp_path, monkeypatch):
    """nm-align --no-checksums: no per-video checksum file (and the copy child does not
    hash), the root file is kept; a later run without the flag adds it back (xxh128, the
    copy child hashing), ``--checksums sha256`` replaces it by the sha256 file and
    ``--no-checksums`` removes that again."""
    from companion.cli import align_cli
    from companion.dataset import mux_copy
    import companion.dataset.writer as writer_mod
    s = tmp_path / "s"
    shutil.copytree(built["walk"][0], s)
    root = tmp_path / "ds"
    seen = []
    orig = writer_mod.split_video_fast

    def wrapped(*a, **k):
        seen.append(k.get("early"))
        return orig(*a, **k)
    monkeypatch.setattr(writer_mod, "split_video_fast", wrapped)
    run = lambda *extra: align_cli.main([str(s / "w1.mkv"), "--dataset", str(root),  # noqa: E731
                                         "--chunk-seconds", "1", "--quiet", *extra])
    files = lambda: sorted(p.name for p in (root / "index").iterdir())  # noqa: E731
    assert run("--no-checksums") == 0
    assert isinstance(seen[-1], mux_copy.MuxCopy) and seen[-1].checksums is None
    assert seen[-1].digests == {}
    assert files() == ["w1.parquet"] and (root / "integrity.sha256").is_file()
    kind, problems, facts = validate_report(root)
    assert problems == [] and facts["videos_without_checksums"] == 1
    assert run() == 0
    assert seen[-1].checksums == "xxh128" and len(seen[-1].digests) == 4
    assert files() == ["w1.parquet", "w1.xxh128"] and validate_path(root) == []
    assert run("--checksums", "sha256") == 0
    assert seen[-1].checksums == "sha256" and len(seen[-1].digests) == 4
    assert files() == ["w1.parquet", "w1.sha256"] and validate_path(root) == []
    assert "index/w1.xxh128" not in (root / "integrity.sha256").read_text()
    assert run("--no-checksums") == 0
    assert files() == ["w1.parquet"] and validate_path(root) == []
    # the Python API's checksums=False (no early start from the CLI): the same
    from companion.align.session import align_session
    align_session(s / "w1.mkv", dataset=root, chunk_seconds=1, progress=False, checksums=True)
    assert seen[-1].checksums == "xxh128" and files() == ["w1.parquet", "w1.xxh128"]
    align_session(s / "w1.mkv", dataset=root, chunk_seconds=1, progress=False, checksums=False)
    assert isinstance(seen[-1], mux_copy.MuxCopy) and seen[-1].checksums is None
    assert seen[-1].digests == {} and files() == ["w1.parquet"]


def test_parquet_page_checksums_catch_a_damaged_page_without_checksum_files(ds):
    _vid, vfile, _algo = _video_sums(ds)
    (ds / "integrity.sha256").unlink()
    vfile.unlink()
    # an actions file with rows (the OBS fixture has no events: then index.parquet)
    rel = next((f"{ad}/actions_processed.parquet" for ad in
                pq.read_table(ds / "index.parquet").column("actions_dir").to_pylist()
                if pq.ParquetFile(ds / ad / "actions_processed.parquet").metadata.num_rows),
               "index.parquet")
    md = pq.ParquetFile(ds / rel).metadata
    col = md.row_group(0).column(md.schema.names.index("start_t_ns" if rel == "index.parquet"
                                                       else "t_ns"))
    assert md.num_rows > 0
    p = ds / rel
    data = bytearray(p.read_bytes())
    data[col.data_page_offset + col.total_compressed_size - 2] ^= 0x01   # inside the page data
    p.write_bytes(bytes(data))
    out = _msgs(validate_path(ds))
    assert any(m.startswith(f"{ds}/{rel}: not a readable Parquet file") and "CRC" in m
               for m in out), out


# ---- the validator's per-video checks, on the real dataset (tested here first) ----------

def _rewrite_index(root: Path, fn) -> None:
    """Apply ``fn(rows) -> rows`` to index.parquet and the per-video part alike."""
    t = pq.read_table(root / "index.parquet")
    new = pa.Table.from_pylist(fn(t.to_pylist()), schema=t.schema)
    pq.write_table(new, root / "index.parquet")
    for vid in set(new.column("video_id").to_pylist()):
        pq.write_table(new.filter(pa.compute.equal(new.column("video_id"), vid)),
                       root / "index" / f"{vid}.parquet")


def test_time_continuity_is_checked(ds):
    rows = pq.read_table(ds / "index.parquet").to_pylist()

    def damage(rs):
        rs[1]["start_t_ns"] += 1000
        return rs
    _rewrite_index(ds, damage)
    out = _msgs(validate_path(ds, check_videos=False))
    vid = rows[0]["video_id"]
    assert f"{ds}/index.parquet: video {vid}: chunk 0 ends at t_ns {rows[0]['end_t_ns']}, chunk 1 " \
           f"starts at {rows[1]['start_t_ns'] + 1000}" in out, out


def test_fps_disagreement_is_checked(ds):
    rows = pq.read_table(ds / "index.parquet").to_pylist()

    def damage(rs):
        rs[-1]["fps"] = rs[-1]["fps"] * 2
        return rs
    _rewrite_index(ds, damage)
    out = _msgs(validate_path(ds, check_videos=False))
    vid, fps = rows[0]["video_id"], rows[0]["fps"]
    assert f"{ds}/index.parquet: video {vid}: chunks disagree on fps " \
           f"{sorted(map(str, {fps, fps * 2}))}" in out, out
    assert f"{ds}/{rows[-1]['actions_dir']}/metadata.json: original_video.fps " \
           f"{fps} but index.parquet says {fps * 2}" in out, out


def test_shard_rule_is_checked(ds):
    """The video moved, files and all, to another shard than crc32(video_id) % n says:
    only the shard rule can tell."""
    import zlib
    meta = json.loads((ds / "dataset.json").read_text())
    rows = pq.read_table(ds / "index.parquet").to_pylist()
    vid, old = rows[0]["video_id"], rows[0]["shard"]
    assert old == f"SHARD_{zlib.crc32(vid.encode()) % meta['num_shards']:04d}"
    new = f"SHARD_{(int(old[6:]) + 1) % meta['num_shards']:04d}"
    for top in ("actions", "video", "audio"):
        if (ds / top / old).is_dir():
            (ds / top / old).rename(ds / top / new)

    def move(rs):
        for r in rs:
            r["shard"] = new
            for f in ("video_path", "actions_dir", "audio_path"):
                if r[f]:
                    r[f] = r[f].replace(f"/{old}/", f"/{new}/")
        return rs
    _rewrite_index(ds, move)
    (ds / "integrity.sha256").unlink()
    _video_sums(ds)[1].unlink()
    out = _msgs(validate_path(ds, check_videos=False))
    assert out == [f"{ds}/index.parquet: video {vid} is in ['{new}'], the shard rule "
                   f"(crc32(utf8(video_id)) % num_shards, num_shards {meta['num_shards']}) "
                   f"says {old}"], out


def test_copy_child_digests_of_another_algorithm_are_not_used(built, tmp_path):
    """An early start begun for SHA-256 handed to a run that writes XXH3-128: the copy
    child's SHA-256 digests of the MP4s are not taken as XXH3-128 ones (the writer hashes
    the MP4s itself) and the dataset validates."""
    from companion.dataset.early import begin_early
    s = built["walk"][0]
    root = tmp_path / "ds"
    pre = begin_early(s / "w1.mkv", root, 1.0, "w1", checksums="sha256")
    assert pre is not None
    summary = align_session(s / "w1.mkv", out=tmp_path / "o", dataset=root, chunk_seconds=1.0,
                            progress=False, early_start=pre, checksums="xxh128")
    assert summary["dataset"]["copy_tool"] == "mp4mux"
    sums = _sums(root / "index" / "w1.xxh128")
    mp4 = [n for n in sums if n.endswith(".mp4")]
    assert mp4 and all(sums[n] == _digest("xxh128", (root / n).read_bytes()) for n in mp4)
    assert validate_path(root) == []
