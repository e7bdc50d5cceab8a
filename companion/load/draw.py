"""Tiny numpy drawing for previews: rectangles, discs, rings, thick lines, 5x7 bitmap text.

All functions draw in place on an ``(H, W, 3)`` uint8 RGB array, clip to its bounds,
take pixel coordinates (x right, y down; floats are rounded) and an RGB colour tuple.
``alpha`` blends: 1.0 paints, 0.5 mixes half with what is there. No dependency beyond
numpy (no Pillow, no fonts on disk).
"""
from __future__ import annotations

import numpy as np

Color = tuple[int, int, int]

# 5x7 glyphs, one string of 7 rows of 5 bits per character (upper case; lower case is
# drawn upper case; anything unknown is a box).
_GLYPHS = {
    "A": "01110 10001 10001 11111 10001 10001 10001", "B": "11110 10001 10001 11110 10001 10001 11110",
    "C": "01110 10001 10000 10000 10000 10001 01110", "D": "11110 10001 10001 10001 10001 10001 11110",
    "E": "11111 10000 10000 11110 10000 10000 11111", "F": "11111 10000 10000 11110 10000 10000 10000",
    "G": "01110 10001 10000 10111 10001 10001 01111", "H": "10001 10001 10001 11111 10001 10001 10001",
    "I": "01110 00100 00100 00100 00100 00100 01110", "J": "00111 00010 00010 00010 00010 10010 01100",
    "K": "10001 10010 10100 11000 10100 10010 10001", "L": "10000 10000 10000 10000 10000 10000 11111",
    "M": "10001 11011 10101 10101 10001 10001 10001", "N": "10001 10001 11001 10101 10011 10001 10001",
    "O": "01110 10001 10001 10001 10001 10001 01110", "P": "11110 10001 10001 11110 10000 10000 10000",
    "Q": "01110 10001 10001 10001 10101 10010 01101", "R": "11110 10001 10001 11110 10100 10010 10001",
    "S": "01111 10000 10000 01110 00001 00001 11110", "T": "11111 00100 00100 00100 00100 00100 00100",
    "U": "10001 10001 10001 10001 10001 10001 01110", "V": "10001 10001 10001 10001 10001 01010 00100",
    "W": "10001 10001 10001 10101 10101 10101 01010", "X": "10001 10001 01010 00100 01010 10001 10001",
    "Y": "10001 10001 10001 01010 00100 00100 00100", "Z": "11111 00001 00010 00100 01000 10000 11111",
    "0": "01110 10001 10011 10101 11001 10001 01110", "1": "00100 01100 00100 00100 00100 00100 01110",
    "2": "01110 10001 00001 00010 00100 01000 11111", "3": "11111 00010 00100 00010 00001 10001 01110",
    "4": "00010 00110 01010 10010 11111 00010 00010", "5": "11111 10000 11110 00001 00001 10001 01110",
    "6": "00110 01000 10000 11110 10001 10001 01110", "7": "11111 00001 00010 00100 01000 01000 01000",
    "8": "01110 10001 10001 01110 10001 10001 01110", "9": "01110 10001 10001 01111 00001 00010 01100",
    " ": "00000 00000 00000 00000 00000 00000 00000", ".": "00000 00000 00000 00000 00000 01100 01100",
    ",": "00000 00000 00000 00000 01100 00100 01000", ":": "00000 01100 01100 00000 01100 01100 00000",
    "-": "00000 00000 00000 11111 00000 00000 00000", "+": "00000 00100 00100 11111 00100 00100 00000",
    "/": "00001 00010 00010 00100 01000 01000 10000", "(": "00010 00100 01000 01000 01000 00100 00010",
    ")": "01000 00100 00010 00010 00010 00100 01000", "[": "01110 01000 01000 01000 01000 01000 01110",
    "]": "01110 00010 00010 00010 00010 00010 01110", "=": "00000 00000 11111 00000 11111 00000 00000",
    "_": "00000 00000 00000 00000 00000 00000 11111", "'": "00100 00100 01000 00000 00000 00000 00000",
    "?": "01110 10001 00001 00010 00100 00000 00100", "!": "00100 00100 00100 00100 00100 00000 00100",
    "#": "01010 01010 11111 01010 11111 01010 01010", "%": "11000 11001 00010 00100 01000 10011 00011",
    "*": "00000 00100 10101 01110 10101 00100 00000", ";": "00000 01100 01100 00000 01100 00100 01000",
    "<": "00010 00100 01000 10000 01000 00100 00010", ">": "01000 00100 00010 00001 00010 00100 01000",
    "\\": "10000 01000 01000 00100 00010 00010 00001", "`": "01000 00100 00010 00000 00000 00000 00000",
    '"': "01010 01010 01010 00000 00000 00000 00000", "^": "00100 01010 10001 00000 00000 00000 00000",
    "|": "00100 00100 00100 00100 00100 00100 00100", "~": "00000 00000 01000 10101 00010 00000 00000",
}
_BOX = "11111 10001 10001 10001 10001 10001 11111"
GLYPH_W, GLYPH_H = 5, 7
_CACHE: dict[str, np.ndarray] = {}


def glyph(ch: str) -> np.ndarray:
    """bool (7, 5) bitmap of a character."""
    ch = ch.upper()
    g = _CACHE.get(ch)
    if g is None:
        rows = _GLYPHS.get(ch, _BOX).split()
        g = np.array([[c == "1" for c in r] for r in rows], bool)
        _CACHE[ch] = g
    return g


