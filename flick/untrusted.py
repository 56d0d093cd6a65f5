"""Reading numbers out of what clients send. `str.isdigit` accepts "²" and "٣"; this does not."""

from __future__ import annotations

import re

_INT = re.compile(r"-?[0-9]{1,18}")


def parse_int(text: str, *, max_digits: int = 18, signed: bool = False) -> int | None:
    """The integer `text` spells in ASCII digits, or None (never an exception)."""
    if not _INT.fullmatch(text) or (text.startswith("-") and not signed):
        return None
    if len(text.lstrip("-")) > max_digits:
        return None
    return int(text)
