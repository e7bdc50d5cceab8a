"""Write files made of a header plus byte ranges of a source file, in a child process.

Standard library only: it runs as a script in isolated mode (``child_command``), so it
starts in ~20 ms and nothing on ``PYTHONPATH`` or the package path can shadow what it
imports. The stream-copied chunk MP4s are a header
(``dataset.mp4mux``) followed by the recording's coded frames; copying ~1.3 GB per 10
minutes of 1080p60 is kernel work (``copy_file_range`` on Linux: the bytes never enter
user space; ``pread`` + ``write`` through one reused buffer elsewhere), but ~36 000 small
copies made from a thread of the main process would each wait for the GIL. So the copies
run here, beside the scan and the dataset step.

Jobs on stdin, each: one JSON line ``{"src", "out", "header": H, "n": N}`` (plus
``"sha256": true`` to hash the file), then ``H`` header bytes, then ``N`` little-endian
int64 source offsets and ``N`` int64 sizes. ``out`` is written from scratch (created,
never appended). After each job one JSON line on stdout: ``{"done": out}`` (with
``"sha256": "<hex>"``, the digest of every byte written, when asked) or ``{"error":
"...", "out": out}`` (the file is then removed; later jobs still run). The child exits
when stdin ends.

Hashing needs the bytes in user space, so a hashed job does not use ``copy_file_range``:
it reads a window of the source (up to 1 MiB holding as many consecutive ranges as fit,
the few bytes between them included) with one ``preadv`` into a reused buffer, gathers
the ranges into a reused output buffer, hashes it and writes it with one ``write``: the
dataset's checksum of each chunk MP4 costs no second read of the file
(docs/contracts/dataset-layout.md, "Checksums").
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
from array import array

_O_BIN = getattr(os, "O_BINARY", 0)
_BUF = 1 << 20


def _copy_ranges(src_fd: int, out_fd: int, offsets, sizes) -> None:
    cfr = getattr(os, "copy_file_range", None)
    buf = None
    for off, size in zip(offsets, sizes):
        if size < 0 or off < 0:
            raise ValueError(f"bad range {off}+{size}")
        while size > 0 and cfr is not None:
            try:
                k = cfr(src_fd, out_fd, size, off)
            except OSError:          # not supported between these files: plain copies
                cfr = None
                break
            if k <= 0:
                raise OSError(f"source ends at {off} (short copy)")
            off += k
            size -= k
        while size > 0:              # through one reused buffer
            if buf is None:
                buf = memoryview(bytearray(_BUF))
            want = min(size, _BUF)
            _pread_into(src_fd, buf[:want], off)
            _write_all(out_fd, buf[:want])
            off += want
            size -= want


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


class _Buffers:
    """The reused input and output buffers of the hashed copy."""

    def __init__(self):
        self.inp = memoryview(bytearray(_BUF))
        self.out = memoryview(bytearray(_BUF))


def _copy_ranges_hashed(src_fd: int, out_fd: int, offsets, sizes, h, bufs: _Buffers) -> None:
    """Like ``_copy_ranges``, and every copied byte goes through ``h.update`` in order."""
    inp, outb = bufs.inp, bufs.out
    fill = 0                         # bytes waiting in outb

    def flush() -> None:
        nonlocal fill
        if fill:
            h.update(outb[:fill])
            _write_all(out_fd, outb[:fill])
            fill = 0

    n = len(offsets)
    i = 0
    while i < n:
        off, size = offsets[i], sizes[i]
        if size < 0 or off < 0:
            raise ValueError(f"bad range {off}+{size}")
        if size > _BUF:              # a large range: streamed through the input buffer
            flush()
            while size > 0:
                want = min(size, _BUF)
                _pread_into(src_fd, inp[:want], off)
                h.update(inp[:want])
                _write_all(out_fd, inp[:want])
                off += want
                size -= want
            i += 1
            continue
        # a window: the ranges from i on that lie, in file order, inside [off, off + _BUF)
        j, end = i + 1, off + size
        while j < n and sizes[j] >= 0 and offsets[j] >= end and offsets[j] + sizes[j] <= off + _BUF:
            end = offsets[j] + sizes[j]
            j += 1
        _pread_into(src_fd, inp[:end - off], off)
        for k in range(i, j):
            a, sz = offsets[k] - off, sizes[k]
            if fill + sz > _BUF:
                flush()
            outb[fill:fill + sz] = inp[a:a + sz]
            fill += sz
        i = j
    flush()


def write_job(src_fd: int, out: str, header: bytes, offsets, sizes, hashed: bool = False,
              bufs: _Buffers | None = None) -> str | None:
    """``out`` = ``header`` + the ranges of ``src_fd``, in order. ``hashed``: return the
    file's sha256 hex digest, computed from the bytes as they are written."""
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_BIN, 0o644)
    digest = None
    try:
        _write_all(fd, memoryview(header))
        if hashed:
            h = hashlib.sha256(header)
            _copy_ranges_hashed(src_fd, fd, offsets, sizes, h, bufs or _Buffers())
            digest = h.hexdigest()
        else:
            _copy_ranges(src_fd, fd, offsets, sizes)
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
    bufs = None
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
                hashed = job.get("sha256") is True
                if hashed and bufs is None:
                    bufs = _Buffers()
                digest = write_job(fds[src], out, header, offsets, sizes, hashed, bufs)
                msg = {"done": out, "sha256": digest} if hashed else {"done": out}
            except (OSError, ValueError) as e:
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