def _blend(region: np.ndarray, mask: np.ndarray, color: Color, alpha: float) -> None:
    c = np.asarray(color, np.float32)
    if alpha >= 1.0:
        region[mask] = c.astype(np.uint8)
    else:
        px = region[mask].astype(np.float32)
        region[mask] = (px * (1 - alpha) + c * alpha + 0.5).astype(np.uint8)


def fill_rect(img: np.ndarray, x0: float, y0: float, x1: float, y1: float, color: Color,
              alpha: float = 1.0) -> None:
    """Fill the rectangle [x0, x1) x [y0, y1)."""
    h, w = img.shape[:2]
    x0, x1 = max(0, int(round(x0))), min(w, int(round(x1)))
    y0, y1 = max(0, int(round(y0))), min(h, int(round(y1)))
    if x0 >= x1 or y0 >= y1:
        return
    reg = img[y0:y1, x0:x1]
    _blend(reg, np.ones(reg.shape[:2], bool), color, alpha)


def _circle_mask(img, cx, cy, r_out, r_in):
    h, w = img.shape[:2]
    x0, x1 = max(0, int(np.floor(cx - r_out))), min(w, int(np.ceil(cx + r_out)) + 1)
    y0, y1 = max(0, int(np.floor(cy - r_out))), min(h, int(np.ceil(cy + r_out)) + 1)
    if x0 >= x1 or y0 >= y1:
        return None, None
    yy, xx = np.mgrid[y0:y1, x0:x1]
    d2 = (xx - cx) ** 2 + (yy - cy) ** 2
    m = d2 <= r_out ** 2
    if r_in > 0:
        m &= d2 >= r_in ** 2
    return (slice(y0, y1), slice(x0, x1)), m


def disc(img: np.ndarray, cx: float, cy: float, r: float, color: Color, alpha: float = 1.0) -> None:
    """Filled circle of radius ``r`` px centred on (cx, cy)."""
    sl, m = _circle_mask(img, cx, cy, r, -1.0)
    if sl is not None:
        _blend(img[sl], m, color, alpha)


def ring(img: np.ndarray, cx: float, cy: float, r: float, thickness: float, color: Color,
         alpha: float = 1.0) -> None:
    """Circle outline: radii from ``r - thickness`` to ``r``."""
    sl, m = _circle_mask(img, cx, cy, r, max(0.0, r - thickness))
    if sl is not None:
        _blend(img[sl], m, color, alpha)


def line(img: np.ndarray, x0: float, y0: float, x1: float, y1: float, color: Color,
         thickness: int = 2, alpha: float = 1.0) -> None:
    """Thick segment from (x0, y0) to (x1, y1) (square pen of ``thickness`` px)."""
    h, w = img.shape[:2]
    n = int(max(abs(x1 - x0), abs(y1 - y0))) + 1
    if n > 4 * (w + h):         # far off-screen: skip rather than stamp millions of points
        return
    xs = np.rint(np.linspace(x0, x1, n)).astype(np.int64)
    ys = np.rint(np.linspace(y0, y1, n)).astype(np.int64)
    r0 = thickness // 2
    # work in the segment's bounding box only (a full-frame mask per segment is slow)
    bx0, by0 = max(0, int(xs.min()) - r0), max(0, int(ys.min()) - r0)
    bx1 = min(w, int(xs.max()) + thickness - r0)
    by1 = min(h, int(ys.max()) + thickness - r0)
    if bx0 >= bx1 or by0 >= by1:
        return
    mask = np.zeros((by1 - by0, bx1 - bx0), bool)
    for dy in range(-r0, thickness - r0):
        for dx in range(-r0, thickness - r0):
            x, y = xs + dx, ys + dy
            ok = (x >= bx0) & (x < bx1) & (y >= by0) & (y < by1)
            mask[y[ok] - by0, x[ok] - bx0] = True
    _blend(img[by0:by1, bx0:bx1], mask, color, alpha)


def text_size(s: str, scale: int = 2) -> tuple[int, int]:
    """(width, height) in px of ``s`` drawn at ``scale`` (1 px gap between glyphs)."""
    return (len(s) * (GLYPH_W + 1) - 1) * scale if s else 0, GLYPH_H * scale


def text(img: np.ndarray, x: float, y: float, s: str, color: Color = (255, 255, 255),
         scale: int = 2, bg: Color | None = None, bg_alpha: float = 0.6, pad: int = 3) -> int:
    """Draw ``s`` with its top-left at (x, y); an optional padded background box.

    Returns the x just past the drawn box (for laying out several labels in a row).
    """
    tw, th = text_size(s, scale)
    x, y = int(round(x)), int(round(y))
    if bg is not None:
        fill_rect(img, x - pad, y - pad, x + tw + pad, y + th + pad, bg, bg_alpha)
    h, w = img.shape[:2]
    for k, ch in enumerate(s):
        g = glyph(ch)
        if scale > 1:
            g = np.kron(g, np.ones((scale, scale), bool)).astype(bool)
        gx = x + k * (GLYPH_W + 1) * scale
        # clip the glyph to the image
        ax0, ay0 = max(0, -gx), max(0, -y)
        ax1, ay1 = min(g.shape[1], w - gx), min(g.shape[0], h - y)
        if ax0 >= ax1 or ay0 >= ay1:
            continue
        reg = img[y + ay0:y + ay1, gx + ax0:gx + ax1]
        _blend(reg, g[ay0:ay1, ax0:ax1], color, 1.0)
    return x + tw + pad * 2 + 2
