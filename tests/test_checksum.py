"""util.checksum (the per-video dataset checksum algorithms, format 1.4.0) and what
nm-align and nm-validate do when the xxhash package is missing."""
from __future__ import annotations

import hashlib
import subprocess
import sys

import pytest
import xxhash

from companion.util import checksum


def test_algorithms_digests_and_names(tmp_path):
    data = b"x" * 3_000_001            # spans several 1 MiB reads
    p = tmp_path / "f.bin"
    p.write_bytes(data)
    assert checksum.file_digest(p, "sha256") == hashlib.sha256(data).hexdigest()
    assert checksum.file_digest(p, "xxh128") == xxhash.xxh3_128(data).hexdigest()
    assert checksum.bytes_digest("xxh128", b"") == "99aa06d3014798d86001c324468d497f"
    for algo in checksum.ALGORITHMS:
        assert len(checksum.bytes_digest(algo, data)) == checksum.HEX_DIGITS[algo]
    assert checksum.DEFAULT == "xxh128"
    assert checksum.algorithm_of("v1.xxh128") == "xxh128"
    assert checksum.algorithm_of("v.1.sha256") == "sha256"
    assert checksum.algorithm_of("v1.parquet") is None
    assert checksum.algorithm_of(".sha256") is None and checksum.algorithm_of("xxh128") is None
    assert checksum.normalize(True) == "xxh128" and checksum.normalize("sha256") == "sha256"
    assert checksum.normalize(False) is None and checksum.normalize(None) is None
    with pytest.raises(ValueError, match="unknown checksum algorithm 'md5'"):
        checksum.normalize("md5")
    with pytest.raises(ValueError):
        checksum.new("md5")


def test_xxh128sum_reads_what_we_write(tmp_path):
    """Our digests are the ones the xxh128sum tool (Debian's xxhash package, which
    scripts/setup.sh installs) prints and checks."""
    import shutil
    if not shutil.which("xxh128sum"):
        pytest.skip("xxh128sum not installed (package xxhash)")
    (tmp_path / "a b.bin").write_bytes(bytes(range(256)) * 999)
    (tmp_path / "c.bin").write_bytes(b"")
    ours = "".join(f"{checksum.file_digest(tmp_path / n, 'xxh128')}  {n}\n"
                   for n in ("a b.bin", "c.bin"))
    theirs = subprocess.run(["xxh128sum", "a b.bin", "c.bin"], cwd=tmp_path,
                            capture_output=True, text=True, check=True).stdout
    assert theirs == ours
    (tmp_path / "sums").write_text(ours)
    assert subprocess.run(["xxh128sum", "-c", "--strict", "sums"], cwd=tmp_path,
                          capture_output=True).returncode == 0


_NO_XXHASH = "import sys; sys.modules['xxhash'] = None\n"


def test_without_the_xxhash_package(tmp_path):
    """Without xxhash (a broken install): the default nm-align --dataset stops before
    writing anything with one line naming the way out (exit 4); --checksums sha256 and
    --no-checksums still work; nm-validate reports an .xxh128 file it cannot check
    instead of crashing. Runs the real programs in a child interpreter whose
    ``import xxhash`` fails."""
    from tests.test_align_overlap import _session
    s = _session(tmp_path, name="w1", n=40, gop=20, audio=None)
    run = lambda *a: subprocess.run(  # noqa: E731
        [sys.executable, "-c", _NO_XXHASH + "from companion.cli.align_cli import main; "
         "sys.exit(main(sys.argv[1:]))", str(s / "w1.mkv"), "--chunk-seconds", "1",
         "--quiet", *a], capture_output=True, text=True)
    r = run("--dataset", str(tmp_path / "ds"))
    assert r.returncode == 4, r.stderr
    assert r.stderr.strip().splitlines() == [
        "nm-align: error: xxh128 checksums need the xxhash package (pip install xxhash), or "
        "choose --checksums sha256"]
    assert not (tmp_path / "ds").exists()
    assert run("--dataset", str(tmp_path / "ds2"), "--checksums", "sha256").returncode == 0
    assert (tmp_path / "ds2" / "index" / "w1.sha256").is_file()
    # a dataset with an .xxh128 file (written where xxhash is installed)
    from companion.align.session import align_session
    align_session(s / "w1.mkv", out=tmp_path / "o", dataset=tmp_path / "ds3", chunk_seconds=1,
                  progress=False)
    v = subprocess.run([sys.executable, "-c", _NO_XXHASH + "from companion.cli.validate_cli "
                        "import main; sys.exit(main(sys.argv[1:]))", str(tmp_path / "ds3"),
                        "--no-video"], capture_output=True, text=True)
    assert v.returncode == 1, v.stdout + v.stderr
    assert f"{tmp_path / 'ds3'}/index/w1.xxh128: cannot be checked: xxh128 checksums need the " \
           f"xxhash package" in v.stdout, v.stdout
    assert "Traceback" not in v.stderr
