"""A realistic synthetic cohort of informal workers of Kota Pasuruan, deterministic per seed.

The default size is the programme's headcount as of April 2025 (9,038 people). Valid
workers satisfy every registration rule of the domain reference (section 3); invalid ones
each break exactly one rule and carry the reason code registration must answer with, so
a run of the whole system can be checked against :func:`summary_expectations`.

    python -m devtools.cohort --size 9038 --invalid 25 --seed 20250522 --out cohort.jsonl
"""

from __future__ import annotations

import argparse
import bisect
import csv
import itertools
import json
import random
import sys
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Final, Generic, Literal, TypeVar

from services.registration.codes import (
    KABUPATEN_PASURUAN,
    KOTA_PASURUAN,
    KOTA_PASURUAN_KECAMATAN,
    MINIMUM_DECLARED_INCOME,
)
from services.registration.regions import canonical_kecamatan_code, kota_pasuruan
from shared.events import RequestedWorker

Gender = Literal["M", "F"]
T = TypeVar("T")

DEFAULT_SIZE: Final = 9038
"""People covered as of April 2025 (domain reference, section 1)."""
DEFAULT_SEED: Final = 20250522
"""The programme's launch date, 22 May 2025."""

# --- rejection reasons ------------------------------------------------------------------

NIK_FORMAT: Final = "NIK_FORMAT"
NIK_BIRTHDATE_MISMATCH: Final = "NIK_BIRTHDATE_MISMATCH"
DOMICILE_KABUPATEN_PASURUAN: Final = "DOMICILE_KABUPATEN_PASURUAN"
DOMICILE_OUTSIDE_CITY: Final = "DOMICILE_OUTSIDE_CITY"
DOMICILE_KELURAHAN_UNKNOWN: Final = "DOMICILE_KELURAHAN_UNKNOWN"
DOMICILE_KELURAHAN_MISMATCH: Final = "DOMICILE_KELURAHAN_MISMATCH"
AGE_OUT_OF_RANGE: Final = "AGE_OUT_OF_RANGE"
PHONE_INVALID: Final = "PHONE_INVALID"
OCCUPATION_UNKNOWN: Final = "OCCUPATION_UNKNOWN"
DUPLICATE_NIK: Final = "DUPLICATE_NIK"

REJECTION_REASONS: Final[tuple[str, ...]] = (
    NIK_FORMAT,
    NIK_BIRTHDATE_MISMATCH,
    DOMICILE_KABUPATEN_PASURUAN,
    DOMICILE_OUTSIDE_CITY,
    DOMICILE_KELURAHAN_UNKNOWN,
    DOMICILE_KELURAHAN_MISMATCH,
    AGE_OUT_OF_RANGE,
    PHONE_INVALID,
    OCCUPATION_UNKNOWN,
    DUPLICATE_NIK,
)
"""The reasons invalid entries cycle through, in this order."""

# --- ages -------------------------------------------------------------------------------

VALID_AGE_MIN: Final = 18
VALID_AGE_MAX: Final = 63
"""Ages (inclusive) of valid workers: well inside the rule 15 <= age < 65, so a run a few
days or months after generation still sees every valid worker as eligible."""
AGE_MODE: Final = 42
"""Most common age: the informal workforce skews middle-aged."""
INVALID_AGES: Final = (70, 12)
"""Ages AGE_OUT_OF_RANGE entries alternate between: far outside the rule on both sides."""

# --- NIK --------------------------------------------------------------------------------

NIK_FEMALE_DAY_OFFSET: Final = 40
"""Women's NIKs add 40 to the day of birth (41-71)."""
HOME_REGENCY: Final = KOTA_PASURUAN.replace(".", "")
HOME_REGISTRATION_SHARE: Final = 0.85
"""Share of workers first registered (NIK prefix) in Kota Pasuruan itself."""
SAME_KECAMATAN_SHARE: Final = 0.9
"""Of those, the share whose NIK kecamatan is also their domicile kecamatan."""
OTHER_REGENCIES: Final[dict[str, tuple[int, int]]] = {
    # regency code: (weight, highest kecamatan number used)
    "3514": (45, 20),  # Kabupaten Pasuruan, the neighbour: most incomers
    "3513": (15, 20),  # Kabupaten Probolinggo
    "3574": (8, 5),  # Kota Probolinggo
    "3573": (10, 5),  # Kota Malang
    "3507": (7, 20),  # Kabupaten Malang
    "3578": (10, 20),  # Kota Surabaya
    "3515": (5, 18),  # Kabupaten Sidoarjo
}
"""East Java regencies where people who moved to the city were first registered. Legal:
domicile is decided by the address, not the NIK prefix."""

# --- domicile ---------------------------------------------------------------------------

