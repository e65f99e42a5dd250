"""The region list: how it is read, and what a malformed one is refused for."""

from __future__ import annotations

import pytest

from services.registration.regions import (
    canonical_kecamatan_code,
    canonical_kelurahan_code,
    kota_pasuruan,
    parse_region_list,
    spelling_key,
)

HEADER = "kelurahan_code,kelurahan,kecamatan_code,kecamatan\n"


def test_the_shipped_list_names_its_source() -> None:
    from importlib import resources

    text = (
        resources.files("services.registration")
        .joinpath("data", "kelurahan-kota-pasuruan.csv")
        .read_text("utf-8")
    )
    assert text.startswith("# Kelurahan of Kota Pasuruan (35.75), Kemendagri codes. Source:")
    assert kota_pasuruan().find("Mandaranrejo") is not None


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("code,name\n35.75.01.1001,A\n", "header must be"),
        (HEADER, "empty"),
        (HEADER + "35.75.01.1001,A,35.75.01\n", "row 2 needs exactly 4 values"),
        (HEADER + "35.75.01.1001,A,35.75.01,K,extra\n", "row 2 needs exactly 4 values"),
        (HEADER + "35.75.02.1001,A,35.75.01,K\n", "not in kecamatan 35.75.01"),
        (HEADER + "35.75.01.1001,A,35.75.01,K\n35.75.01.1001,B,35.75.01,K\n", "listed twice"),
        (HEADER + "35.75.01.1001,Ta'an,35.75.01,K\n35.75.01.1002,TAAN,35.75.01,K\n", "alike"),
        (HEADER + "35.75.01.1001,A,35.75.01,K\n35.75.01.1002,B,35.75.01,L\n", "two names"),
    ],
)
def test_a_malformed_list_is_refused_saying_why(text: str, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        parse_region_list(text, "test.csv")


@pytest.mark.parametrize(
    ("typed", "code"),
    [("357501", "35.75.01"), ("35.75.01", "35.75.01"), ("3575.01", "35.75.01"), ("x", "x")],
)
def test_kecamatan_codes_with_or_without_dots(typed: str, code: str) -> None:
    assert canonical_kecamatan_code(typed) == code


def test_kelurahan_codes_with_or_without_dots_and_names_are_not_codes() -> None:
    assert canonical_kelurahan_code("3575011001") == "35.75.01.1001"
    assert canonical_kelurahan_code(" 35.75.01.1001 ") == "35.75.01.1001"
    assert canonical_kelurahan_code("Gentong") is None
    assert canonical_kelurahan_code("35.75.01") is None


def test_spelling_key_forgives_case_spaces_apostrophes_accents_and_the_prefix() -> None:
    forms = [
        "Tapa'an",
        "tapaan",
        "TAPA AN",
        "T\u00e1pa\u2019an",
        "Kel. Tapa'an",
        "kelurahan Tapaan",
    ]
    assert {spelling_key(form) for form in forms} == {"tapaan"}
