"""The city's administrative regions (kecamatan and kelurahan with their Kemendagri
codes), read from the official list shipped as data, and how a clerk's spelling of one
is matched to it. Pure: no I/O beyond reading the packaged list once.

The list is ``data/kelurahan-kota-pasuruan.csv`` (its first line names the source).
Another city is another file, not another constant.
"""

from __future__ import annotations

import csv
import difflib
import re
import unicodedata
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Final

KOTA_PASURUAN_FILE: Final = "kelurahan-kota-pasuruan.csv"
COLUMNS: Final = ("kelurahan_code", "kelurahan", "kecamatan_code", "kecamatan")
SUGGESTIONS: Final = 3
"""How many kelurahan a rejection suggests, closest in spelling first."""

_KECAMATAN_CODE = re.compile(r"([0-9]{2})\.?([0-9]{2})\.?([0-9]{2})")
_KELURAHAN_CODE = re.compile(r"([0-9]{2})\.?([0-9]{2})\.?([0-9]{2})\.?([0-9]{4})")
_CLERK_PREFIX = re.compile(r"^\s*(kelurahan|kel\.?)\s+", re.IGNORECASE)


@dataclass(frozen=True)
class Kelurahan:
    code: str
    """Kemendagri code, dotted: ``35.75.01.1001``."""
    name: str
    """Official spelling: ``Tapa'an``."""
    kecamatan_code: str
    kecamatan: str

    def __str__(self) -> str:
        return f"{self.name} ({self.code})"


def canonical_kecamatan_code(text: str) -> str:
    """``357501`` or ``35.75.01`` as ``35.75.01``; any other text is returned stripped,
    otherwise unchanged (and then fails the domicile rule)."""
    text = text.strip()
    match = _KECAMATAN_CODE.fullmatch(text)
    return ".".join(match.groups()) if match else text


def canonical_kelurahan_code(text: str) -> str | None:
    """``3575011001`` or ``35.75.01.1001`` as ``35.75.01.1001``; None if the text is
    not shaped like a kelurahan code (so it is read as a name)."""
    match = _KELURAHAN_CODE.fullmatch(text.strip())
    return ".".join(match.groups()) if match else None


def spelling_key(text: str) -> str:
    """What two spellings of a place name must share to be the same place: letters and
    digits only, without accents, case-folded, without a leading "Kel."/"Kelurahan". So
    ``Tapaan``, ``tapa'an``, ``TAPA`AN`` and ``Kel. Tapa'an`` are one key."""
    text = _CLERK_PREFIX.sub("", text)
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if c.isalnum() and c.isascii()).casefold()


@dataclass(frozen=True)
class KelurahanUnknown:
    """Neither a code nor a spelling of any kelurahan of the city."""

    given: str
    kecamatan_code: str
    suggestions: tuple[Kelurahan, ...]


@dataclass(frozen=True)
class KelurahanMismatch:
    """A kelurahan of the city, but of another kecamatan than the one given."""

    given: str
    found: Kelurahan
    kecamatan_code: str
    suggestions: tuple[Kelurahan, ...]


class RegionList:
    """The kecamatan and kelurahan of one city."""

    def __init__(self, rows: list[Kelurahan]) -> None:
        if not rows:
            raise ValueError("the region list is empty")
        self.kelurahan: tuple[Kelurahan, ...] = tuple(rows)
        self.kecamatan: dict[str, str] = {}
        self._by_code: dict[str, Kelurahan] = {}
        self._by_key: dict[str, Kelurahan] = {}
        for row in rows:
            if self.kecamatan.setdefault(row.kecamatan_code, row.kecamatan) != row.kecamatan:
                raise ValueError(f"kecamatan {row.kecamatan_code} has two names")
            if not row.code.startswith(row.kecamatan_code + "."):
                raise ValueError(f"{row.code} is not in kecamatan {row.kecamatan_code}")
            if row.code in self._by_code:
                raise ValueError(f"kelurahan code {row.code} listed twice")
            key = spelling_key(row.name)
            if key in self._by_key:
                raise ValueError(f"{row.name} and {self._by_key[key].name} spell alike")
            self._by_code[row.code] = row
            self._by_key[key] = row

    def of_kecamatan(self, kecamatan_code: str) -> tuple[Kelurahan, ...]:
        return tuple(k for k in self.kelurahan if k.kecamatan_code == kecamatan_code)

    def find(self, given: str) -> Kelurahan | None:
        """The kelurahan a code or a spelling names, anywhere in the city."""
        code = canonical_kelurahan_code(given)
        if code is not None:
            return self._by_code.get(code)
        return self._by_key.get(spelling_key(given))

    def resolve(
        self, given: str, kecamatan_code: str
    ) -> Kelurahan | KelurahanUnknown | KelurahanMismatch:
        """The kelurahan ``given`` names within the kecamatan (a canonical code of this
        city), or why it names none, with the kecamatan's kelurahan closest in spelling."""
        found = self.find(given)
        if found is not None and found.kecamatan_code == kecamatan_code:
            return found
        suggestions = self.closest(given, kecamatan_code)
        if found is None:
            return KelurahanUnknown(given, kecamatan_code, suggestions)
        return KelurahanMismatch(given, found, kecamatan_code, suggestions)

    def closest(self, given: str, kecamatan_code: str) -> tuple[Kelurahan, ...]:
        """The kecamatan's kelurahan closest in spelling to ``given``, best first."""
        key = spelling_key(given)
        candidates = self.of_kecamatan(kecamatan_code)

        def similarity(k: Kelurahan) -> float:
            return difflib.SequenceMatcher(None, key, spelling_key(k.name)).ratio()

        return tuple(sorted(candidates, key=lambda k: (-similarity(k), k.code))[:SUGGESTIONS])


def parse_region_list(text: str, source: str) -> RegionList:
    """A region list from its CSV text: ``#`` comment lines, then a header naming
    COLUMNS, then one kelurahan per row."""
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    reader = csv.DictReader(lines)
    if tuple(reader.fieldnames or ()) != COLUMNS:
        raise ValueError(f"{source}: header must be {','.join(COLUMNS)}")
    rows = []
    for number, row in enumerate(reader, start=2):
        values = [(row.get(column) or "").strip() for column in COLUMNS]
        if not all(values) or None in row:
            raise ValueError(f"{source}: data row {number} needs exactly {len(COLUMNS)} values")
        rows.append(Kelurahan(*values))
    return RegionList(rows)


@cache
def kota_pasuruan() -> RegionList:
    """Kota Pasuruan's 4 kecamatan and 34 kelurahan."""
    text = resources.files(__package__).joinpath("data", KOTA_PASURUAN_FILE).read_text("utf-8")
    return parse_region_list(text, KOTA_PASURUAN_FILE)