REGIONS: Final = kota_pasuruan()
KELURAHAN: Final[dict[str, tuple[str, ...]]] = {
    code: tuple(k.name for k in REGIONS.of_kecamatan(code)) for code in REGIONS.kecamatan
}
"""The city's 34 kelurahan, official spelling, per kecamatan (the official list)."""
AS_TYPED_SHARE: Final = 0.12
"""Share of valid workers whose kelurahan or kecamatan is written as clerks type it (case,
spaces, apostrophes, codes with or without dots): registration must read them all."""
KECAMATAN_WEIGHTS: Final[dict[str, int]] = {
    "35.75.01": 25,
    "35.75.02": 29,
    "35.75.03": 17,
    "35.75.04": 29,
}
"""Roughly proportional to the kecamatan populations."""
STREETS: Final[tuple[str, ...]] = (
    "Jl. Soekarno Hatta",
    "Jl. Panglima Sudirman",
    "Jl. Hayam Wuruk",
    "Jl. Gajah Mada",
    "Jl. Pahlawan",
    "Jl. Veteran",
    "Jl. KH. Wachid Hasyim",
    "Jl. Diponegoro",
    "Jl. Sultan Agung",
    "Jl. Untung Suropati",
    "Jl. Kyai Sepuh",
    "Jl. Irian Jaya",
    "Jl. Ir. H. Juanda",
    "Jl. Slamet Riyadi",
    "Jl. Kartini",
    "Jl. Niaga",
    "Jl. Hasanudin",
    "Jl. Dr. Wahidin Sudirohusodo",
    "Jl. Patimura",
    "Jl. Ahmad Yani",
    "Jl. Gatot Subroto",
    "Jl. Halmahera",
    "Jl. Sumatera",
    "Jl. Lombok",
)
GANG_NUMERALS: Final = ("I", "II", "III", "IV", "V", "VI", "VII", "VIII", "IX", "X")
KABUPATEN_PASURUAN_KECAMATAN: Final[dict[str, str]] = {
    f"{KABUPATEN_PASURUAN}.11": "Pandaan",
    f"{KABUPATEN_PASURUAN}.12": "Gempol",
    f"{KABUPATEN_PASURUAN}.13": "Beji",
    f"{KABUPATEN_PASURUAN}.14": "Bangil",
    f"{KABUPATEN_PASURUAN}.16": "Kraton",
    f"{KABUPATEN_PASURUAN}.17": "Pohjentrek",
    f"{KABUPATEN_PASURUAN}.20": "Grati",
    f"{KABUPATEN_PASURUAN}.23": "Rejoso",
}
"""Kecamatan of Kabupaten Pasuruan (a different government) for DOMICILE_KABUPATEN_PASURUAN
entries; the desa given is the kecamatan's namesake. Pohjentrek is also a kelurahan of
the city: exactly the confusion the rule exists for."""
OUTSIDE_CITY_KECAMATAN: Final[dict[str, str]] = {
    "35.73.01": "Kedungkandang",
    "35.73.02": "Sukun",
    "35.73.03": "Klojen",
    "35.73.04": "Blimbing",
    "35.73.05": "Lowokwaru",
}
"""Kota Malang kecamatan for DOMICILE_OUTSIDE_CITY entries (namesake kelurahan)."""

# --- names ------------------------------------------------------------------------------

MALE_FIRST: Final = (
    "Muhammad", "Ahmad", "Abdul", "Agus", "Budi", "Joko", "Bambang", "Hadi", "Eko", "Dwi",
    "Rudi", "Hendra", "Imam", "Wahyu", "Rizki", "Fajar", "Arif", "Yusuf", "Samsul", "Heri",
    "Syaiful", "Ali", "Hasan", "Mustofa", "Ilham", "Dimas", "Rohmat", "Sholeh", "Anang",
    "Didik", "Edi", "Gunawan", "Khoirul", "Lukman", "Nanang", "Rahmat", "Sugeng", "Taufik",
    "Yanto", "Zainal", "Achmad", "Moch.", "Faisal", "Hariyanto", "Fathur",
)  # fmt: skip
MALE_LAST: Final = (
    "Setiawan", "Rohman", "Hidayat", "Santoso", "Prasetyo", "Wibowo", "Saputra", "Rizki",
    "Hakim", "Arifin", "Fauzi", "Hariyanto", "Susanto", "Kurniawan", "Efendi", "Maulana",
    "Firmansyah", "Hasyim", "Anwar", "Kholiq", "Mubarok", "Ma'ruf", "Syafi'i", "Ridwan",
    "Nugroho", "Purnomo", "Hermawan", "Junaidi", "Mansur", "Sholihin", "Zakaria", "Huda",
    "Fadholi", "Rosyid", "Bahtiar",
)  # fmt: skip
MALE_SINGLE: Final = (
    "Slamet", "Sutrisno", "Paiman", "Tukiman", "Supardi", "Sunarto", "Kasmadi", "Misdi",
    "Sumadi", "Poniman", "Suparman", "Karyono", "Sugiono", "Ngadiman", "Mukri",
)  # fmt: skip
FEMALE_FIRST: Final = (
    "Siti", "Sri", "Nur", "Dewi", "Endang", "Tri", "Umi", "Lilik", "Rina", "Yuli", "Ani",
    "Ninik", "Fitri", "Ika", "Novi", "Eka", "Wiwik", "Anik", "Kusnul", "Lailatul", "Nurul",
    "Ainun", "Dwi", "Rini", "Yuyun", "Ernawati", "Indah", "Khusnul", "Luluk", "Mega",
    "Rohmah", "Titik", "Wahyu", "Zulfa",
)  # fmt: skip
FEMALE_LAST: Final = (
    "Aminah", "Wahyuni", "Hidayati", "Lestari", "Rahayu", "Handayani", "Kusumawati",
    "Fatimah", "Khoiriyah", "Rohmah", "Mukaromah", "Zulaikha", "Sholihah", "Musyarofah",
    "Maghfiroh", "Ningsih", "Wulandari", "Puspitasari", "Susanti", "Yulianti", "Nurhayati",
    "Suryani", "Masruroh", "Khotimah", "Maisaroh", "Fadilah", "Qomariyah", "Ulfa",
    "Hasanah", "Jannah", "Azizah", "Munawaroh",
)  # fmt: skip
FEMALE_SINGLE: Final = (
    "Sumarni", "Suwarni", "Poniyem", "Kasiyem", "Ngatini", "Sarmini", "Juwariyah", "Tumini",
    "Painem", "Sulastri", "Mariyam", "Sutini", "Kartini", "Marfuah", "Sunarsih",
)  # fmt: skip
SINGLE_NAME_SHARE: Final = 0.12
THREE_PART_SHARE: Final = 0.18
MALE_THREE_PART_LEAD: Final = ("Muhammad", "Moch.", "Ahmad", "Abdul")
FEMALE_THREE_PART_LEAD: Final = ("Siti", "Nur", "Sri", "Dewi")
_PIOUS_LEADS: Final = frozenset({"Achmad", "Muhammad", "Moch.", "Ahmad", "Abdul"})

