"""Test-only X client for the real-OBS capture (tests/conftest.py ``drive_input``).

Run on the captured display (``DISPLAY`` set). It

- maps two top-level windows titled ``nm-test A`` (left half) and ``nm-test B`` (right
  half) and prints ``<title>\\t<window id>`` for each, then ``ready``, on stdout, so the
  test can move the X input focus between them (``xdotool windowfocus``; there is no
  window manager, and the companion's window tracker then reads the input focus);
- repaints a 640x16 strip at the bottom of the screen every ~4 ms with a counter (16
  blocks, 0 or ``LEVEL`` grey), so every captured frame differs from the one before it and
  a decoder returning a neighbouring frame is caught by a pixel comparison.

Everything it draws is dark (at most ``LEVEL`` = 40 on 0-255, windows black): the
cursor-tracking test (tests/test_e2e_sync.py) finds the cursor as the pixels brighter
than 60 on a black screen, and must still see only the cursor.

Exits after ``--seconds`` (default 30) or when the X server goes away.
"""
from __future__ import annotations

import argparse
import sys
import time

from Xlib import X, Xatom, display as xdisplay

LEVEL = 40
BLOCKS = 16


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--period", type=float, default=0.004)
    a = ap.parse_args()
    d = xdisplay.Display()
    scr = d.screen()
    root = scr.root
    w, h = scr.width_in_pixels, scr.height_in_pixels
    strip_h = 16
    utf8 = d.intern_atom("UTF8_STRING")
    net_name = d.intern_atom("_NET_WM_NAME")
    wins = []
    for i, title in enumerate(("nm-test A", "nm-test B")):
        win = root.create_window(i * (w // 2), 0, w // 2, h - strip_h - 4, 0, scr.root_depth,
                                 X.InputOutput, X.CopyFromParent,
                                 background_pixel=scr.black_pixel,
                                 event_mask=X.FocusChangeMask)
        win.set_wm_name(title)
        win.change_property(net_name, utf8, 8, title.encode())
        win.change_property(Xatom.WM_CLASS, Xatom.STRING, 8, b"nm-test\0NmTest\0")
        win.map()
        wins.append((title, win))
    strip = root.create_window(0, h - strip_h, w, strip_h, 0, scr.root_depth, X.InputOutput,
                               X.CopyFromParent, background_pixel=scr.black_pixel,
                               override_redirect=True)
    strip.map()
    cmap = scr.default_colormap
    grey = cmap.alloc_color(LEVEL * 257, LEVEL * 257, LEVEL * 257).pixel
    gc_on = strip.create_gc(foreground=grey)
    gc_off = strip.create_gc(foreground=scr.black_pixel)
    d.sync()
    for title, win in wins:
        print(f"{title}\t{win.id}", flush=True)
    print("ready", flush=True)
    bw = w // BLOCKS
    end = time.monotonic() + a.seconds
    k = 0
    try:
        while time.monotonic() < end:
            k += 1
            # Gray code: one block changes per repaint, and any two counts differ
            g = k ^ (k >> 1)
            on = [(b * bw, 0, bw, strip_h) for b in range(BLOCKS) if (g >> b) & 1]
            off = [(b * bw, 0, bw, strip_h) for b in range(BLOCKS) if not (g >> b) & 1]
            if on:
                strip.poly_fill_rectangle(gc_on, on)
            if off:
                strip.poly_fill_rectangle(gc_off, off)
            d.sync()
            time.sleep(a.period)
    except Exception:     # the X server went away: the capture is over
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
