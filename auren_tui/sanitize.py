"""Make untrusted strings (agent names, queries, tool arguments) inert for the terminal.

Everything that reaches the screen from an event goes through :func:`clean` (a ``str``)
or :func:`safe_text` (a Rich :class:`~rich.text.Text`, never parsed as markup). Removed:

* whole escape sequences (CSI ``ESC [ ...``, OSC ``ESC ] ... BEL|ST``, DCS/SOS/PM/APC
  strings, two-byte ``ESC x``) and their 8-bit C1 forms;
* remaining C0 controls, DEL and C1 controls (newlines and tabs become a space);
* bidirectional embeddings, overrides and isolates (U+202A..U+202E, U+2066..U+2069:
  Trojan-Source style reordering) and marks (U+200E, U+200F, U+061C);
* zero-width and invisible characters (U+200B..U+200D, U+2060..U+2064, U+180E, the BOM
  U+FEFF), behind which a name can pass for another; lone surrogates; the line/paragraph
  separators.

Then the text is cut to ``max_len`` characters with an ellipsis, so one oversized payload
cannot push the rest of a pane off screen.
"""

from __future__ import annotations

import re
from typing import Final

from rich.text import Text

__all__ = ["ELLIPSIS", "clean", "is_clean", "safe_text"]

ELLIPSIS: Final = "…"
DEFAULT_MAX: Final = 200

# ESC-introduced sequences, and their 8-bit equivalents (0x9B CSI, 0x9D OSC, 0x90 DCS, ...).
_ESCAPES: Final = re.compile(
    r"""
    (?:\x1b\[|\x9b)[\x30-\x3f]*[\x20-\x2f]*[\x40-\x7e]?          # CSI ... final byte
  | (?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])                      # OSC, DCS, SOS, PM, APC
      [^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?                      #   ... up to BEL or ST
  | \x1b[\x20-\x2f]*[\x30-\x7e]?                                 # other ESC x sequences
    """,
    re.VERBOSE,
)

_HAS_ESCAPE: Final = re.compile("[\x1b\x90-\x9f]")
_WHITESPACE: Final = {"\t", "\n", "\r", "\v", "\f", "\u2028", "\u2029", "\x85"}
_DROP: Final[set[int]] = (
    set(range(0x00, 0x20))
    | {0x7F}
    | set(range(0x80, 0xA0))
    | {0x061C, 0x180E, 0xFEFF}  # Arabic letter mark, Mongolian vowel separator, BOM
    | set(range(0x200B, 0x2010))  # zero-width space, ZWNJ, ZWJ, LRM, RLM
    | set(range(0x2060, 0x2065))  # word joiner, invisible operators
    | set(range(0x202A, 0x202F))  # LRE RLE PDF LRO RLO
    | set(range(0x2066, 0x206A))  # LRI RLI FSI PDI
    | set(range(0xD800, 0xE000))  # lone surrogates (from surrogateescape / bad JSON)
)
_TABLE: Final[dict[int, str | None]] = {cp: None for cp in _DROP}
_TABLE.update({ord(c): " " for c in _WHITESPACE})
_UNSAFE: Final = re.compile("[" + "".join(re.escape(chr(cp)) for cp in sorted(_DROP)) + "]")


def clean(value: object, max_len: int = DEFAULT_MAX) -> str:
    """``value`` as a single line of inert, printable text of at most ``max_len`` chars."""
    if value is None:
        return ""
    s = value if isinstance(value, str) else str(value)
    if len(s) > max_len * 4 + 64:
        s = s[: max_len * 4 + 64]  # bound the work on huge input before the regexes
    if _HAS_ESCAPE.search(s):
        s = _ESCAPES.sub("", s)
    s = s.translate(_TABLE)
    if len(s) > max_len:
        s = s[: max(0, max_len - 1)] + ELLIPSIS if max_len > 0 else ""
    return s


def is_clean(s: str) -> bool:
    """True when ``s`` has no byte :func:`clean` would remove (used by tests)."""
    return _UNSAFE.search(s) is None and not any(c in _WHITESPACE for c in s)


def safe_text(value: object, max_len: int = DEFAULT_MAX, style: str = "") -> Text:
    """A Rich ``Text`` (plain, never markup) holding ``clean(value, max_len)``."""
    return Text(clean(value, max_len), style=style, no_wrap=True, overflow="ellipsis")
