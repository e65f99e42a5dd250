"""Personal data masked out of free text (provider errors, dead-letter reasons)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.redact import redact


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "550 5.1.1 <budi.santoso@example.com>: Recipient address rejected",
            "550 5.1.1 <b***@example.com>: Recipient address rejected",
        ),
        ("invalid number +6281234567890", "invalid number +**********890"),
        ("to 0812-3456-7890 or 0812 3456 7890", "to *********890 or *********890"),
        ("NIK 3575014101900001", "NIK *************001"),
        ("hp081234567890 NIK3575014101900001", "hp*********890 NIK*************001"),
        ("SMTP 421 retry in 300 s (2026-12-01)", "SMTP 421 retry in 300 s (2026-12-01)"),
        (
            "delivery 5f0e8d2a-1b2c-4d5e-8f90-123456789012",
            "delivery 5f0e8d2a-1b2c-4d5e-8f90-123456789012",
        ),
        ("", ""),
    ],
)
def test_addresses_numbers_and_niks_are_masked_and_the_rest_kept(text: str, expected: str) -> None:
    assert redact(text) == expected


local = st.from_regex(r"[a-z][a-z0-9._]{0,15}", fullmatch=True)
domain = st.from_regex(r"[a-z][a-z0-9-]{0,10}\.(com|co\.id|go\.id|net)", fullmatch=True)
phone = st.from_regex(r"(\+628|08)[1-9][0-9]{7,10}", fullmatch=True)
nik = st.from_regex(r"35[0-9]{14}", fullmatch=True)
noise = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30)


@given(before=noise, after=noise, name=local, host=domain, number=phone, id_number=nik)
def test_no_email_phone_or_nik_survives_whatever_surrounds_it(
    before: str, after: str, name: str, host: str, number: str, id_number: str
) -> None:
    email = f"{name}@{host}"
    text = f"{before} <{email}> {number}; {id_number} {after}"
    masked = redact(text)
    assert email not in masked
    assert number not in masked and number.lstrip("+") not in masked
    assert id_number not in masked
