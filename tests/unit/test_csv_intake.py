"""Reading the city's list: columns and their Indonesian names, separators, dates,
genders, incomes, and malformed files refused naming the line."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.registration.csv_intake import FileInvalid, rows
from services.registration.domain import read_worker
from shared.events import RequestedWorker

ID_HEADER = "nik;nama;tanggal_lahir;jenis_kelamin;alamat;kelurahan;kode_kecamatan;no_hp;pekerjaan"
ROW = (
    "3575014101900001;Siti Aminah;01-01-1990;P;Jl. Kartini 3;Gadingrejo;357501;081234567890;"
    "pedagang"
)


def read(text: str | bytes) -> list[dict[str, Any]]:
    data = text.encode() if isinstance(text, str) else text
    _, found = rows(data.splitlines(keepends=True))
    return [row.worker for row in found]


def test_indonesian_names_dates_and_genders_read_as_the_api_would_receive_them() -> None:
    [worker] = read(f"\ufeff{ID_HEADER}\r\n{ROW}\r\n")
    assert worker == {
        "nik": "3575014101900001",
        "full_name": "Siti Aminah",
        "birth_date": "1990-01-01",
        "gender": "F",
        "address": "Jl. Kartini 3",
        "kelurahan": "Gadingrejo",
        "kecamatan_code": "357501",
        "phone": "081234567890",
        "occupation": "pedagang",
    }
    assert isinstance(read_worker(worker), RequestedWorker)


def test_commas_quotes_and_line_breaks_inside_values() -> None:
    header = "NIK,Full Name,birth-date,gender,address,kelurahan,kecamatan_code,phone,occupation"
    text = (
        f"{header}\n"
        '3575014101900001,Siti,1990-01-01,F,"Jl. Kartini 3,\nRT 01/RW 02",Gadingrejo,'
        "35.75.01,0812 3456 7890,pedagang\n"
    )
    _, found = rows(text.encode().splitlines(keepends=True))
    [row] = list(found)
    assert row.worker["address"] == "Jl. Kartini 3,\nRT 01/RW 02"
    assert (row.number, row.line) == (1, 2)


@pytest.mark.parametrize(
    ("value", "income"),
    [("1000000", 1_000_000), ("1.000.000", 1_000_000), ("2,500,000", 2_500_000), ("1,5", "1,5")],
)
def test_incomes_with_thousands_separators(value: str, income: object) -> None:
    [worker] = read(f"{ID_HEADER};penghasilan\n{ROW};{value}\n")
    assert worker["declared_income"] == income


def test_blank_lines_and_empty_optional_values_are_skipped_and_rows_keep_their_lines() -> None:
    text = f"{ID_HEADER};email;bahasa\n\n{ROW};;EN\n;;;;;;;;;;\n{ROW};a@b.id;id\n"
    _, found = rows(text.encode().splitlines(keepends=True))
    got = [(r.number, r.line, r.worker.get("email"), r.worker["preferred_language"]) for r in found]
    assert got == [(1, 3, None, "en"), (2, 5, "a@b.id", "id")]


def test_columns_not_ours_are_ignored_and_named() -> None:
    header, found = rows(f"no;{ID_HEADER};catatan\n1;{ROW};x\n".encode().splitlines())
    assert header.ignored == ("no", "catatan")
    assert "catatan" not in next(found).worker


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        (b"", 1, "empty"),
        (b"just one column\nx\n", 1, "one column"),
        (b"nama;nik\nx;1\n", 1, r"missing column\(s\) birth_date, gender"),
        (f"{ID_HEADER};nama_lengkap\n".encode(), 1, "'full_name' appears twice"),
        (f"{ID_HEADER}\n{ROW}\n{ROW};extra\n".encode(), 3, "10 fields, but the header has 9"),
        (f"{ID_HEADER}\n{ROW}\n".encode() + b"1;Sit\xe9\n", 3, "not UTF-8"),
        (f'{ID_HEADER}\n{ROW}\n1;"open'.encode(), 3, "not CSV"),
    ],
)
def test_a_malformed_file_is_refused_naming_the_line(text: bytes, line: int, message: str) -> None:
    with pytest.raises(FileInvalid, match=message) as raised:
        _, found = rows(text.splitlines(keepends=True))
        list(found)
    assert raised.value.line == line
    assert str(raised.value).startswith(f"line {line}: ")


@given(
    st.lists(
        st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=20),
        min_size=9,
        max_size=9,
    )
)
def test_any_values_are_a_worker_or_a_refusal_never_a_crash(values: list[str]) -> None:
    """Whatever a spreadsheet holds, a row reads as a worker for the rules to judge (or
    the file as malformed), and quoting keeps every value intact."""
    import csv
    import io

    out = io.StringIO()
    csv.writer(out, delimiter=";").writerows([ID_HEADER.split(";"), values])
    try:
        workers = read(out.getvalue())
    except FileInvalid:
        return
    for worker in workers:
        read_worker(worker)