# --- occupations ------------------------------------------------------------------------

OCCUPATION_PROFILE: Final[dict[str, tuple[int, float]]] = {
    # code: (weight, share of women)
    "pedagang": (28, 0.62),
    "buruh_tani": (16, 0.45),
    "pemilik_warung_kopi": (12, 0.50),
    "tukang_kayu": (9, 0.02),
    "marbot_masjid": (8, 0.03),
    "buruh_tembakau": (7, 0.55),
    "nelayan": (6, 0.05),
    "pengemudi_ojek": (6, 0.06),
    "pengemudi_becak": (5, 0.02),
    "lainnya": (3, 0.50),
}
"""How common each occupation is among participants, and how many of them are women."""
UNKNOWN_OCCUPATION: Final = "astronot"

# --- contact details --------------------------------------------------------------------

MOBILE_PREFIXES: Final[dict[str, tuple[int, tuple[str, ...]]]] = {
    # operator: (weight, prefixes)
    "Telkomsel": (45, ("0811", "0812", "0813", "0821", "0822", "0823", "0852", "0853")),
    "Indosat": (20, ("0814", "0815", "0816", "0855", "0856", "0857", "0858")),
    "XL": (15, ("0817", "0818", "0819", "0859", "0877", "0878")),
    "Axis": (5, ("0831", "0832", "0833", "0838")),
    "Tri": (10, ("0895", "0896", "0897", "0898", "0899")),
    "Smartfren": (5, ("0881", "0882", "0883", "0884", "0885", "0886", "0887", "0888", "0889")),
}
"""Real Indonesian mobile prefixes with a rough market share in East Java."""
PHONE_LENGTH_WEIGHTS: Final[dict[int, int]] = {11: 25, 12: 55, 13: 20}
"""Digits of the national 08.. form."""
PHONE_FORM_WEIGHTS: Final[dict[str, int]] = {"national": 80, "plus": 12, "bare": 8}
"""How the number is written: 08.., +628.. or 628.."""
PASURUAN_AREA_CODE: Final = "0343"
EMAIL_SHARE: Final = 0.25
EMAIL_DOMAINS: Final[dict[str, int]] = {
    "gmail.com": 70,
    "yahoo.co.id": 12,
    "yahoo.com": 8,
    "outlook.com": 4,
    "ymail.com": 3,
    "hotmail.com": 3,
}
ENGLISH_SHARE: Final = 0.03

# --- premium (for expectations) ---------------------------------------------------------

JKK_RATE_PERCENT: Final = 1
"""JKK premium is 1% of the declared monthly income."""
JKM_MONTHLY_PREMIUM: Final = 6_800
"""JKM premium is Rp 6,800 flat per month."""


