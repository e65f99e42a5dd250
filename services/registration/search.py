"""What a clerk's search box means: a name (accent- and case-insensitive prefix), the
last four NIK digits plus a birth date, or a phone number. Pure: no I/O."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import date
from typing import Final

from services.registration.domain import normalise_phone

MIN_NAME_PREFIX: Final = 2
_NIK_TAIL_AND_DATE = re.compile(r"^\s*([0-9]{4})[\s,;]+(\S+)\s*$")
_PHONE_LIKE = re.compile(r"^\+?[0-9][0-9\s\-().]{7,}$")
_DATE_FORMATS: Final = (
    re.compile(r"^(?P<y>[0-9]{4})-(?P<m>[0-9]{1,2})-(?P<d>[0-9]{1,2})$"),
    re.compile(r"^(?P<d>[0-9]{1,2})-(?P<m>[0-9]{1,2})-(?P<y>[0-9]{4})$"),
    re.compile(r"^(?P<d>[0-9]{1,2})/(?P<m>[0-9]{1,2})/(?P<y>[0-9]{4})$"),
)


def parse_date(text: str) -> date | None:
    """A date as the city's spreadsheets write it: YYYY-MM-DD, DD-MM-YYYY or DD/MM/YYYY."""
    for pattern in _DATE_FORMATS:
        if (match := pattern.fullmatch(text.strip())) is not None:
            try:
                return date(int(match["y"]), int(match["m"]), int(match["d"]))
            except ValueError:
                return None
    return None


def name_key(name: str) -> str:
    """A name as search compares it: letters and digits without accents, lower case,
    words separated by one space (``Sîti  Ma'ruf`` is ``siti ma ruf``)."""
    decomposed = unicodedata.normalize("NFKD", name)
    kept = "".join(c if c.isalnum() else " " for c in decomposed if not unicodedata.combining(c))
    return " ".join(kept.casefold().split())


@dataclass(frozen=True)
class ByName:
    prefix: str


@dataclass(frozen=True)
class ByNikTailAndBirthDate:
    nik_tail: str
    birth_date: date


@dataclass(frozen=True)
class ByPhone:
    phone_e164: str


Query = ByName | ByNikTailAndBirthDate | ByPhone


class QueryInvalid(ValueError):
    """A search that means nothing: say how to write one."""


def parse_query(text: str) -> Query:
    if (match := _NIK_TAIL_AND_DATE.fullmatch(text)) is not None:
        born = parse_date(match[2])
        if born is None:
            raise QueryInvalid(
                f"{match[2]!r} is not a date: write the last four NIK digits and the birth "
                "date as YYYY-MM-DD, DD-MM-YYYY or DD/MM/YYYY (e.g. '0001 1990-01-31')"
            )
        return ByNikTailAndBirthDate(match[1], born)
    if _PHONE_LIKE.fullmatch(text.strip()) is not None:
        phone = normalise_phone(text)
        if phone is None:
            raise QueryInvalid(f"{text.strip()!r} is not an Indonesian mobile number")
        return ByPhone(phone)
    prefix = name_key(text)
    if len(prefix) < MIN_NAME_PREFIX:
        raise QueryInvalid(
            f"search by at least {MIN_NAME_PREFIX} letters of a name, the last four NIK "
            "digits and a birth date, or a phone number"
        )
    return ByName(prefix)
