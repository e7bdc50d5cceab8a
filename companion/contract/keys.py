"""Key code tables: Windows virtual-key (VK) codes are the canonical ``key_code`` on every OS.

Why VK codes: open-world-agents records Windows VK codes (``162`` = VK_LCONTROL,
``67`` = 'C'), so events from Linux and macOS recordings use the same numbers as
Windows ones and a model sees one vocabulary.

Public API (pure, no I/O, no pynput import -- pynput objects are duck-typed):

- :func:`from_pynput` -- a pynput ``Key`` member or ``KeyCode`` -> ``(vk | None, name)``.
- :func:`vk_to_dom` -- VK -> ``(KeyboardEvent.key, KeyboardEvent.code)`` (DOM, seed 000).
- :func:`dom_code_to_vk` -- DOM ``KeyboardEvent.code`` -> VK.
- :func:`vk_name` -- VK -> its Windows constant name (``"VK_LCONTROL"``, ``"VK_A"``).

Conventions (documented in docs/contracts/events-parquet.md):

- Letters always map to the upper-case VK (``'a'`` and ``'A'`` are both 65); shift state is
  not part of a key code.
- A symbol typed with Shift (``'!'``, ``'{'``) maps to the VK of the key that produces it
  on a US layout (``'!'`` -> VK '1', ``'{'`` -> VK_OEM_4). Windows itself reports the VK of
  the physical key in the active layout; on other layouts our mapping of shifted symbols is
  a best effort.
- pynput's generic modifier names (``alt``, ``ctrl``, ``shift``, ``cmd``) are the LEFT key:
  that is what pynput's X11 and macOS backends mean by them (``Key.alt`` is ``Alt_L`` there).
- The DOM ``key`` value returned by :func:`vk_to_dom` is the UNSHIFTED value on a US layout
  with NumLock on: ``"a"`` for VK 65, ``"1"`` for VK '1', ``";"`` for VK_OEM_1, ``"0"`` for
  VK_NUMPAD0; named keys use DOM names (``"Shift"``, ``"ArrowLeft"``, ``" "`` for Space).
  Generic modifier VKs (VK_SHIFT, VK_CONTROL, VK_MENU) have a ``key`` but no ``code``
  (the DOM code needs a side).
"""
from __future__ import annotations

import sys
from typing import Any

