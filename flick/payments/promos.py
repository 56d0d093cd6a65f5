"""Promo codes as people type them: one normal form, whatever the case, spaces or look-alikes.

Codes are made of A-Z, 0-9, "_" and "-" (what a deep link `?start=promo_CODE` can carry). What a
user sends is brought to that form before it is looked up: Unicode compatibility forms (full-width
letters), spaces and invisible characters removed, upper case, dashes unified, and the Cyrillic
and Greek capitals that look like Latin ones (a Russian keyboard's "Р" for "P") read as those.
Nothing outside the alphabet survives, so two different codes never meet in one normal form
unless they look the same.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Final

CODE: Final = re.compile(r"[A-Z0-9_-]{3,32}")

# Capitals of other scripts that look like Latin capitals (after upper-casing what was typed).
_LOOKALIKES: Final = str.maketrans(
    {
        # Cyrillic
        "А": "A", "В": "B", "С": "C", "Е": "E", "Н": "H", "І": "I", "Ј": "J", "К": "K",
        "М": "M", "О": "O", "Р": "P", "Ѕ": "S", "Т": "T", "Х": "X", "У": "Y", "Ү": "Y",
        "Ԛ": "Q", "Ԝ": "W", "Ѵ": "V",
        # Greek
        "Α": "A", "Β": "B", "Ε": "E", "Ζ": "Z", "Η": "H", "Ι": "I", "Κ": "K", "Μ": "M",
        "Ν": "N", "Ο": "O", "Ρ": "P", "Τ": "T", "Υ": "Y", "Χ": "X",
        # dashes and the minus sign
        "‐": "-", "‑": "-", "‒": "-", "–": "-", "—": "-", "―": "-", "−": "-",
    }
)  # fmt: skip


def normalize_code(text: str) -> str | None:
    """The code `text` spells, in its normal form, or None when it cannot be one."""
    text = unicodedata.normalize("NFKC", text)
    text = "".join(
        ch for ch in text if not ch.isspace() and unicodedata.category(ch) not in ("Cf", "Cc")
    )
    text = text.upper().translate(_LOOKALIKES)
    return text if CODE.fullmatch(text) else None
