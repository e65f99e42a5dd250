"""What a clerk's search box means."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.registration.search import (
    ByName,
    ByNikTailAndBirthDate,
    ByPhone,
    QueryInvalid,
    name_key,
    parse_date,
    parse_query,
)


@given(st.dates(min_value=date(1000, 1, 1), max_value=date(9999, 12, 31)))
def test_every_spreadsheet_date_form_reads_back_the_same_day(day: date) -> None:
    forms = [
        f"{day:%Y-%m-%d}",
        f"{day:%d-%m-%Y}",
        f"{day:%d/%m/%Y}",
        f"{day.day}/{day.month}/{day:%Y}",
    ]
    assert {parse_date(form) for form in forms} == {day}


@pytest.mark.parametrize("text", ["31-02-1990", "1990/01/31", "90-01-31", "", "yesterday"])
def test_what_is_not_a_date(text: str) -> None:
    assert parse_date(text) is None


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("Siti Aminah", "siti aminah"),
        ("  SÎTI   aminah ", "siti aminah"),
        ("Ma'ruf", "ma ruf"),
        ("Moch. Ilham", "moch ilham"),
    ],
)
def test_name_keys_ignore_case_accents_and_punctuation(name: str, key: str) -> None:
    assert name_key(name) == key


@pytest.mark.parametrize(
    ("text", "query"),
    [
        ("siti am", ByName("siti am")),
        ("Šiti", ByName("siti")),
        ("0001 1990-01-31", ByNikTailAndBirthDate("0001", date(1990, 1, 31))),
        ("0001 31/01/1990", ByNikTailAndBirthDate("0001", date(1990, 1, 31))),
        ("0812-3456-7890", ByPhone("+6281234567890")),
        ("+62 812 3456 7890", ByPhone("+6281234567890")),
    ],
)
def test_a_query_is_a_name_a_nik_tail_and_birth_date_or_a_phone(text: str, query: object) -> None:
    assert parse_query(text) == query


@pytest.mark.parametrize("text", ["a", "  ", "0001 1990-13-01", "0343 412345", "."])
def test_a_query_that_means_nothing_says_how_to_search(text: str) -> None:
    with pytest.raises(QueryInvalid):
        parse_query(text)
