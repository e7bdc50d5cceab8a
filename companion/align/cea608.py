"""A CEA-608 (EIA-608) line-21 decoder for data channel 1, enough for OBS captions.

Pure logic, no I/O. OBS turns ``obs_output_output_caption_text2`` text into CEA-608
*pop-on* captions with libcaption: ENM, RCL, a preamble address code (PAC) per row
(tab offsets for odd columns), basic characters two per pair, special / extended
characters as control-like pairs, and EOC sent twice. Text wraps at 32 columns.

Implemented from CEA-608-E (sections 4 and 7 and annex B) / 47 CFR 15.119:

* bytes carry odd parity in bit 7; a control pair with a parity error is ignored,
  a character byte with a parity error shows as a solid block (U+2588);
* a control pair (first byte 0x10-0x1F) repeated immediately is ignored once
  (the "send control codes twice" redundancy), also for special characters;
* pop-on (RCL), paint-on (RDC) and roll-up (RU2-RU4, CR) modes; text mode (TR/RTD)
  input is ignored; pop-on captions are returned on EOC;
* an EOC with nothing loaded since the previous EOC is ignored: libcaption starts each
  cc_data() message with RCL RCL, so its doubled EOC can arrive as EOC RCL RCL EOC,
  and a spec swap there would re-show the previous caption (libcaption's own decoder
  copies instead of swapping, which makes the repeat a no-op as well);
* PAC rows/indents, tab offsets TO1-TO3, BS, DER, EDM, ENM, mid-row codes (one
  space each), the basic, special North American and extended Western European
  character sets.

``Cea608Decoder().feed(b1, b2)`` returns the full text of a caption when one is
displayed (EOC with non-empty memory): rows top to bottom, each stripped of
surrounding blanks, joined with ``"\\n"``; otherwise None.
"""
from __future__ import annotations

ROWS = 15
COLS = 32

# Basic North American set: ASCII except these code points (CEA-608-E table 50).
_BASIC = {i: chr(i) for i in range(0x20, 0x80)}
_BASIC.update({0x2A: "\u00e1", 0x5C: "\u00e9", 0x5E: "\u00ed", 0x5F: "\u00f3",
               0x60: "\u00fa", 0x7B: "\u00e7", 0x7C: "\u00f7", 0x7D: "\u00d1",
               0x7E: "\u00f1", 0x7F: "\u2588"})
# Special North American characters: 0x11/0x19 followed by 0x30-0x3F (table 49).
_SPECIAL = "\u00ae\u00b0\u00bd\u00bf\u2122\u00a2\u00a3\u266a\u00e0\u00a0\u00e8\u00e2\u00ea\u00ee\u00f4\u00fb"
# Extended Western European: 0x12/0x1A (Spanish/French/misc) and 0x13/0x1B
# (Portuguese/German/Danish) followed by 0x20-0x3F (tables 5 and 6). Each replaces the
# character before it (decoders without the extended set showed a basic fallback there).
_EXT_12 = ("\u00c1\u00c9\u00d3\u00da\u00dc\u00fc\u2018\u00a1*'\u2014\u00a9\u2120\u2022\u201c\u201d"
           "\u00c0\u00c2\u00c7\u00c8\u00ca\u00cb\u00eb\u00ce\u00cf\u00ef\u00d4\u00d9\u00f9\u00db\u00ab\u00bb")
_EXT_13 = ("\u00c3\u00e3\u00cd\u00cc\u00ec\u00d2\u00f2\u00d5\u00f5{}\\^_|~"
           "\u00c4\u00e4\u00d6\u00f6\u00df\u00a5\u00a4\u00a6\u00c5\u00e5\u00d8\u00f8\u250c\u2510\u2514\u2518")
# PAC row: first byte (channel bit cleared) -> rows for second byte 0x40-0x5F, 0x60-0x7F.
_PAC_ROWS = {0x11: (0, 1), 0x12: (2, 3), 0x15: (4, 5), 0x16: (6, 7), 0x17: (8, 9),
             0x10: (10, None), 0x13: (11, 12), 0x14: (13, 14)}

SOLID_BLOCK = "\u2588"

_ODD_PARITY = bytes(1 if bin(i).count("1") % 2 else 0 for i in range(256))

POP_ON, PAINT_ON, ROLL_UP, TEXT = "pop-on", "paint-on", "roll-up", "text"


