"""Personal data out of free text: what a provider, a driver or a parser says can quote
an email address, a phone number or a NIK back to us, and such text ends up in events,
logs and dead letters that many people read."""

from __future__ import annotations

import re

_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
_DIGITS = re.compile(r"(?<![\da-fA-F*-])\+?\d(?:[\d \-.]*\d)?(?![\d*-])")
"""A run of digits, perhaps with +, spaces, dashes or dots inside (a phone number as
written, a NIK), even right after a word (``hp0812...``) but not inside a hex id (a
UUID); only runs of 9 digits or more are masked, so dates, counts and status codes
stay readable."""
MIN_MASKED_DIGITS = 9


def mask_email(address: str) -> str:
    local, _, domain = address.partition("@")
    return f"{local[:1]}***@{domain}"


def mask_digits(run: str) -> str:
    """All digits but the last three starred: ``+6281234567890`` is ``+**********890``."""
    digits = sum(c.isdigit() for c in run)
    keep = 3
    seen = 0
    out = []
    for char in run:
        if char.isdigit():
            seen += 1
            out.append(char if seen > digits - keep else "*")
        elif char in " -.":
            continue
        else:
            out.append(char)
    return "".join(out)


def _digits(match: re.Match[str]) -> str:
    run = match.group(0)
    if sum(c.isdigit() for c in run) < MIN_MASKED_DIGITS:
        return run
    return mask_digits(run)


def redact(text: str) -> str:
    """``text`` with every email address and every long run of digits masked."""
    text = _EMAIL.sub(lambda m: mask_email(m.group(0)), text)
    return _DIGITS.sub(_digits, text)
