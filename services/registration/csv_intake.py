"""Reading the city's enrolment list as its data office writes it: UTF-8 with or without
a byte order mark, ';' or ',' (or tab) separated, a header row with the documented
column names or their Indonesian aliases, dates as YYYY-MM-DD, DD-MM-YYYY or DD/MM/YYYY.
Each data row becomes a worker for the same rules as the API (domain.read_worker).

Pure and streaming: rows are read from an iterable of raw lines (bytes), one at a time,
so a file of any length is read in bounded memory. A malformed file (not UTF-8, a
missing column, a row with too many fields) is a FileInvalid naming the line."""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Final

from services.registration.search import parse_date

COLUMNS: Final = (
    "nik",
    "full_name",
    "birth_date",
    "gender",
    "address",
    "kelurahan",
    "kecamatan_code",
    "phone",
    "email",
    "occupation",
    "declared_income",
    "preferred_language",
)
"""The documented columns, in the order of the example file."""
OPTIONAL: Final = frozenset({"email", "declared_income", "preferred_language"})
ALIASES: Final[dict[str, str]] = {
    "nama": "full_name",
    "nama_lengkap": "full_name",
    "tanggal_lahir": "birth_date",
    "tgl_lahir": "birth_date",
    "jenis_kelamin": "gender",
    "jk": "gender",
    "alamat": "address",
    "desa": "kelurahan",
    "desa_kelurahan": "kelurahan",
    "kode_kecamatan": "kecamatan_code",
    "kecamatan": "kecamatan_code",
    "telepon": "phone",
    "telp": "phone",
    "no_hp": "phone",
    "nomor_hp": "phone",
    "hp": "phone",
    "surel": "email",
    "pekerjaan": "occupation",
    "penghasilan": "declared_income",
    "bahasa": "preferred_language",
}
"""Indonesian column names accepted for the documented ones."""
GENDERS: Final[dict[str, str]] = {
    "m": "M",
    "f": "F",
    "l": "M",
    "p": "F",
    "laki-laki": "M",
    "laki laki": "M",
    "perempuan": "F",
}
"""M/F, and the KTP's L (laki-laki) / P (perempuan)."""
DELIMITERS: Final = (";", ",", "\t")
BOM: Final = b"\xef\xbb\xbf"
MAX_FIELD: Final = 10_000
_RUPIAH = re.compile(r"[0-9]+|[0-9]{1,3}(?:([.,])[0-9]{3})(?:\1[0-9]{3})*")


class FileInvalid(ValueError):
    """The file cannot be read as an enrolment list; ``line`` is the physical line
    (1 = the header) where reading stopped, if one."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(f"line {line}: {message}" if line is not None else message)
        self.line = line


@dataclass(frozen=True)
class Header:
    delimiter: str
    columns: tuple[str | None, ...]
    """The documented column each position holds; None for a column we ignore."""
    ignored: tuple[str, ...]


@dataclass(frozen=True)
class Row:
    number: int
    """1 for the first data row."""
    line: int
    """The physical line it starts on (1 is the header)."""
    worker: dict[str, Any]
    """The worker as the API would receive it (strings, a date in ISO form, an integer
    income), for domain.read_worker."""


def _normalised(name: str) -> str:
    return re.sub(r"[\s\-]+", "_", name.strip().lower())


def read_header(first_line: str) -> Header:
    counts = {d: first_line.count(d) for d in DELIMITERS}
    delimiter = max(DELIMITERS, key=lambda d: counts[d])
    if counts[delimiter] == 0:
        raise FileInvalid("the header row has one column: separate the columns with ';' or ','", 1)
    [names] = list(csv.reader([first_line], delimiter=delimiter))
    columns: list[str | None] = []
    ignored: list[str] = []
    seen: set[str] = set()
    for name in names:
        key = _normalised(name)
        column = key if key in COLUMNS else ALIASES.get(key)
        if column in seen:
            raise FileInvalid(f"column {column!r} appears twice (as {name.strip()!r})", 1)
        if column is None:
            ignored.append(name.strip())
        else:
            seen.add(column)
        columns.append(column)
    missing = [c for c in COLUMNS if c not in seen and c not in OPTIONAL]
    if missing:
        raise FileInvalid(
            f"missing column(s) {', '.join(missing)}; the header names "
            f"{', '.join(repr(n.strip()) for n in names)} (see the README for the columns "
            "and their Indonesian names)",
            1,
        )
    return Header(delimiter, tuple(columns), tuple(ignored))


def decoded_lines(raw_lines: Iterable[bytes]) -> Iterator[str]:
    """Each raw line as text, the BOM of the first dropped; FileInvalid at the first
    line that is not UTF-8."""
    for number, raw in enumerate(raw_lines, start=1):
        if number == 1 and raw.startswith(BOM):
            raw = raw[len(BOM) :]
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError as error:
            raise FileInvalid(
                f"not UTF-8 text (byte 0x{raw[error.start]:02x} at column {error.start + 1}); "
                "save the file as 'CSV UTF-8'",
                number,
            ) from None


def rows(raw_lines: Iterable[bytes]) -> tuple[Header, Iterator[Row]]:
    """The header, and the data rows one at a time (blank lines skipped)."""
    lines = decoded_lines(raw_lines)
    first = next(lines, None)
    if first is None or not first.strip():
        raise FileInvalid("the file is empty: the first line must be the header row", 1)
    header = read_header(first.rstrip("\r\n"))

    def data() -> Iterator[Row]:
        reader = csv.reader(lines, delimiter=header.delimiter, strict=True)
        number = 0
        while True:
            start = reader.line_num + 2  # the header is line 1, read outside the reader
            try:
                fields = next(reader)
            except StopIteration:
                return
            except csv.Error as error:
                raise FileInvalid(f"not CSV: {error}", reader.line_num + 1) from None
            if not any(field.strip() for field in fields):
                continue
            if len(fields) > len(header.columns):
                raise FileInvalid(
                    f"{len(fields)} fields, but the header has {len(header.columns)} "
                    f"(a '{header.delimiter}' inside a value must be in double quotes)",
                    start,
                )
            if any(len(field) > MAX_FIELD for field in fields):
                raise FileInvalid(f"a field longer than {MAX_FIELD:,} characters", start)
            number += 1
            yield Row(number, start, worker_of(header, fields))

    return header, data()


def worker_of(header: Header, fields: list[str]) -> dict[str, Any]:
    """The worker a row describes, in the API's terms. A value that cannot be converted
    is passed on as written, for the rules to name."""
    worker: dict[str, Any] = {}
    for column, value in zip(header.columns, fields, strict=False):
        if column is None:
            continue
        value = value.strip()
        if not value:
            if column not in OPTIONAL:
                worker[column] = value  # the rules say the field is missing
            continue
        worker[column] = _converted(column, value)
    return worker


def _converted(column: str, value: str) -> Any:
    if column == "birth_date":
        born = parse_date(value)
        return born.isoformat() if born else value
    if column == "gender":
        return GENDERS.get(value.lower(), value)
    if column == "declared_income" and _RUPIAH.fullmatch(value):
        return int(re.sub(r"[.,]", "", value))
    if column == "preferred_language":
        return value.lower()
    return value