# ---------------------------------------------------------------------------------------
# The master table: (vk, Windows constant name, DOM key (unshifted, US), DOM code)
# ---------------------------------------------------------------------------------------
_VK_TABLE: list[tuple[int, str, str | None, str | None]] = [
    (0x03, "VK_CANCEL", "Cancel", None),
    (0x08, "VK_BACK", "Backspace", "Backspace"),
    (0x09, "VK_TAB", "Tab", "Tab"),
    (0x0C, "VK_CLEAR", "Clear", "NumpadClear"),
    (0x0D, "VK_RETURN", "Enter", "Enter"),
    (0x10, "VK_SHIFT", "Shift", None),
    (0x11, "VK_CONTROL", "Control", None),
    (0x12, "VK_MENU", "Alt", None),
    (0x13, "VK_PAUSE", "Pause", "Pause"),
    (0x14, "VK_CAPITAL", "CapsLock", "CapsLock"),
    (0x15, "VK_KANA", "KanaMode", "KanaMode"),       # also VK_HANGUL
    (0x17, "VK_JUNJA", "JunjaMode", None),
    (0x18, "VK_FINAL", "FinalMode", None),
    (0x19, "VK_HANJA", "HanjaMode", "Lang2"),         # also VK_KANJI
    (0x1B, "VK_ESCAPE", "Escape", "Escape"),
    (0x1C, "VK_CONVERT", "Convert", "Convert"),
    (0x1D, "VK_NONCONVERT", "NonConvert", "NonConvert"),
    (0x20, "VK_SPACE", " ", "Space"),
    (0x21, "VK_PRIOR", "PageUp", "PageUp"),
    (0x22, "VK_NEXT", "PageDown", "PageDown"),
    (0x23, "VK_END", "End", "End"),
    (0x24, "VK_HOME", "Home", "Home"),
    (0x25, "VK_LEFT", "ArrowLeft", "ArrowLeft"),
    (0x26, "VK_UP", "ArrowUp", "ArrowUp"),
    (0x27, "VK_RIGHT", "ArrowRight", "ArrowRight"),
    (0x28, "VK_DOWN", "ArrowDown", "ArrowDown"),
    (0x29, "VK_SELECT", "Select", "Select"),
    (0x2A, "VK_PRINT", "Print", None),
    (0x2B, "VK_EXECUTE", "Execute", None),
    (0x2C, "VK_SNAPSHOT", "PrintScreen", "PrintScreen"),
    (0x2D, "VK_INSERT", "Insert", "Insert"),
    (0x2E, "VK_DELETE", "Delete", "Delete"),
    (0x2F, "VK_HELP", "Help", "Help"),
]
_VK_TABLE += [(0x30 + d, f"VK_{d}", str(d), f"Digit{d}") for d in range(10)]
_VK_TABLE += [(ord(c), f"VK_{c}", c.lower(), f"Key{c}") for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"]
_VK_TABLE += [
    (0x5B, "VK_LWIN", "Meta", "MetaLeft"),
    (0x5C, "VK_RWIN", "Meta", "MetaRight"),
    (0x5D, "VK_APPS", "ContextMenu", "ContextMenu"),
    (0x5F, "VK_SLEEP", "Standby", "Sleep"),
]
_VK_TABLE += [(0x60 + d, f"VK_NUMPAD{d}", str(d), f"Numpad{d}") for d in range(10)]
_VK_TABLE += [
    (0x6A, "VK_MULTIPLY", "*", "NumpadMultiply"),
    (0x6B, "VK_ADD", "+", "NumpadAdd"),
    (0x6C, "VK_SEPARATOR", ",", "NumpadComma"),
    (0x6D, "VK_SUBTRACT", "-", "NumpadSubtract"),
    (0x6E, "VK_DECIMAL", ".", "NumpadDecimal"),
    (0x6F, "VK_DIVIDE", "/", "NumpadDivide"),
]
_VK_TABLE += [(0x70 + i, f"VK_F{i + 1}", f"F{i + 1}", f"F{i + 1}") for i in range(24)]
_VK_TABLE += [
    (0x90, "VK_NUMLOCK", "NumLock", "NumLock"),
    (0x91, "VK_SCROLL", "ScrollLock", "ScrollLock"),
    (0x92, "VK_OEM_NEC_EQUAL", "=", "NumpadEqual"),
    (0xA0, "VK_LSHIFT", "Shift", "ShiftLeft"),
    (0xA1, "VK_RSHIFT", "Shift", "ShiftRight"),
    (0xA2, "VK_LCONTROL", "Control", "ControlLeft"),
    (0xA3, "VK_RCONTROL", "Control", "ControlRight"),
    (0xA4, "VK_LMENU", "Alt", "AltLeft"),
    (0xA5, "VK_RMENU", "Alt", "AltRight"),
    (0xA6, "VK_BROWSER_BACK", "BrowserBack", "BrowserBack"),
    (0xA7, "VK_BROWSER_FORWARD", "BrowserForward", "BrowserForward"),
    (0xA8, "VK_BROWSER_REFRESH", "BrowserRefresh", "BrowserRefresh"),
    (0xA9, "VK_BROWSER_STOP", "BrowserStop", "BrowserStop"),
    (0xAA, "VK_BROWSER_SEARCH", "BrowserSearch", "BrowserSearch"),
    (0xAB, "VK_BROWSER_FAVORITES", "BrowserFavorites", "BrowserFavorites"),
    (0xAC, "VK_BROWSER_HOME", "BrowserHome", "BrowserHome"),
    (0xAD, "VK_VOLUME_MUTE", "AudioVolumeMute", "AudioVolumeMute"),
    (0xAE, "VK_VOLUME_DOWN", "AudioVolumeDown", "AudioVolumeDown"),
    (0xAF, "VK_VOLUME_UP", "AudioVolumeUp", "AudioVolumeUp"),
    (0xB0, "VK_MEDIA_NEXT_TRACK", "MediaTrackNext", "MediaTrackNext"),
    (0xB1, "VK_MEDIA_PREV_TRACK", "MediaTrackPrevious", "MediaTrackPrevious"),
    (0xB2, "VK_MEDIA_STOP", "MediaStop", "MediaStop"),
    (0xB3, "VK_MEDIA_PLAY_PAUSE", "MediaPlayPause", "MediaPlayPause"),
    (0xB4, "VK_LAUNCH_MAIL", "LaunchMail", "LaunchMail"),
    (0xB5, "VK_LAUNCH_MEDIA_SELECT", "LaunchMediaPlayer", "MediaSelect"),
    (0xB6, "VK_LAUNCH_APP1", "LaunchApplication1", "LaunchApp1"),
    (0xB7, "VK_LAUNCH_APP2", "LaunchApplication2", "LaunchApp2"),
    (0xBA, "VK_OEM_1", ";", "Semicolon"),
    (0xBB, "VK_OEM_PLUS", "=", "Equal"),
    (0xBC, "VK_OEM_COMMA", ",", "Comma"),
    (0xBD, "VK_OEM_MINUS", "-", "Minus"),
    (0xBE, "VK_OEM_PERIOD", ".", "Period"),
    (0xBF, "VK_OEM_2", "/", "Slash"),
    (0xC0, "VK_OEM_3", "`", "Backquote"),
    (0xDB, "VK_OEM_4", "[", "BracketLeft"),
    (0xDC, "VK_OEM_5", "\\", "Backslash"),
    (0xDD, "VK_OEM_6", "]", "BracketRight"),
    (0xDE, "VK_OEM_7", "'", "Quote"),
    (0xDF, "VK_OEM_8", None, None),
    (0xE2, "VK_OEM_102", "\\", "IntlBackslash"),
    (0xE5, "VK_PROCESSKEY", "Process", None),
    (0xF6, "VK_ATTN", "Attn", None),
    (0xFA, "VK_PLAY", "Play", None),
    (0xFB, "VK_ZOOM", "ZoomToggle", None),
]

#: VK -> Windows constant name
VK_NAMES: dict[int, str] = {vk: name for vk, name, _, _ in _VK_TABLE}
_VK_DOM: dict[int, tuple[str | None, str | None]] = {vk: (k, c) for vk, _, k, c in _VK_TABLE}
_DOM_CODE_VK: dict[str, int] = {c: vk for vk, _, _, c in _VK_TABLE if c is not None}
# DOM codes that name a key sharing a VK with another (Windows tells them apart only by
# the extended-key flag) and legacy spellings.
_DOM_CODE_VK.update({
    "NumpadEnter": 0x0D,
    "OSLeft": 0x5B,
    "OSRight": 0x5C,
    "Lang1": 0x15,       # Hangul/Kana toggle
    "KanaMode": 0x15,
})

#: Convenience constants used by other modules and tests.
VK_LSHIFT, VK_RSHIFT, VK_LCONTROL, VK_RCONTROL, VK_LMENU, VK_RMENU = 0xA0, 0xA1, 0xA2, 0xA3, 0xA4, 0xA5
VK_LWIN, VK_RWIN = 0x5B, 0x5C

# ---------------------------------------------------------------------------------------
# Characters -> VK (US layout; letters case-insensitive; shifted symbols -> their key)
# ---------------------------------------------------------------------------------------
_CHAR_VK: dict[str, int] = {}
for _c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ":
    _CHAR_VK[_c] = ord(_c)
    _CHAR_VK[_c.lower()] = ord(_c)
for _d in range(10):
    _CHAR_VK[str(_d)] = 0x30 + _d
for _chars, _vk in [
    (" ", 0x20), ("\t", 0x09), ("\r\n", 0x0D), ("\b", 0x08), ("\x1b", 0x1B), ("\x7f", 0x2E),
    (";:", 0xBA), ("=+", 0xBB), (",<", 0xBC), ("-_", 0xBD), (".>", 0xBE), ("/?", 0xBF),
    ("`~", 0xC0), ("[{", 0xDB), ("\\|", 0xDC), ("]}", 0xDD), ("'\"", 0xDE),
    ("!", 0x31), ("@", 0x32), ("#", 0x33), ("$", 0x34), ("%", 0x35), ("^", 0x36),
    ("&", 0x37), ("*", 0x38), ("(", 0x39), (")", 0x30),
]:
    for _c in _chars:
        _CHAR_VK[_c] = _vk

# ---------------------------------------------------------------------------------------
# pynput Key member names -> VK (platform independent; generic modifier = left key)
# ---------------------------------------------------------------------------------------
_PYNPUT_NAME_VK: dict[str, int] = {
    "alt": 0xA4, "alt_l": 0xA4, "alt_r": 0xA5, "alt_gr": 0xA5,
    "backspace": 0x08, "caps_lock": 0x14,
    "cmd": 0x5B, "cmd_l": 0x5B, "cmd_r": 0x5C,
    "ctrl": 0xA2, "ctrl_l": 0xA2, "ctrl_r": 0xA3,
    "delete": 0x2E, "down": 0x28, "end": 0x23, "enter": 0x0D, "esc": 0x1B,
    "home": 0x24, "left": 0x25, "page_down": 0x22, "page_up": 0x21, "right": 0x27,
    "shift": 0xA0, "shift_l": 0xA0, "shift_r": 0xA1,
    "space": 0x20, "tab": 0x09, "up": 0x26,
    "media_play_pause": 0xB3, "media_stop": 0xB2, "media_volume_mute": 0xAD,
    "media_volume_down": 0xAE, "media_volume_up": 0xAF,
    "media_previous": 0xB1, "media_next": 0xB0,
    "insert": 0x2D, "menu": 0x5D, "num_lock": 0x90, "pause": 0x13,
    "print_screen": 0x2C, "scroll_lock": 0x91,
}
for _i in range(1, 25):
    _PYNPUT_NAME_VK[f"f{_i}"] = 0x6F + _i

# ---------------------------------------------------------------------------------------
# X11 keysyms -> VK (keysyms 0x20-0x7E and Latin-1 equal their characters)
# ---------------------------------------------------------------------------------------
_X11_KEYSYM_VK: dict[int, int] = {
    # TTY function keys
    0xFF08: 0x08,  # BackSpace
    0xFF09: 0x09,  # Tab
    0xFE20: 0x09,  # ISO_Left_Tab (Shift+Tab)
    0xFF0B: 0x0C,  # Clear
    0xFF0D: 0x0D,  # Return
    0xFF13: 0x13,  # Pause
    0xFF14: 0x91,  # Scroll_Lock
    0xFF15: 0x2C,  # Sys_Req (Alt+Print)
    0xFF1B: 0x1B,  # Escape
    0xFFFF: 0x2E,  # Delete
    # Cursor control
    0xFF50: 0x24,  # Home
    0xFF51: 0x25,  # Left
    0xFF52: 0x26,  # Up
    0xFF53: 0x27,  # Right
    0xFF54: 0x28,  # Down
    0xFF55: 0x21,  # Prior / Page_Up
    0xFF56: 0x22,  # Next / Page_Down
    0xFF57: 0x23,  # End
    0xFF58: 0x0C,  # Begin
    # Misc functions
    0xFF60: 0x29,  # Select
    0xFF61: 0x2C,  # Print
    0xFF62: 0x2B,  # Execute
    0xFF63: 0x2D,  # Insert
    0xFF67: 0x5D,  # Menu
    0xFF69: 0x03,  # Cancel
    0xFF6A: 0x2F,  # Help
    0xFF6B: 0x03,  # Break (Ctrl+Pause: VK_CANCEL on Windows)
    0xFF7E: 0xA5,  # Mode_switch (pynput's X11 Key.alt_gr)
    0xFE03: 0xA5,  # ISO_Level3_Shift (AltGr)
    0xFF7F: 0x90,  # Num_Lock
    # Keypad: with NumLock off the keys report navigation keysyms, like Windows VKs do
    0xFF80: 0x20,  # KP_Space
    0xFF89: 0x09,  # KP_Tab
    0xFF8D: 0x0D,  # KP_Enter
    0xFF91: 0x70, 0xFF92: 0x71, 0xFF93: 0x72, 0xFF94: 0x73,  # KP_F1..KP_F4
    0xFF95: 0x24,  # KP_Home
    0xFF96: 0x25,  # KP_Left
    0xFF97: 0x26,  # KP_Up
    0xFF98: 0x27,  # KP_Right
    0xFF99: 0x28,  # KP_Down
    0xFF9A: 0x21,  # KP_Prior
    0xFF9B: 0x22,  # KP_Next
    0xFF9C: 0x23,  # KP_End
    0xFF9D: 0x0C,  # KP_Begin
    0xFF9E: 0x2D,  # KP_Insert
    0xFF9F: 0x2E,  # KP_Delete
    0xFFBD: 0x92,  # KP_Equal
    0xFFAA: 0x6A,  # KP_Multiply
    0xFFAB: 0x6B,  # KP_Add
    0xFFAC: 0x6C,  # KP_Separator
    0xFFAD: 0x6D,  # KP_Subtract
    0xFFAE: 0x6E,  # KP_Decimal
    0xFFAF: 0x6F,  # KP_Divide
    # Modifiers
    0xFFE1: 0xA0,  # Shift_L
    0xFFE2: 0xA1,  # Shift_R
    0xFFE3: 0xA2,  # Control_L
    0xFFE4: 0xA3,  # Control_R
    0xFFE5: 0x14,  # Caps_Lock
    0xFFE6: 0x14,  # Shift_Lock
    0xFFE7: 0xA4,  # Meta_L (X servers report Alt+Shift this way)
    0xFFE8: 0xA5,  # Meta_R
    0xFFE9: 0xA4,  # Alt_L
    0xFFEA: 0xA5,  # Alt_R
    0xFFEB: 0x5B,  # Super_L
    0xFFEC: 0x5C,  # Super_R
    # International
    0xFF21: 0x19,  # Kanji
    0xFF22: 0x1D,  # Muhenkan
    0xFF23: 0x1C,  # Henkan
    0xFF27: 0x15,  # Hiragana_Katakana
    0xFF31: 0x15,  # Hangul
    0xFF34: 0x19,  # Hangul_Hanja
    # XF86 media and browser keys
    0x1008FF11: 0xAE,  # XF86AudioLowerVolume
    0x1008FF12: 0xAD,  # XF86AudioMute
    0x1008FF13: 0xAF,  # XF86AudioRaiseVolume
    0x1008FF14: 0xB3,  # XF86AudioPlay
    0x1008FF15: 0xB2,  # XF86AudioStop
    0x1008FF16: 0xB1,  # XF86AudioPrev
    0x1008FF17: 0xB0,  # XF86AudioNext
    0x1008FF18: 0xAC,  # XF86HomePage
    0x1008FF19: 0xB4,  # XF86Mail
    0x1008FF1B: 0xAA,  # XF86Search
    0x1008FF1D: 0xB7,  # XF86Calculator
    0x1008FF26: 0xA6,  # XF86Back
    0x1008FF27: 0xA7,  # XF86Forward
    0x1008FF28: 0xA9,  # XF86Stop
    0x1008FF29: 0xA8,  # XF86Refresh
    0x1008FF2F: 0x5F,  # XF86Sleep
    0x1008FF30: 0xAB,  # XF86Favorites
    0x1008FF31: 0xB3,  # XF86AudioPause
    0x1008FF32: 0xB5,  # XF86AudioMedia
    0x1008FF33: 0xB6,  # XF86MyComputer
}
for _d in range(10):
    _X11_KEYSYM_VK[0xFFB0 + _d] = 0x60 + _d          # KP_0..KP_9
for _i in range(24):
    _X11_KEYSYM_VK[0xFFBE + _i] = 0x70 + _i          # F1..F24

# ---------------------------------------------------------------------------------------
# macOS Carbon virtual key codes (kVK_*: physical ANSI positions) -> VK
# ---------------------------------------------------------------------------------------
_MAC_KVK_VK: dict[int, int] = {
    0x00: ord("A"), 0x01: ord("S"), 0x02: ord("D"), 0x03: ord("F"), 0x04: ord("H"),
    0x05: ord("G"), 0x06: ord("Z"), 0x07: ord("X"), 0x08: ord("C"), 0x09: ord("V"),
    0x0A: 0xE2,  # ISO_Section
    0x0B: ord("B"), 0x0C: ord("Q"), 0x0D: ord("W"), 0x0E: ord("E"), 0x0F: ord("R"),
    0x10: ord("Y"), 0x11: ord("T"), 0x12: ord("1"), 0x13: ord("2"), 0x14: ord("3"),
    0x15: ord("4"), 0x16: ord("6"), 0x17: ord("5"), 0x18: 0xBB, 0x19: ord("9"),
    0x1A: ord("7"), 0x1B: 0xBD, 0x1C: ord("8"), 0x1D: ord("0"), 0x1E: 0xDD,
    0x1F: ord("O"), 0x20: ord("U"), 0x21: 0xDB, 0x22: ord("I"), 0x23: ord("P"),
    0x24: 0x0D,  # Return
    0x25: ord("L"), 0x26: ord("J"), 0x27: 0xDE, 0x28: ord("K"), 0x29: 0xBA,
    0x2A: 0xDC, 0x2B: 0xBC, 0x2C: 0xBF, 0x2D: ord("N"), 0x2E: ord("M"), 0x2F: 0xBE,
    0x30: 0x09,  # Tab
    0x31: 0x20,  # Space
    0x32: 0xC0,  # Grave
    0x33: 0x08,  # Delete (backspace)
    0x35: 0x1B,  # Escape
    0x36: 0x5C,  # RightCommand
    0x37: 0x5B,  # Command
    0x38: 0xA0,  # Shift
    0x39: 0x14,  # CapsLock
    0x3A: 0xA4,  # Option
    0x3B: 0xA2,  # Control
    0x3C: 0xA1,  # RightShift
    0x3D: 0xA5,  # RightOption
    0x3E: 0xA3,  # RightControl
    0x40: 0x80,  # F17
    0x41: 0x6E,  # KeypadDecimal
    0x43: 0x6A,  # KeypadMultiply
    0x45: 0x6B,  # KeypadPlus
    0x47: 0x0C,  # KeypadClear
    0x48: 0xAF,  # VolumeUp
    0x49: 0xAE,  # VolumeDown
    0x4A: 0xAD,  # Mute
    0x4B: 0x6F,  # KeypadDivide
    0x4C: 0x0D,  # KeypadEnter
    0x4E: 0x6D,  # KeypadMinus
    0x4F: 0x81,  # F18
    0x50: 0x82,  # F19
    0x51: 0x92,  # KeypadEquals
    0x52: 0x60, 0x53: 0x61, 0x54: 0x62, 0x55: 0x63, 0x56: 0x64,
    0x57: 0x65, 0x58: 0x66, 0x59: 0x67, 0x5B: 0x68, 0x5C: 0x69,  # Keypad0..9
    0x5A: 0x83,  # F20
    0x5D: 0xDC,  # JIS_Yen
    0x5E: 0xBD,  # JIS_Underscore (best effort)
    0x5F: 0x6C,  # JIS_KeypadComma
    0x60: 0x74, 0x61: 0x75, 0x62: 0x76, 0x63: 0x72, 0x64: 0x77, 0x65: 0x78,  # F5 F6 F7 F3 F8 F9
    0x66: 0x1D,  # JIS_Eisu
    0x67: 0x7A,  # F11
    0x68: 0x15,  # JIS_Kana
    0x69: 0x7C,  # F13
    0x6A: 0x7F,  # F16
    0x6B: 0x7D,  # F14
    0x6D: 0x79,  # F10
    0x6E: 0x5D,  # ContextualMenu
    0x6F: 0x7B,  # F12
    0x71: 0x7E,  # F15
    0x72: 0x2D,  # Help (the Insert position on PC keyboards)
    0x73: 0x24,  # Home
    0x74: 0x21,  # PageUp
    0x75: 0x2E,  # ForwardDelete
    0x76: 0x73,  # F4
    0x77: 0x23,  # End
    0x78: 0x71,  # F2
    0x79: 0x22,  # PageDown
    0x7A: 0x70,  # F1
    0x7B: 0x25,  # LeftArrow
    0x7C: 0x27,  # RightArrow
    0x7D: 0x28,  # DownArrow
    0x7E: 0x26,  # UpArrow
}


def _os_kind(platform: str) -> str:
    """'win', 'mac' or 'x11' from a sys.platform-like string."""
    p = (platform or "").lower()
    if p.startswith("win") or p == "cygwin":
        return "win"
    if p.startswith("darwin") or p == "mac" or p == "macos":
        return "mac"
    return "x11"


def char_to_vk(char: str | None) -> int | None:
    """VK of the key that types ``char`` on a US layout (letters case-insensitive), or None."""
    if not char:
        return None
    return _CHAR_VK.get(char)


def x11_keysym_to_vk(keysym: int) -> int | None:
    """VK for an X11 keysym (as pynput's X11 backend puts in ``KeyCode.vk``), or None."""
    vk = _X11_KEYSYM_VK.get(keysym)
    if vk is not None:
        return vk
    if 0x20 <= keysym <= 0x7E:           # Latin-1 keysyms are the characters themselves
        return _CHAR_VK.get(chr(keysym))
    if 0x01000020 <= keysym <= 0x0100007E:  # Unicode keysyms for ASCII
        return _CHAR_VK.get(chr(keysym - 0x01000000))
    return None


def mac_keycode_to_vk(kvk: int) -> int | None:
    """VK for a macOS Carbon virtual key code (kVK_*), or None."""
    return _MAC_KVK_VK.get(kvk)


def _raw_vk_to_vk(raw: Any, kind: str) -> int | None:
    if raw is None or isinstance(raw, bool):
        return None
    try:
        raw = int(raw)
    except (TypeError, ValueError):
        return None
    if kind == "win":
        return raw if 0 < raw < 256 else None
    if kind == "mac":
        return _MAC_KVK_VK.get(raw)
    return x11_keysym_to_vk(raw) if raw > 0 else None


def from_pynput(key: Any, platform: str = sys.platform) -> tuple[int | None, str]:
    """Map a pynput key to ``(windows_vk | None, name)``.

    ``key`` is a pynput ``Key`` member (duck-typed: has ``.name`` and ``.value``, a
    KeyCode) or a ``KeyCode`` (has ``.char`` and ``.vk``). ``platform`` (``sys.platform``
    style) says how to read a raw ``.vk``: the X11 keysym on Linux/BSD, the Carbon key
    code on macOS, the VK itself on Windows.

    ``name`` is pynput's own: ``Key.name`` (``"ctrl_l"``, ``"f5"``) for special keys, the
    character for character keys (``"a"``, ``"A"``, ``"!"``), else ``"<vk>"`` as pynput
    prints a KeyCode without a char, and ``""`` if there is nothing at all.
    ``vk`` is None when the key has no Windows equivalent we know of.
    """
    kind = _os_kind(platform)
    name = getattr(key, "name", None)
    value = getattr(key, "value", None)
    if isinstance(name, str) and value is not None and hasattr(value, "vk"):
        # A Key member. Names are platform independent; raw values are not (macOS media
        # keys carry NX_KEYTYPE numbers, X11 media keys may carry 0).
        vk = _PYNPUT_NAME_VK.get(name)
        if vk is None and not name.startswith("media_"):
            vk = _raw_vk_to_vk(getattr(value, "vk", None), kind)
        if vk is None:
            vk = char_to_vk(getattr(value, "char", None))
        return vk, name
    char = getattr(key, "char", None)
    raw = getattr(key, "vk", None)
    if char is not None and not isinstance(char, str):
        char = str(char)
    vk: int | None = None
    if kind == "mac" and char and len(char) == 1 and char.isascii() and char.isalpha():
        vk = ord(char.upper())       # Carbon codes are physical positions; letters follow the layout
    if vk is None:
        vk = _raw_vk_to_vk(raw, kind)
    if vk is None:
        vk = char_to_vk(char)
    if char:
        out_name = char
    elif raw is not None:
        out_name = f"<{raw}>"
    else:
        out_name = ""
    return vk, out_name


def vk_to_dom(vk: int | None) -> tuple[str | None, str | None]:
    """DOM ``(KeyboardEvent.key, KeyboardEvent.code)`` for a VK; ``(None, None)`` if unknown.

    ``key`` is the unshifted US-layout value with NumLock on (``"a"``, ``"1"``, ``";"``,
    ``"Shift"``, ``"ArrowLeft"``, ``" "``); ``code`` names the physical key (``"KeyA"``,
    ``"ShiftLeft"``). Generic modifiers (VK_SHIFT/VK_CONTROL/VK_MENU) give ``code`` None.
    """
    if vk is None:
        return None, None
    return _VK_DOM.get(int(vk), (None, None))


def dom_code_to_vk(code: str | None) -> int | None:
    """VK for a DOM ``KeyboardEvent.code`` (``"KeyA"`` -> 65, ``"ShiftLeft"`` -> 160), or None."""
    if not isinstance(code, str):
        return None
    return _DOM_CODE_VK.get(code)


def vk_name(vk: int | None) -> str:
    """Windows constant name of a VK: ``"VK_LCONTROL"``, ``"VK_A"``, ``"VK_7"``.

    Letters and digits have no Windows constant; they are named ``VK_<char>`` as
    Chromium does. Unknown codes are ``"VK_0x%02X"``; None is ``"VK_NONE"``.
    """
    if vk is None:
        return "VK_NONE"
    vk = int(vk)
    return VK_NAMES.get(vk, f"VK_0x{vk:02X}")


__all__ = [
    "from_pynput", "vk_to_dom", "dom_code_to_vk", "vk_name", "char_to_vk",
    "x11_keysym_to_vk", "mac_keycode_to_vk", "VK_NAMES",
]