@dataclass(frozen=True)
class CohortEntry:
    """One enrolment request of the cohort and the outcome registration must give it."""

    request_id: str
    worker: RequestedWorker
    expected_reason: str | None
    """None: must be enrolled. Otherwise the rejection reason code registration must give."""

    def to_json(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "worker": self.worker.model_dump(mode="json"),
            "expected_reason": self.expected_reason,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CohortEntry:
        return cls(
            request_id=data["request_id"],
            worker=RequestedWorker.model_validate(data["worker"]),
            expected_reason=data.get("expected_reason"),
        )


# --- small pure helpers -----------------------------------------------------------------


def age_on(birth_date: date, today: date) -> int:
    """Completed years of age on ``today``."""
    before_birthday = (today.month, today.day) < (birth_date.month, birth_date.day)
    return today.year - birth_date.year - int(before_birthday)


def years_before(day: date, years: int) -> date:
    """The same calendar day ``years`` earlier (29 February falls back to the 28th)."""
    try:
        return day.replace(year=day.year - years)
    except ValueError:
        return day.replace(year=day.year - years, day=28)


def nik_birth_part(birth_date: date, gender: Gender) -> str:
    """The DDMMYY part of a NIK; women add 40 to the day."""
    day = birth_date.day + (NIK_FEMALE_DAY_OFFSET if gender == "F" else 0)
    return f"{day:02d}{birth_date.month:02d}{birth_date.year % 100:02d}"


def make_nik(region: str, birth_date: date, gender: Gender, serial: int) -> str:
    """A 16-digit NIK: 6-digit region (province, regency, kecamatan) + DDMMYY + serial."""
    if len(region) != 6 or not region.isdigit():
        raise ValueError(f"region must be 6 digits, got {region!r}")
    if not 1 <= serial <= 9999:
        raise ValueError(f"serial must be 1..9999, got {serial}")
    return f"{region}{nik_birth_part(birth_date, gender)}{serial:04d}"


def nik_birth_date(nik: str, today: date | None = None) -> tuple[date, Gender]:
    """Birth date and gender encoded in a well-formed NIK (raises ValueError otherwise).

    The NIK carries a two-digit year only; the century is chosen so the date is not
    after ``today``, which is right for everyone younger than 100.
    """
    if len(nik) != 16 or not nik.isdigit():
        raise ValueError(f"not a 16-digit NIK: {nik!r}")
    day, month, yy = int(nik[6:8]), int(nik[8:10]), int(nik[10:12])
    gender: Gender = "F" if day > NIK_FEMALE_DAY_OFFSET else "M"
    if gender == "F":
        day -= NIK_FEMALE_DAY_OFFSET
    today = today or date.today()
    born = date(2000 + yy, month, day) if (2000 + yy) <= today.year else None
    if born is None or born > today:
        born = date(1900 + yy, month, day)
    return born, gender


def ascii_letters(text: str) -> str:
    """Lowercase ASCII letters of ``text`` (accents folded, apostrophes and dots dropped)."""
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return "".join(ch for ch in folded.lower() if ch.isalnum())


class _Table(Generic[T]):
    """A weighted choice table, built once (``random.choices`` rebuilds it per call)."""

    def __init__(self, weights: dict[T, int]) -> None:
        self.keys = list(weights)
        self.cumulative = list(itertools.accumulate(weights.values()))
        self.total = self.cumulative[-1]

    def pick(self, rng: random.Random) -> T:
        return self.keys[bisect.bisect(self.cumulative, rng.random() * self.total)]


_KECAMATAN = _Table(KECAMATAN_WEIGHTS)
_OCCUPATION = _Table({code: weight for code, (weight, _) in OCCUPATION_PROFILE.items()})
_REGENCY = _Table({code: weight for code, (weight, _) in OTHER_REGENCIES.items()})
_OPERATOR = _Table({operator: weight for operator, (weight, _) in MOBILE_PREFIXES.items()})
_PHONE_LENGTH = _Table(PHONE_LENGTH_WEIGHTS)
_PHONE_FORM = _Table(PHONE_FORM_WEIGHTS)
_EMAIL_DOMAIN = _Table(EMAIL_DOMAINS)


# --- the generator ----------------------------------------------------------------------


class _PersonFactory:
    """Draws valid workers from one random stream, keeping NIKs, phones and emails unique."""

    def __init__(self, rng: random.Random, today: date) -> None:
        self.rng = rng
        self.today = today
        self.niks: set[str] = set()
        self.phones: set[str] = set()  # national significant number, e.g. 81234567890
        self.emails: set[str] = set()

    # people

    def worker(self) -> RequestedWorker:
        occupation = self.occupation()
        gender = self.gender_for(occupation)
        birth_date = self.birth_date(self._age())
        kecamatan_code = _KECAMATAN.pick(self.rng)
        kelurahan = self.rng.choice(KELURAHAN[kecamatan_code])
        full_name = self.name(gender)
        if self.rng.random() < AS_TYPED_SHARE:
            kecamatan_code, kelurahan = self.as_typed(kecamatan_code, kelurahan)
        return RequestedWorker(
            nik=self.nik(self.nik_region(kecamatan_code), birth_date, gender),
            full_name=full_name,
            birth_date=birth_date,
            gender=gender,
            address=self.address(canonical_kecamatan_code(kecamatan_code)),
            kelurahan=kelurahan,
            kecamatan_code=kecamatan_code,
            phone=self.phone(),
            email=self.email(full_name, birth_date) if self.rng.random() < EMAIL_SHARE else None,
            occupation=occupation,
            declared_income=MINIMUM_DECLARED_INCOME,
            preferred_language="en" if self.rng.random() < ENGLISH_SHARE else "id",
        )

    def _age(self) -> int:
        """A valid age, from a triangular distribution peaking at AGE_MODE."""
        drawn = int(self.rng.triangular(VALID_AGE_MIN, VALID_AGE_MAX + 1, AGE_MODE))
        return max(VALID_AGE_MIN, min(drawn, VALID_AGE_MAX))

    def occupation(self) -> str:
        return _OCCUPATION.pick(self.rng)

    def gender_for(self, occupation: str) -> Gender:
        return "F" if self.rng.random() < OCCUPATION_PROFILE[occupation][1] else "M"

    def birth_date(self, age: int) -> date:
        """A birth date giving exactly ``age`` completed years on ``today``."""
        latest = years_before(self.today, age)  # birthday today
        earliest = years_before(self.today, age + 1) + timedelta(days=1)
        return earliest + timedelta(days=self.rng.randint(0, (latest - earliest).days))

    def name(self, gender: Gender) -> str:
        first, last, single, lead = (
            (FEMALE_FIRST, FEMALE_LAST, FEMALE_SINGLE, FEMALE_THREE_PART_LEAD)
            if gender == "F"
            else (MALE_FIRST, MALE_LAST, MALE_SINGLE, MALE_THREE_PART_LEAD)
        )
        roll = self.rng.random()
        if roll < SINGLE_NAME_SHARE:
            return self.rng.choice(single)
        three_part = roll < SINGLE_NAME_SHARE + THREE_PART_SHARE
        surname = self.rng.choice(last)
        while True:  # avoid "Muhammad Ahmad ..." and "Yuli Yulianti"
            given = self.rng.choice(first)
            clashes = three_part and (given in lead or given in _PIOUS_LEADS)
            if not clashes and not surname.startswith(given):
                break
        parts = [given, surname]
        if three_part:
            parts.insert(0, self.rng.choice(lead))
        return " ".join(parts)

    # identity

    def nik_region(self, domicile_kecamatan: str) -> str:
        """Where the person was first registered (6 digits), given where they live now."""
        if self.rng.random() < HOME_REGISTRATION_SHARE:
            if self.rng.random() < SAME_KECAMATAN_SHARE:
                kecamatan = domicile_kecamatan
            else:
                kecamatan = self.rng.choice(list(KOTA_PASURUAN_KECAMATAN))
            return kecamatan.replace(".", "")
        regency = _REGENCY.pick(self.rng)
        return f"{regency}{self.rng.randint(1, OTHER_REGENCIES[regency][1]):02d}"

    def nik(self, region: str, birth_date: date, gender: Gender) -> str:
        """A NIK not yet used in this cohort. Serials are mostly low, as in real life."""
        for _ in range(50):
            serial = min(9999, 1 + int(self.rng.expovariate(1 / 25)))
            nik = make_nik(region, birth_date, gender, serial)
            if nik not in self.niks:
                self.niks.add(nik)
                return nik
        for serial in self.rng.sample(range(1, 10_000), 9999):
            nik = make_nik(region, birth_date, gender, serial)
            if nik not in self.niks:
                self.niks.add(nik)
                return nik
        raise RuntimeError(f"no free NIK serial for {region} {birth_date}")

    # domicile and contact

    def as_typed(self, kecamatan_code: str, kelurahan: str) -> tuple[str, str]:
        """The domicile as a clerk might type it: the same place, another spelling."""
        found = REGIONS.find(kelurahan)
        assert found is not None
        forms = (
            (kecamatan_code.replace(".", ""), kelurahan),
            (kecamatan_code, kelurahan.upper()),
            (kecamatan_code, kelurahan.lower().replace("'", "")),
            (kecamatan_code, f"Kel. {kelurahan}"),
            (kecamatan_code, f" {kelurahan.replace(' ', '  ')} "),
            (kecamatan_code, found.code),
            (kecamatan_code.replace(".", ""), found.code.replace(".", "")),
        )
        return self.rng.choice(forms)

    def address(self, kecamatan_code: str) -> str:
        rng = self.rng
        street = rng.choice(STREETS)
        if rng.random() < 0.3:
            street = f"Jl. {rng.choice(KELURAHAN[kecamatan_code])}"
        if rng.random() < 0.35:
            street = f"{street} Gg. {rng.choice(GANG_NUMERALS)}"
        rt, rw = rng.randint(1, 12), rng.randint(1, 8)
        return f"{street} No. {rng.randint(1, 150)}, RT {rt:02d}/RW {rw:02d}"

    def phone(self) -> str:
        """A unique mobile number, written 08.., +628.. or 628.."""
        prefix = self.rng.choice(MOBILE_PREFIXES[_OPERATOR.pick(self.rng)][1])
        digits = _PHONE_LENGTH.pick(self.rng) - len(prefix)
        while True:
            national = f"{prefix}{self.rng.randrange(10**digits):0{digits}d}"
            if national[1:] not in self.phones:
                self.phones.add(national[1:])
                break
        form = _PHONE_FORM.pick(self.rng)
        if form == "plus":
            return f"+62{national[1:]}"
        if form == "bare":
            return f"62{national[1:]}"
        return national

    def email(self, full_name: str, birth_date: date) -> str:
        parts = [ascii_letters(part) for part in full_name.split()]
        parts = [part for part in parts if part]
        domain = _EMAIL_DOMAIN.pick(self.rng)
        while True:
            style = self.rng.randrange(4)
            if style == 0:
                local = "".join(parts)
            elif style == 1:
                local = ".".join(parts)
            elif style == 2:
                local = parts[-1] + parts[0] if len(parts) > 1 else parts[0]
            else:
                local = parts[0]
            suffix = (
                f"{birth_date.year % 100:02d}"
                if self.rng.random() < 0.5
                else str(self.rng.randint(1, 999))
            )
            address = f"{local}{suffix}@{domain}"
            if address not in self.emails:
                self.emails.add(address)
                return address


# --- invalid entries --------------------------------------------------------------------


def misspelt(name: str) -> str:
    """``name`` with its last two letters swapped: a typo no spelling tolerance forgives
    (the result is never another kelurahan of the city; checked by the tests)."""
    return name[:-2] + name[-1] + name[-2] if name[-1] != name[-2] else name + "h"


def _replace(worker: RequestedWorker, **changes: Any) -> RequestedWorker:
    """A validated copy of ``worker`` with ``changes``."""
    return RequestedWorker.model_validate({**worker.model_dump(), **changes})


class _InvalidFactory:
    """Builds entries that break exactly one rule each, from fresh valid workers."""

    def __init__(self, people: _PersonFactory) -> None:
        self.people = people
        self.rng = people.rng
        self.seen: Counter[str] = Counter()

    def build(self, reason: str, earlier_valid: Sequence[RequestedWorker]) -> RequestedWorker:
        occurrence = self.seen[reason]
        self.seen[reason] += 1
        base = self.people.worker()
        builders = {
            NIK_FORMAT: self._nik_format,
            NIK_BIRTHDATE_MISMATCH: self._nik_birthdate_mismatch,
            DOMICILE_KABUPATEN_PASURUAN: self._domicile_kabupaten,
            DOMICILE_OUTSIDE_CITY: self._domicile_outside,
            DOMICILE_KELURAHAN_UNKNOWN: self._kelurahan_unknown,
            DOMICILE_KELURAHAN_MISMATCH: self._kelurahan_mismatch,
            AGE_OUT_OF_RANGE: self._age_out_of_range,
            PHONE_INVALID: self._phone_invalid,
            OCCUPATION_UNKNOWN: lambda w, _: _replace(w, occupation=UNKNOWN_OCCUPATION),
        }
        if reason == DUPLICATE_NIK:
            return self._duplicate_nik(base, earlier_valid)
        if reason not in builders:
            raise ValueError(f"unknown rejection reason {reason!r}")
        return builders[reason](base, occurrence)

    def _nik_format(self, worker: RequestedWorker, occurrence: int) -> RequestedWorker:
        nik = worker.nik
        if occurrence % 2 == 0:
            return _replace(worker, nik=nik[:15])  # a digit lost in typing
        return _replace(worker, nik=f"{nik[:12]}O{nik[13:]}")  # letter O for zero

    def _nik_birthdate_mismatch(self, worker: RequestedWorker, occurrence: int) -> RequestedWorker:
        """The birth_date field is off by a year (a typo); the NIK keeps the true date.

        Shifting by one year keeps the age inside the rule (17..64), so only the
        mismatch is wrong.
        """
        shift = 1 if occurrence % 2 == 0 else -1
        wrong = worker.birth_date
        try:
            wrong = wrong.replace(year=wrong.year + shift)
        except ValueError:  # 29 February
            wrong = wrong.replace(year=wrong.year + shift, day=28)
        return _replace(worker, birth_date=wrong)

    def _domicile_kabupaten(self, worker: RequestedWorker, occurrence: int) -> RequestedWorker:
        code, desa = list(KABUPATEN_PASURUAN_KECAMATAN.items())[
            occurrence % len(KABUPATEN_PASURUAN_KECAMATAN)
        ]
        return _replace(worker, kecamatan_code=code, kelurahan=desa, address=self._road(desa))

    def _domicile_outside(self, worker: RequestedWorker, occurrence: int) -> RequestedWorker:
        code, kelurahan = list(OUTSIDE_CITY_KECAMATAN.items())[
            occurrence % len(OUTSIDE_CITY_KECAMATAN)
        ]
        return _replace(
            worker, kecamatan_code=code, kelurahan=kelurahan, address=self._road(kelurahan)
        )

    def _kelurahan_unknown(self, worker: RequestedWorker, occurrence: int) -> RequestedWorker:
        """A desa of the neighbouring Kabupaten, or a misspelt kelurahan of the city."""
        if occurrence % 2 == 0:
            desa = [
                name for name in KABUPATEN_PASURUAN_KECAMATAN.values() if not REGIONS.find(name)
            ]
            return _replace(worker, kelurahan=desa[occurrence // 2 % len(desa)])
        name = self.rng.choice(KELURAHAN[canonical_kecamatan_code(worker.kecamatan_code)])
        return _replace(worker, kelurahan=misspelt(name))

    def _kelurahan_mismatch(self, worker: RequestedWorker, occurrence: int) -> RequestedWorker:
        """A kelurahan of the city, given with another of its kecamatan."""
        own = canonical_kecamatan_code(worker.kecamatan_code)
        others = [code for code in KELURAHAN if code != own]
        elsewhere = others[occurrence % len(others)]
        return _replace(worker, kelurahan=self.rng.choice(KELURAHAN[elsewhere]))

    def _road(self, place: str) -> str:
        rt, rw = self.rng.randint(1, 10), self.rng.randint(1, 6)
        return f"Jl. Raya {place} No. {self.rng.randint(1, 200)}, RT {rt:02d}/RW {rw:02d}"

    def _age_out_of_range(self, worker: RequestedWorker, occurrence: int) -> RequestedWorker:
        """Age 70 or 12, with a NIK (same region, fresh serial) that matches the date."""
        age = INVALID_AGES[occurrence % len(INVALID_AGES)]
        birth_date = self.people.birth_date(age)
        nik = self.people.nik(worker.nik[:6], birth_date, worker.gender)
        return _replace(worker, nik=nik, birth_date=birth_date)

    def _phone_invalid(self, worker: RequestedWorker, occurrence: int) -> RequestedWorker:
        if occurrence % 2 == 0:  # a Pasuruan landline, not a mobile
            phone = f"{PASURUAN_AREA_CODE}-4{self.rng.randint(0, 99_999):05d}"
        else:  # a mobile number cut short
            phone = f"0812{self.rng.randint(0, 999):03d}"
        return _replace(worker, phone=phone)

    def _duplicate_nik(
        self, worker: RequestedWorker, earlier_valid: Sequence[RequestedWorker]
    ) -> RequestedWorker:
        """The same person again, sent by another agency's list: same NIK, name, birth
        date, gender, occupation and email; a newer phone and address. Consistent in
        itself, so it can only be refused as a duplicate."""
        if not earlier_valid:
            raise ValueError("DUPLICATE_NIK needs at least one valid worker before it")
        original = self.rng.choice(earlier_valid)
        return _replace(
            worker,
            nik=original.nik,
            full_name=original.full_name,
            birth_date=original.birth_date,
            gender=original.gender,
            occupation=original.occupation,
            email=original.email,
        )


# --- public API -------------------------------------------------------------------------


def generate_cohort(
    size: int = DEFAULT_SIZE,
    *,
    invalid: int = 0,
    seed: int = DEFAULT_SEED,
    today: date | None = None,
    reasons: Sequence[str] = REJECTION_REASONS,
) -> list[CohortEntry]:
    """``size`` valid workers with ``invalid`` invalid ones interleaved among them.

    Deterministic for (size, invalid, seed, today). The valid workers do not depend on
    ``invalid``: they come from their own random stream and are generated first. Invalid
    entries cycle through ``reasons`` in output order and never take the first position,
    so every DUPLICATE_NIK entry follows the valid worker whose NIK it reuses.
    """
    if size < 0 or invalid < 0:
        raise ValueError("size and invalid must be >= 0")
    unknown = set(reasons) - set(REJECTION_REASONS)
    if unknown or not reasons:
        raise ValueError(f"reasons must be a non-empty subset of {REJECTION_REASONS}")
    today = today or date.today()
    people = _PersonFactory(random.Random(f"perisai-cohort:{seed}:valid"), today)
    valid = [people.worker() for _ in range(size)]

    invalid_at = _invalid_positions(size, invalid, random.Random(f"perisai-cohort:{seed}:slots"))
    people.rng = random.Random(f"perisai-cohort:{seed}:invalid")
    factory = _InvalidFactory(people)

    entries: list[CohortEntry] = []
    emitted_valid: list[RequestedWorker] = []
    valid_iter = iter(valid)
    invalid_done = 0
    for position in range(size + invalid):
        request_id = f"cohort-{seed}-{position + 1:06d}"
        if position in invalid_at:
            reason = reasons[invalid_done % len(reasons)]
            invalid_done += 1
            worker = factory.build(reason, emitted_valid)
            entries.append(CohortEntry(request_id, worker, reason))
        else:
            worker = next(valid_iter)
            emitted_valid.append(worker)
            entries.append(CohortEntry(request_id, worker, None))
    return entries


def _invalid_positions(size: int, invalid: int, rng: random.Random) -> set[int]:
    """Output positions of the invalid entries; position 0 stays valid when there is one."""
    if size == 0:
        return set(range(invalid))
    return set(rng.sample(range(1, size + invalid), invalid))


def write_cohort(entries: Iterable[CohortEntry], path: Path) -> int:
    """Write ``entries`` as JSON lines (UTF-8); return how many were written."""
    count = 0
    with path.open("w", encoding="utf-8") as out:
        for entry in entries:
            out.write(json.dumps(entry.to_json(), ensure_ascii=False) + "\n")
            count += 1
    return count


CSV_HEADERS: Final[dict[str, str]] = {
    "nik": "nik",
    "full_name": "nama",
    "birth_date": "tanggal_lahir",
    "gender": "jenis_kelamin",
    "address": "alamat",
    "kelurahan": "kelurahan",
    "kecamatan_code": "kode_kecamatan",
    "phone": "no_hp",
    "email": "email",
    "occupation": "pekerjaan",
    "declared_income": "penghasilan",
    "preferred_language": "bahasa",
}
"""The import's columns, with the Indonesian names a city office would write."""


def write_cohort_csv(entries: Iterable[CohortEntry], path: Path, *, indonesian: bool = True) -> int:
    """Write ``entries`` as the city's data office would: UTF-8 with a byte order mark,
    ';' separated, Indonesian column names, dates as DD-MM-YYYY and gender as L/P."""
    count = 0
    with path.open("w", encoding="utf-8-sig", newline="") as out:
        writer = csv.writer(out, delimiter=";", lineterminator="\r\n")
        writer.writerow(list(CSV_HEADERS.values() if indonesian else CSV_HEADERS))
        for entry in entries:
            worker = entry.worker
            data = worker.model_dump(mode="json")
            data["birth_date"] = f"{worker.birth_date:%d-%m-%Y}"
            data["gender"] = {"M": "L", "F": "P"}[worker.gender]
            writer.writerow(["" if data[c] is None else data[c] for c in CSV_HEADERS])
            count += 1
    return count


def load_cohort(path: str | Path) -> list[CohortEntry]:
    """Read a cohort written by :func:`write_cohort` (or the CLI)."""
    entries: list[CohortEntry] = []
    with Path(path).open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                entries.append(CohortEntry.from_json(json.loads(line)))
            except (ValueError, KeyError) as error:
                raise ValueError(f"{path}:{number}: not a cohort entry: {error}") from error
    return entries


def monthly_premium(worker: RequestedWorker) -> int:
    """JKK (1% of declared income) + JKM (flat), whole Rupiah."""
    return worker.declared_income * JKK_RATE_PERCENT // 100 + JKM_MONTHLY_PREMIUM


def summary_expectations(entries: Iterable[CohortEntry]) -> dict[str, Any]:
    """What a correct run of the system must report for ``entries``.

    Keys: ``total``, ``enrolled``, ``rejected``, ``rejected_by_reason`` (reason ->
    count), ``enrolled_by_occupation``, ``enrolled_by_kecamatan`` (the two breakdowns
    the city reports by) and ``monthly_premium_total`` (Rupiah, enrolled only).
    """
    entries = list(entries)
    enrolled = [entry.worker for entry in entries if entry.expected_reason is None]
    by_reason = Counter(e.expected_reason for e in entries if e.expected_reason is not None)
    order = {reason: index for index, reason in enumerate(REJECTION_REASONS)}
    return {
        "total": len(entries),
        "enrolled": len(enrolled),
        "rejected": sum(by_reason.values()),
        "rejected_by_reason": dict(
            sorted(by_reason.items(), key=lambda item: (order.get(item[0], 99), item[0]))
        ),
        "enrolled_by_occupation": dict(Counter(w.occupation for w in enrolled).most_common()),
        "enrolled_by_kecamatan": dict(
            sorted(Counter(canonical_kecamatan_code(w.kecamatan_code) for w in enrolled).items())
        ),
        "monthly_premium_total": sum(monthly_premium(w) for w in enrolled),
    }


# --- CLI --------------------------------------------------------------------------------


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m devtools.cohort",
        description="Generate a synthetic cohort of Kota Pasuruan informal workers as JSONL.",
    )
    parser.add_argument("--size", type=int, default=DEFAULT_SIZE, help="valid workers")
    parser.add_argument("--invalid", type=int, default=0, help="deliberately invalid requests")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument(
        "--today",
        type=date.fromisoformat,
        default=None,
        help="reference date for ages, YYYY-MM-DD (default: today)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        required=True,
        help="output path: .jsonl (requests), or .csv (the city's list, for the import)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    entries = generate_cohort(args.size, invalid=args.invalid, seed=args.seed, today=args.today)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if args.out.suffix == ".csv":
        write_cohort_csv(entries, args.out)
    else:
        write_cohort(entries, args.out)
    summary = summary_expectations(entries)
    print(f"wrote {len(entries)} requests to {args.out}", file=sys.stderr)
    print(json.dumps(summary, indent=2), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
