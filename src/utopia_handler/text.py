"""Text that came from outside, made safe to keep on one line: in a log, a header, a form, PowerCode.

One rule for every place that needs it: control characters (C0, C1 such as NEL), invisible
format characters (zero-width spaces and joiners, right-to-left overrides, the byte-order mark),
lone surrogates and the Unicode line and paragraph separators are never passed on. Characters
that break a line become a space; the rest are dropped.
"""

from __future__ import annotations

import unicodedata

# Cc: C0/C1 controls; Cf: format (zero-width, bidi overrides, BOM); Cs: lone surrogates (they
# cannot even be written as UTF-8); Zl/Zp: U+2028 and U+2029.
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def is_unsafe_character(char: str) -> bool:
    """Whether one character must not be passed on (see the module's rule)."""
    return unicodedata.category(char) in _UNSAFE_CATEGORIES


def has_unsafe_characters(text: str) -> bool:
    """Whether `text` holds any character the module's rule keeps out."""
    return any(is_unsafe_character(char) for char in text)


def one_line(text: str) -> str:
    """`text` on one line: breaks and tabs become a space, other unsafe characters go, and runs
    of white space become one space."""
    kept = [" " if char.isspace() else "" if is_unsafe_character(char) else char for char in text]
    return " ".join("".join(kept).split())
