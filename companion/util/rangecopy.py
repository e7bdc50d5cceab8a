"""Write files made of a header plus byte ranges of a source file, in a child process.

Standard library only (plus the ``xxhash`` package, imported for the first job that asks
for an XXH3-128 digest): it runs as a script in isolated mode (``child_command``), so it
starts in ~20 ms and nothing on ``PYTHONPATH`` or the package path can shadow what it
imports. The stream-copied chunk MP4s are a header
(``dataset.mp4mux``) followed by the recording's coded frames; copying ~1.3 GB per 10
minutes of 1080p60 is mostly kernel work (page-cache reads and writes), but ~36 000 small
copies made from a thread of the main process would each wait for the GIL. So the copies
run here, beside the scan and the dataset step.

Jobs on stdin, each: one JSON line ``{"src", "out", "header": H, "n": N}`` (plus
``"hash": "xxh128"`` or ``"sha256"`` to hash the file), then ``H`` header bytes, then ``N``
little-endian int64 source offsets and ``N`` int64 sizes. ``out`` is written from scratch
(created, never appended). After each job one JSON line on stdout: ``{"done": out}``
(with ``"hash": algo, "digest": "<hex>"``, the digest of every byte written, when asked)
or ``{"error": "...", "out": out}`` (the file is then removed; later jobs still run).
The child exits when stdin ends.

How the bytes move: a window of the source (up to 1 MiB holding as many consecutive
ranges as fit, the few bytes between them included) is read with one ``preadv`` into a
reused buffer, and the ranges are written straight from it with one ``writev`` (a range
larger than the buffer is streamed through it). Hashing, when asked, reads the same
slices, so the dataset's checksum of each chunk MP4 costs no second read of the file
(docs/contracts/dataset-layout.md, "Checksums"). This beat ``copy_file_range`` per
range, which on ext4 without reflinks splices page by page: 0.75-0.94 s of CPU (user +
system) against 1.03-1.23 s for the 30 chunks of the 10-minute benchmark recording
(docs/benchmarks.md, session 7).
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
from array import array

_O_BIN = getattr(os, "O_BINARY", 0)
_BUF = 1 << 20
_IOV_MAX = 1024                      # POSIX minimum is 16; Linux and macOS allow 1024
_writev = getattr(os, "writev", None)


def _pread_into(src_fd: int, view: memoryview, off: int) -> None:
    """Fill ``view`` from ``src_fd`` at ``off`` (OSError if the source ends first)."""
    got = 0
    while got < len(view):
        if hasattr(os, "preadv"):
            k = os.preadv(src_fd, [view[got:]], off + got)
        else:                        # Windows: no preadv/pread
            os.lseek(src_fd, off + got, os.SEEK_SET)
            data = os.read(src_fd, len(view) - got)
            k = len(data)
            view[got:got + k] = data
        if k <= 0:
            raise OSError(f"source ends at {off + got} (short read)")
        got += k


def _write_all(out_fd: int, view: memoryview) -> None:
    while view:
        view = view[os.write(out_fd, view):]


def _write_slices(out_fd: int, views: list) -> None:
    """Write ``views`` in order: ``writev`` of up to ``_IOV_MAX`` at a time (a short
    write resumes mid-slice), or one ``write`` each where there is no ``writev``."""
    if _writev is None:              # Windows
        for v in views:
            _write_all(out_fd, v)
        return
    i = 0
    while i < len(views):
        batch = views[i:i + _IOV_MAX]
        k = _writev(out_fd, batch)
        for v in batch:              # skip what was written; finish a partial slice
            if k >= len(v):
                k -= len(v)
                i += 1
                continue
            _write_all(out_fd, v[k:])
            i += 1
            break


def _copy_ranges(src_fd: int, out_fd: int, offsets, sizes, h=None,
                 buf: memoryview | None = None) -> None:
    """Append the ranges of ``src_fd`` to ``out_fd`` in order; every copied byte also
    goes through ``h.update`` in order when ``h`` is given. ``buf``: a reused buffer of
    ``_BUF`` bytes."""
    if buf is None:
        buf = memoryview(bytearray(_BUF))
    n = len(offsets)
    i = 0
    while i < n:
        off, size = offsets[i], sizes[i]
        if size < 0 or off < 0:
            raise ValueError(f"bad range {off}+{size}")
        if size > _BUF:              # a large range: streamed through the buffer
            while size > 0:
                want = min(size, _BUF)
                _pread_into(src_fd, buf[:want], off)
                if h is not None:
                    h.update(buf[:want])
                _write_all(out_fd, buf[:want])
                off += want
                size -= want
            i += 1
            continue
        # a window: the ranges from i on that lie, in file order, inside [off, off + _BUF)
        j, end = i + 1, off + size
        while j < n and sizes[j] >= 0 and offsets[j] >= end and offsets[j] + sizes[j] <= off + _BUF:
            end = offsets[j] + sizes[j]
            j += 1
        _pread_into(src_fd, buf[:end - off], off)
        views = [buf[offsets[k] - off:offsets[k] - off + sizes[k]] for k in range(i, j)]
        if h is not None:
            for v in views:
                h.update(v)
        _write_slices(out_fd, views)
        i = j


def new_hash(algo: str):
    """A hash object for a job's ``"hash"`` (the algorithms of ``util.checksum``, which
    this stand-alone script cannot import)."""
    if algo == "sha256":
        return hashlib.sha256()
    if algo == "xxh128":
        import xxhash
        return xxhash.xxh3_128()
    raise ValueError(f"unknown hash {algo!r}")


def write_job(src_fd: int, out: str, header: bytes, offsets, sizes, algo: str | None = None,
              buf: memoryview | None = None) -> str | None:
    """``out`` = ``header`` + the ranges of ``src_fd``, in order. ``algo`` (``"xxh128"``,
    ``"sha256"``): return the file's hex digest, computed from the bytes as they are
    written."""
    h = new_hash(algo) if algo else None    # an unknown one fails before out is made
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_BIN, 0o644)
    digest = None
    try:
        _write_all(fd, memoryview(header))
        if h is not None:
            h.update(header)
        _copy_ranges(src_fd, fd, offsets, sizes, h, buf)
        if h is not None:
            digest = h.hexdigest()
    except BaseException:
        os.close(fd)
        try:
            os.unlink(out)
        except OSError:
            pass
        raise
    os.close(fd)
    return digest


def child_command() -> list[str]:
    """The argv that starts this file as the copy child."""
    return [sys.executable, "-I", os.path.abspath(__file__)]


def _read_exact(f, n: int) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise EOFError("job cut short")
    return data


def main() -> int:
    stdin, stdout = sys.stdin.buffer, sys.stdout
    fds: dict[str, int] = {}
    buf = memoryview(bytearray(_BUF))
    try:
        while True:
            line = stdin.readline()
            if not line:
                return 0
            job = json.loads(line)
            header = _read_exact(stdin, int(job["header"]))
            n = int(job["n"])
            offsets, sizes = array("q"), array("q")
            offsets.frombytes(_read_exact(stdin, 8 * n))
            sizes.frombytes(_read_exact(stdin, 8 * n))
            if sys.byteorder != "little":   # pragma: no cover
                offsets.byteswap()
                sizes.byteswap()
            out = str(job["out"])
            try:
                src = str(job["src"])
                if src not in fds:
                    fds[src] = os.open(src, os.O_RDONLY | _O_BIN)
                algo = job.get("hash")
                digest = write_job(fds[src], out, header, offsets, sizes, algo, buf)
                msg = {"done": out, "hash": algo, "digest": digest} if algo else {"done": out}
            except (OSError, ValueError, ImportError) as e:
                msg = {"error": f"{type(e).__name__}: {e}", "out": out}
            stdout.write(json.dumps(msg) + "\n")
            stdout.flush()
    except (EOFError, ValueError, KeyError) as e:   # a torn job: the parent went away
        stdout.write(json.dumps({"error": f"bad job stream: {e}"}) + "\n")
        stdout.flush()
        return 1
    finally:
        for fd in fds.values():
            os.close(fd)


if __name__ == "__main__":
    sys.exit(main())
