"""Processes: is one still running? How many CPUs may this one use? (Linux, macOS,
Windows.)"""
from __future__ import annotations

import os
import sys


def pid_alive(pid: int) -> bool:
    """True if process ``pid`` exists and is not a zombie (exited, not yet reaped)."""
    if sys.platform == "win32":  # pragma: no cover - Windows only
        # (os.kill(pid, 0) would *terminate* the process on Windows)
        import ctypes
        k32 = ctypes.windll.kernel32
        h = k32.OpenProcess(0x1000, False, int(pid))  # PROCESS_QUERY_LIMITED_INFORMATION
        if not h:
            return False
        try:
            code = ctypes.c_ulong()
            return bool(k32.GetExitCodeProcess(h, ctypes.byref(code))) and code.value == 259
        finally:
            k32.CloseHandle(h)
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            if f.read().rsplit(b")", 1)[-1].split()[0] == b"Z":
                return False
    except (OSError, IndexError):
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


def remove_stale_files(folder, prefix: str) -> int:
    """Delete the files ``<prefix><pid>-...`` in ``folder`` whose process ``pid`` is gone
    (temporary files of a run that was killed). Returns how many were removed; errors
    are ignored (another run may remove the same file)."""
    try:
        names = os.listdir(folder)
    except OSError:
        return 0
    removed = 0
    for name in names:
        if not name.startswith(prefix):
            continue
        pid = name[len(prefix):].split("-", 1)[0]
        if pid.isdigit() and not pid_alive(int(pid)):
            try:
                os.unlink(os.path.join(folder, name))
                removed += 1
            except OSError:
                pass
    return removed


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1