def has_odd_parity(byte: int) -> bool:
    """True if ``byte`` (0-255) has an odd number of set bits, as CEA-608 requires."""
    return bool(_ODD_PARITY[byte & 0xFF])


def with_parity(value: int) -> int:
    """Set bit 7 of a 7-bit value so the byte has odd parity (for building test data)."""
    value &= 0x7F
    return value if has_odd_parity(value) else value | 0x80


class _Memory:
    """One 15x32 caption memory; cells hold a one-character string or None."""

    __slots__ = ("rows",)

    def __init__(self) -> None:
        self.rows: list[list[str | None]] = [[None] * COLS for _ in range(ROWS)]

    def clear(self) -> None:
        for r in self.rows:
            r[:] = [None] * COLS

    def empty(self) -> bool:
        return not any(c is not None and c.strip() for r in self.rows for c in r)

    def text(self) -> str:
        lines = []
        for r in self.rows:
            line = "".join(c if c is not None else " " for c in r).replace("\u00a0", " ").strip()
            if line:
                lines.append(line)
        return "\n".join(lines)


class Cea608Decoder:
    """Stateful decoder for field-1 data channel 1 (CC1).

    Feed the two bytes of every valid field-1 cc_data pair (``cc_valid == 1`` and
    ``cc_type == 0``) in decode order; see :meth:`feed`.
    """

    def __init__(self) -> None:
        self.displayed = _Memory()
        self.nondisplayed = _Memory()
        self.mode: str | None = None
        self.row = ROWS - 1
        self.col = 0
        self.rollup_rows = 2
        self._channel = 1          # data channel selected by the last control code
        self._last_ctrl: tuple[int, int] | None = None
        self._loaded = False       # non-displayed memory changed since the last EOC
        self.captions_shown = 0
        self.parity_errors = 0

    # -- public -----------------------------------------------------------------
    def feed(self, byte1: int, byte2: int) -> str | None:
        """Process one byte pair (parity bits included). Returns the caption text when a
        pop-on caption with any visible character is displayed (EOC), else None."""
        p1, p2 = has_odd_parity(byte1), has_odd_parity(byte2)
        b1, b2 = byte1 & 0x7F, byte2 & 0x7F
        if 0x10 <= b1 <= 0x1F:  # control pair (or special / extended character)
            if not (p1 and p2):
                self.parity_errors += 1
                self._last_ctrl = None
                return None
            if self._last_ctrl == (b1, b2):
                self._last_ctrl = None  # the redundant copy
                return None
            self._last_ctrl = (b1, b2)
            self._channel = 2 if b1 & 0x08 else 1
            if self._channel != 1:
                return None
            return self._control(b1 & 0x17, b2)
        if b1 == 0 and b2 == 0:
            return None  # padding keeps the pending control pair for its repeat
        self._last_ctrl = None
        if b1 < 0x10:
            return None  # XDS (field 2 only) or a stray null-led pair
        if self._channel != 1 or self.mode is None or self.mode == TEXT:
            return None
        for b, ok in ((b1, p1), (b2, p2)):
            if b >= 0x20:
                self._put(_BASIC[b] if ok else SOLID_BLOCK)
            elif not ok:
                self.parity_errors += 1
        return None

    def feed_triplets(self, triplets) -> list[str]:
        """Feed ``(cc_valid, cc_type, b1, b2)`` triplets; keep field-1 valid ones.
        Returns the captions displayed, in order."""
        out = []
        for valid, typ, b1, b2 in triplets:
            if valid and typ == 0:
                t = self.feed(b1, b2)
                if t is not None:
                    out.append(t)
        return out

    # -- internals --------------------------------------------------------------
    def _target(self) -> _Memory:
        return self.nondisplayed if self.mode == POP_ON else self.displayed

    def _touch(self) -> None:
        if self.mode == POP_ON:
            self._loaded = True

    def _put(self, ch: str) -> None:
        # ``col`` may be COLS ("past the last column"): characters then overwrite column 31
        self._touch()
        mem = self._target()
        mem.rows[self.row][min(self.col, COLS - 1)] = ch
        self.col = min(self.col + 1, COLS)

    def _backspace(self) -> None:
        self._touch()
        if self.col > 0:
            self.col -= 1
        self._target().rows[self.row][self.col] = None

    def _control(self, b1: int, b2: int) -> str | None:
        # b1 here is in 0x10-0x17 (channel bit cleared)
        if b2 >= 0x40:
            self._pac(b1, b2)
            return None
        if b2 < 0x20:
            return None
        if b1 in (0x14, 0x15):  # miscellaneous control codes (0x15 = field 2 variant)
            return self._misc(b2)
        if b1 == 0x17 and 0x21 <= b2 <= 0x23:  # TO1-TO3
            self.col = min(COLS - 1, self.col + (b2 - 0x20))
            return None
        if self.mode is None or self.mode == TEXT:
            return None
        if b1 == 0x11:
            if b2 >= 0x30:
                self._put(_SPECIAL[b2 - 0x30])
            else:  # mid-row style code: displayed as a space
                self._put(" ")
        elif b1 in (0x12, 0x13) and b2 >= 0x20:
            self._backspace()
            self._put((_EXT_12 if b1 == 0x12 else _EXT_13)[b2 - 0x20])
        # 0x10 0x20-0x2F background and 0x17 0x24-0x2F attribute codes: no text effect
        return None

    def _pac(self, b1: int, b2: int) -> None:
        rows = _PAC_ROWS.get(b1)
        if rows is None:
            return
        row = rows[1] if b2 & 0x20 else rows[0]
        if row is None:
            return
        attr = b2 & 0x1F
        col = ((attr & 0x0E) >> 1) * 4 if attr & 0x10 else 0
        if self.mode == ROLL_UP and row != self.row:
            self._move_rollup_window(row)
        self.row, self.col = row, col

    def _move_rollup_window(self, new_base: int) -> None:
        mem = self.displayed
        n = self.rollup_rows
        kept = [mem.rows[self.row - k][:] if self.row - k >= 0 else [None] * COLS for k in range(n)]
        mem.clear()
        for k in range(n):
            if new_base - k >= 0:
                mem.rows[new_base - k] = kept[k]

    def _misc(self, b2: int) -> str | None:
        if b2 == 0x20:  # RCL resume caption loading
            self.mode = POP_ON
        elif b2 == 0x21:  # BS
            if self.mode not in (None, TEXT):
                self._backspace()
        elif b2 == 0x24:  # DER delete to end of row
            if self.mode not in (None, TEXT):
                self._touch()
                row = self._target().rows[self.row]
                c = min(self.col, COLS)
                row[c:] = [None] * (COLS - c)
        elif 0x25 <= b2 <= 0x27:  # RU2-RU4
            if self.mode != ROLL_UP:
                self.displayed.clear()
                self.nondisplayed.clear()
                self.row, self.col = ROWS - 1, 0
            self.mode = ROLL_UP
            self.rollup_rows = b2 - 0x23
        elif b2 == 0x29:  # RDC resume direct captioning (paint-on)
            self.mode = PAINT_ON
        elif b2 in (0x2A, 0x2B):  # TR, RTD: text service
            self.mode = TEXT
        elif b2 == 0x2C:  # EDM erase displayed memory
            self.displayed.clear()
        elif b2 == 0x2D:  # CR carriage return
            if self.mode == ROLL_UP:
                rows = self.displayed.rows
                top = max(0, self.row - self.rollup_rows + 1)
                for r in range(top, self.row):
                    rows[r] = rows[r + 1]
                rows[self.row] = [None] * COLS
                if top > 0:
                    rows[top - 1] = [None] * COLS
                self.col = 0
        elif b2 == 0x2E:  # ENM erase non-displayed memory
            self.nondisplayed.clear()
            self._loaded = True
        elif b2 == 0x2F:  # EOC end of caption: swap memories
            if not self._loaded:
                # A repeated EOC that the pair filter could not see: libcaption starts
                # every continuation cc_data() with RCL RCL, so its "EOC EOC" can arrive
                # as EOC RCL RCL EOC. Swapping again would re-show the previous caption
                # (libcaption's own decoder copies instead of swapping: a no-op too).
                return None
            self._loaded = False
            self.displayed, self.nondisplayed = self.nondisplayed, self.displayed
            self.mode = POP_ON
            if self.displayed.empty():
                return None
            self.captions_shown += 1
            return self.displayed.text()
        # 0x22/0x23 AOF/AON (alarm), 0x28 FON (flash on): no text effect
        return None


# ---------------------------------------------------------------------------------------
# Encoder: libcaption-style pop-on byte pairs, for synthetic test media.
# ---------------------------------------------------------------------------------------

_ENC_BASIC = {ch: code for code, ch in _BASIC.items() if code != 0x7F}
_ENC_SPECIAL = {ch: (0x11, 0x30 + i) for i, ch in enumerate(_SPECIAL) if ch != "\u00a0"}
_ENC_EXT = {ch: (0x12, 0x20 + i) for i, ch in enumerate(_EXT_12)}
_ENC_EXT.update({ch: (0x13, 0x20 + i) for i, ch in enumerate(_EXT_13)})
_PAC_FIRST = {row: (b1, half) for b1, rows in _PAC_ROWS.items()
              for half, row in enumerate(rows) if row is not None}

RCL, EOC, ENM, EDM = (0x14, 0x20), (0x14, 0x2F), (0x14, 0x2E), (0x14, 0x2C)


def wrap_rows(text: str, cols: int = COLS, rows: int = ROWS) -> list[str]:
    """Split caption text into rows of at most ``cols`` characters the way libcaption
    does: break at the last space that fits (dropping it), else hard-break; skip
    leading whitespace of each row."""
    out: list[str] = []
    s = text
    while s and len(out) < rows:
        s = s.lstrip()
        if not s:
            break
        nl = s.find("\n", 0, cols + 1)
        if nl >= 0:
            take, skip = nl, 1
        elif len(s) <= cols:
            take, skip = len(s), 0
        else:
            sp = s.rfind(" ", 0, cols + 1)
            take, skip = (sp, 1) if sp > 0 else (cols, 0)
        out.append(s[:take].rstrip())
        s = s[take + skip:]
    return [r for r in out if r]


def pac(row: int, indent: int = 0) -> tuple[int, int]:
    """Preamble address code (CC1) for ``row`` 0-14 and column ``indent`` (multiple of 4)."""
    b1, half = _PAC_FIRST[row]
    return b1, 0x40 | (0x20 if half else 0) | 0x10 | ((indent // 4) & 7) << 1


def encode_pop_on(text: str) -> list[tuple[int, int]]:
    """CEA-608 CC1 byte pairs (parity applied) that pop ``text`` on, like libcaption's
    sei_from_caption_frame: ENM, RCL, per row a PAC then characters (basic characters
    two per pair, special characters as their own pair followed by RCL, extended ones
    after a space they replace), then EOC twice. Characters with no CEA-608 code are
    dropped. Pair order is transmission order; split it into cc_data() messages with
    :func:`split_messages`."""
    pairs: list[tuple[int, int]] = [ENM, RCL]
    for r, line in enumerate(wrap_rows(text)):
        pairs.append(pac(r, 0))
        pending: int | None = None
        for ch in line:
            if ch in _ENC_BASIC:
                if pending is None:
                    pending = _ENC_BASIC[ch]
                else:
                    pairs.append((pending, _ENC_BASIC[ch]))
                    pending = None
                continue
            if ch in _ENC_EXT:
                pairs.append((pending, 0x20) if pending is not None else (0x20, 0))
                pending = None
                pairs.append(_ENC_EXT[ch])
            elif ch in _ENC_SPECIAL:
                if pending is not None:
                    pairs.append((pending, 0))
                    pending = None
                pairs.append(_ENC_SPECIAL[ch])
                pairs.append(RCL)  # breaks the repeated-control-code filter
        if pending is not None:
            pairs.append((pending, 0))
    pairs += [EOC, EOC]
    return [(with_parity(a), with_parity(b)) for a, b in pairs]


def split_messages(pairs: list[tuple[int, int]], per_message: int = 31) -> list[list[tuple[int, int, int, int]]]:
    """Group pairs into field-1 cc_data triplet lists of at most ``per_message``; like
    libcaption, each continuation message starts with RCL twice."""
    rcl = (with_parity(RCL[0]), with_parity(RCL[1]))
    msgs: list[list[tuple[int, int, int, int]]] = [[]]
    for a, b in pairs:
        if len(msgs[-1]) >= per_message:
            msgs.append([(1, 0) + rcl, (1, 0) + rcl])
        msgs[-1].append((1, 0, a, b))
    return msgs
