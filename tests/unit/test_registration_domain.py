"""Registration rules (services.registration.domain): NIK, domicile, age, contact,
occupation, income, one membership per NIK, participant numbers."""

from __future__ import annotations

import unicodedata
from datetime import date
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.registration.codes import (
    KOTA_PASURUAN_KECAMATAN,
    MINIMUM_DECLARED_INCOME,
    OCCUPATIONS,
)
from services.registration.domain import (
    AgeRule,
    Domicile,
    EnrolmentCommand,
    Numbered,
    UnreadableWorker,
    ValidWorker,
    age_on,
    decide,
    events_for,
    is_valid_participant_number,
    luhn_check_digit,
    mask_nik,
    normalise_email,
    normalise_phone,
    participant_number,
    read_worker,
    validate,
    validate_domicile,
    validate_nik,
)
from services.registration.regions import Kelurahan, kota_pasuruan
from shared.events import EnrolmentRejected, RejectionReason, WorkerEnrolled
from tests.factories import TODAY, make_nik, requested_worker

BIRTH = date(1990, 1, 1)


def codes(reasons: list[RejectionReason] | Any) -> set[str]:
    assert isinstance(reasons, list), f"expected rejection reasons, got {reasons!r}"
    return {r.code for r in reasons}


def command(request_id: str = "req-1", **worker: Any) -> EnrolmentCommand:
    return EnrolmentCommand(
        request_id, "upstream", requested_worker(**worker), f"corr-{request_id}"
    )


def raw_worker(**changes: Any) -> dict[str, Any]:
    """A valid worker as JSON would carry it, with ``changes`` (None: field removed)."""
    data = requested_worker().model_dump(mode="json")
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}


def fullwidth(digits: str) -> str:
    """The same digits as Unicode FULLWIDTH DIGITs (U+FF10..U+FF19)."""
    return "".join(chr(ord(c) - ord("0") + 0xFF10) for c in digits)


class TestNik:
    def test_valid_female_nik(self) -> None:
        assert validate_nik("3575014101900001", BIRTH, "F") == []

    def test_valid_male_nik(self) -> None:
        assert validate_nik("3575010101900001", BIRTH, "M") == []

    @pytest.mark.parametrize(
        "nik",
        ["357501410190001", "35750141019000011", "35750141019000a1", "", "3575 01410190001"],
    )
    def test_format(self, nik: str) -> None:
        assert codes(validate_nik(nik, BIRTH, "F")) == {"NIK_FORMAT"}

    def test_format_is_the_only_reason_when_malformed(self) -> None:
        assert len(validate_nik("12", BIRTH, "F")) == 1

    @pytest.mark.parametrize("nik", ["0075014101900001", "3500014101900001", "3575004101900001"])
    def test_region_code_00(self, nik: str) -> None:
        assert "NIK_REGION" in codes(validate_nik(nik, BIRTH, "F"))

    @pytest.mark.parametrize(
        "date_part",
        ["320290", "720290", "001390", "010090", "000190", "310490", "300201", "290201"],
    )
    def test_invalid_date(self, date_part: str) -> None:
        nik = f"357501{date_part}0001"
        assert "NIK_BIRTHDATE_INVALID" in codes(validate_nik(nik, BIRTH, "F"))

    def test_29_february_is_a_date_in_a_leap_year(self) -> None:
        assert validate_nik("3575016902000001", date(2000, 2, 29), "F") == []
        assert validate_nik("3575012902040001", date(2004, 2, 29), "M") == []

    def test_women_add_40_to_the_day(self) -> None:
        birth = date(1985, 7, 17)
        assert validate_nik(make_nik(birth, "F"), birth, "F") == []
        assert make_nik(birth, "F")[6:8] == "57"
        assert validate_nik(make_nik(birth, "M"), birth, "M") == []
        assert make_nik(birth, "M")[6:8] == "17"

    def test_gender_mismatch(self) -> None:
        birth = date(1985, 7, 17)
        assert codes(validate_nik(make_nik(birth, "F"), birth, "M")) == {"NIK_GENDER_MISMATCH"}
        assert codes(validate_nik(make_nik(birth, "M"), birth, "F")) == {"NIK_GENDER_MISMATCH"}

    @pytest.mark.parametrize(
        "given_birth", [date(1985, 7, 18), date(1985, 8, 17), date(1986, 7, 17)]
    )
    def test_birth_date_mismatch(self, given_birth: date) -> None:
        nik = make_nik(date(1985, 7, 17), "M")
        assert codes(validate_nik(nik, given_birth, "M")) == {"NIK_BIRTHDATE_MISMATCH"}

    def test_the_nik_carries_only_two_year_digits(self) -> None:
        nik = make_nik(date(1985, 7, 17), "M")
        assert validate_nik(nik, date(1885, 7, 17), "M") == []

    def test_date_and_gender_mismatch_reported_together(self) -> None:
        nik = make_nik(date(1985, 7, 17), "M")
        assert codes(validate_nik(nik, date(1990, 1, 1), "F")) == {
            "NIK_BIRTHDATE_MISMATCH",
            "NIK_GENDER_MISMATCH",
        }

    def test_serial_0000(self) -> None:
        nik = make_nik(BIRTH, "F", serial="0000")
        assert codes(validate_nik(nik, BIRTH, "F")) == {"NIK_SERIAL"}

    def test_serial_0001_and_9999_are_valid(self) -> None:
        assert validate_nik(make_nik(BIRTH, "F", serial="0001"), BIRTH, "F") == []
        assert validate_nik(make_nik(BIRTH, "F", serial="9999"), BIRTH, "F") == []

    def test_reasons_point_at_the_field_to_fix(self) -> None:
        nik = make_nik(date(1985, 7, 17), "M", serial="0000")
        fields = {r.code: r.field for r in validate_nik(nik, date(1990, 1, 1), "F")}
        assert fields == {
            "NIK_BIRTHDATE_MISMATCH": "birth_date",
            "NIK_GENDER_MISMATCH": "gender",
            "NIK_SERIAL": "nik",
        }

    def test_non_ascii_digits_are_not_a_nik(self) -> None:
        """A NIK written in FULLWIDTH digits is 16 'digits' to Python's \\d and
        str.isdigit, but it is not a NIK; accepting it lets the same person enrol twice
        (see test_fullwidth_nik_is_not_a_second_membership)."""
        nik = fullwidth("3575014101900001")
        assert codes(validate_nik(nik, BIRTH, "F")) == {"NIK_FORMAT"}

    def test_trailing_newline_is_not_a_digit(self) -> None:
        """``^\\d+$`` also matches before a trailing newline: 15 digits + '\\n'."""
        assert codes(validate_nik("357501410190001\n", BIRTH, "F")) == {"NIK_FORMAT"}


# --- property tests ----------------------------------------------------------------

regions = st.tuples(st.integers(11, 94), st.integers(1, 99), st.integers(1, 99)).map(
    lambda r: f"{r[0]:02d}{r[1]:02d}{r[2]:02d}"
)
birth_dates = st.dates(min_value=date(1901, 1, 1), max_value=date(2099, 12, 31))
genders = st.sampled_from(["M", "F"])
serials = st.integers(1, 9999).map(lambda s: f"{s:04d}")


@given(region=regions, birth=birth_dates, gender=genders, serial=serials)
def test_any_generated_valid_nik_passes(region: str, birth: date, gender: str, serial: str) -> None:
    nik = make_nik(birth, gender, region=region, serial=serial)
    assert len(nik) == 16
    assert validate_nik(nik, birth, gender) == []


@given(
    region=regions,
    birth=birth_dates,
    gender=genders,
    serial=serials,
    position=st.integers(6, 11),
    data=st.data(),
)
def test_changing_one_date_digit_always_fails(
    region: str, birth: date, gender: str, serial: str, position: int, data: st.DataObject
) -> None:
    nik = make_nik(birth, gender, region=region, serial=serial)
    digit = data.draw(st.sampled_from([d for d in "0123456789" if d != nik[position]]))
    changed = nik[:position] + digit + nik[position + 1 :]
    assert validate_nik(changed, birth, gender) != []


# --- domicile ----------------------------------------------------------------------


def official(code_or_name: str) -> Kelurahan:
    found = kota_pasuruan().find(code_or_name)
    assert found is not None
    return found


@pytest.mark.parametrize("kelurahan", kota_pasuruan().kelurahan, ids=str)
def test_every_kelurahan_of_the_city_is_accepted_by_name_and_by_code(kelurahan: Kelurahan) -> None:
    expected = Domicile(kelurahan.kecamatan_code, kelurahan)
    assert validate_domicile(kelurahan.kecamatan_code, kelurahan.name) == expected
    assert validate_domicile(kelurahan.kecamatan_code, kelurahan.code) == expected
    assert validate_domicile(kelurahan.kecamatan_code, kelurahan.code.replace(".", "")) == expected


def test_the_city_has_34_kelurahan_in_4_kecamatan() -> None:
    regions = kota_pasuruan()
    assert len(regions.kelurahan) == 34
    assert regions.kecamatan == KOTA_PASURUAN_KECAMATAN
    assert [len(regions.of_kecamatan(code)) for code in sorted(regions.kecamatan)] == [8, 7, 6, 13]


@pytest.mark.parametrize(
    "typed",
    [
        "Tapaan",
        "tapa'an",
        "TAPA'AN",
        "Tapa`an",
        "Tapa\u2019an",
        " Tapa'an ",
        "Kel. Tapaan",
        "kelurahan tapa an",
        "3575031003",
        "35.75.03.1003",
    ],
)
def test_a_kelurahan_as_clerks_type_it_is_stored_as_the_official_code_and_name(typed: str) -> None:
    assert validate_domicile("35.75.03", typed) == Domicile("35.75.03", official("35.75.03.1003"))


@pytest.mark.parametrize("typed", ["357503", "35.75.03", " 35.75.03 "])
def test_the_kecamatan_code_is_read_with_or_without_dots(typed: str) -> None:
    assert validate_domicile(typed, "Kepel") == Domicile("35.75.03", official("35.75.03.1002"))


def test_a_kelurahan_of_another_kecamatan_is_a_mismatch_naming_both() -> None:
    [problem] = validate_domicile("35.75.01", "Tapaan")  # type: ignore[misc]
    assert problem.code == "DOMICILE_KELURAHAN_MISMATCH"
    assert problem.field == "kelurahan"
    assert "Tapa'an (35.75.03.1003) is in kecamatan Bugul Kidul (35.75.03)" in problem.message
    assert "not Gadingrejo (35.75.01)" in problem.message


def test_a_kelurahan_code_of_another_kecamatan_is_a_mismatch() -> None:
    [problem] = validate_domicile("357501", "3575041010")  # type: ignore[misc]
    assert problem.code == "DOMICILE_KELURAHAN_MISMATCH"
    assert "Bugul Lor (35.75.04.1010)" in problem.message


@pytest.mark.parametrize(
    ("typed", "meant"),
    [
        ("Karangketuk", "Karangketug"),
        ("Gading Rejo Kulon", "Gadingrejo"),
        ("Randu Sari", None),
        ("Sebanni", "Sebani"),
        ("Petahunnan", "Petahunan"),
    ],
)
def test_an_unknown_kelurahan_names_the_closest_of_the_kecamatan_first(
    typed: str, meant: str | None
) -> None:
    result = validate_domicile("35.75.01", typed)
    if meant is None:  # spaces are forgiven: Randu Sari is Randusari
        assert result == Domicile("35.75.01", official("35.75.01.1006"))
        return
    [problem] = result  # type: ignore[misc]
    assert problem.code == "DOMICILE_KELURAHAN_UNKNOWN"
    assert f"did you mean {official(meant)}," in problem.message
    assert "of Gadingrejo (35.75.01)" in problem.message


def test_an_unknown_kelurahan_code_is_unknown() -> None:
    [problem] = validate_domicile("35.75.01", "35.75.01.1008")  # type: ignore[misc]
    assert problem.code == "DOMICILE_KELURAHAN_UNKNOWN"  # 1008 is not in the official list


@pytest.mark.parametrize("code", ["35.14.01", "35.14.24", "351401"])
def test_kabupaten_pasuruan_is_a_different_government(code: str) -> None:
    assert codes(validate_domicile(code, "Gadingrejo")) == {"DOMICILE_KABUPATEN_PASURUAN"}


@pytest.mark.parametrize("code", ["35.78.01", "35.75.05", "35.75", "31.71.01", "3575 01", "x"])
def test_outside_the_city(code: str) -> None:
    """Outside the city the kelurahan is not looked at: one reason, about the kecamatan."""
    assert codes(validate_domicile(code, "Gadingrejo")) == {"DOMICILE_OUTSIDE_CITY"}


@given(st.text(max_size=40))
def test_any_text_as_kelurahan_is_an_answer_never_an_error(typed: str) -> None:
    result = validate_domicile("35.75.04", typed)
    if isinstance(result, Domicile):
        assert result.kelurahan.kecamatan_code == "35.75.04"
    else:
        assert codes(result) <= {"DOMICILE_KELURAHAN_UNKNOWN", "DOMICILE_KELURAHAN_MISMATCH"}


def test_domicile_comes_from_the_address_not_the_nik_prefix() -> None:
    """A NIK first registered in Surabaya (35.78) with a Kota Pasuruan address: ok."""
    birth = date(1990, 1, 1)
    worker = requested_worker(
        nik=make_nik(birth, "F", region="357801"),
        birth_date=birth,
        kecamatan_code="35.75.02",
        kelurahan="Purworejo",
    )
    assert isinstance(validate(worker, TODAY), ValidWorker)


def test_kota_pasuruan_nik_living_in_the_kabupaten_is_rejected() -> None:
    worker = requested_worker(kecamatan_code="35.14.01")
    assert codes(validate(worker, TODAY)) == {"DOMICILE_KABUPATEN_PASURUAN"}


# --- age ---------------------------------------------------------------------------


def years_before(day: date, years: int) -> date:
    return day.replace(year=day.year - years)


@pytest.mark.parametrize(
    ("birth", "accepted"),
    [
        (years_before(TODAY, 15), True),  # 15th birthday today
        (date(2011, 6, 16), False),  # 15 tomorrow: still 14
        (date(1961, 6, 16), True),  # 65 tomorrow: still 64
        (years_before(TODAY, 65), False),  # 65th birthday today
        (date(1990, 1, 1), True),
    ],
)
def test_age_boundaries(birth: date, accepted: bool) -> None:
    worker = requested_worker(birth_date=birth, nik=make_nik(birth, "F"))
    result = validate(worker, TODAY)
    if accepted:
        assert isinstance(result, ValidWorker)
    else:
        assert codes(result) == {"AGE_OUT_OF_RANGE"}


def test_age_rule_is_configurable() -> None:
    birth = date(2011, 6, 16)  # 14
    worker = requested_worker(birth_date=birth, nik=make_nik(birth, "F"))
    assert isinstance(validate(worker, TODAY, AgeRule(minimum=14)), ValidWorker)


@pytest.mark.parametrize(
    ("birth", "today", "age"),
    [
        (date(2000, 2, 29), date(2015, 2, 28), 14),
        (date(2000, 2, 29), date(2015, 3, 1), 15),
        (date(2000, 12, 31), date(2015, 12, 30), 14),
        (date(2000, 12, 31), date(2015, 12, 31), 15),
    ],
)
def test_age_on(birth: date, today: date, age: int) -> None:
    assert age_on(birth, today) == age


# --- contact -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "phone",
    [
        "081234567890",
        "6281234567890",
        "+6281234567890",
        "0812 3456 7890",
        "0812-3456-7890",
        "+62 812-3456-7890",
        "62 812 3456 7890",
        " 081234567890 ",
        "(0812) 3456.7890",
    ],
)
def test_mobile_numbers_normalise_to_e164(phone: str) -> None:
    assert normalise_phone(phone) == "+6281234567890"


@pytest.mark.parametrize(
    ("phone", "e164"),
    [("0811234567", "+62811234567"), ("085712345678", "+6285712345678")],
)
def test_short_and_other_operator_numbers(phone: str, e164: str) -> None:
    assert normalise_phone(phone) == e164


@pytest.mark.parametrize(
    "phone",
    [
        "0343421234",  # Pasuruan landline
        "0343-421234",
        "+62343421234",
        "02112345678",  # Jakarta landline
        "+6591234567",  # Singapore mobile
        "0812",
        "not a number",
        "08123456789012345",
    ],
)
def test_landlines_and_foreign_or_junk_numbers_are_rejected(phone: str) -> None:
    assert normalise_phone(phone) is None


def test_landline_rejection_reason() -> None:
    assert codes(validate(requested_worker(phone="0343-421234"), TODAY)) == {"PHONE_INVALID"}


def test_email_is_optional() -> None:
    assert normalise_email(None) == (None, [])
    assert normalise_email("   ") == (None, [])
    result = validate(requested_worker(email=None), TODAY)
    assert isinstance(result, ValidWorker)
    assert result.email is None


def test_valid_email_is_normalised() -> None:
    email, reasons = normalise_email("  Siti.Aminah@Gmail.COM ")
    assert reasons == []
    assert email == "Siti.Aminah@gmail.com"


@pytest.mark.parametrize("email", ["siti", "siti@", "@gmail.com", "siti@@gmail.com", "siti@gmail"])
def test_invalid_email(email: str) -> None:
    assert codes(validate(requested_worker(email=email), TODAY)) == {"EMAIL_INVALID"}


# --- occupation, income, several reasons -------------------------------------------


@pytest.mark.parametrize("occupation", sorted(OCCUPATIONS))
def test_known_occupations(occupation: str) -> None:
    assert isinstance(validate(requested_worker(occupation=occupation), TODAY), ValidWorker)


def test_unknown_occupation() -> None:
    assert codes(validate(requested_worker(occupation="astronaut"), TODAY)) == {
        "OCCUPATION_UNKNOWN"
    }


def test_income_below_minimum() -> None:
    worker = requested_worker(declared_income=MINIMUM_DECLARED_INCOME - 1)
    assert codes(validate(worker, TODAY)) == {"INCOME_BELOW_MINIMUM"}
    ok = requested_worker(declared_income=MINIMUM_DECLARED_INCOME)
    assert isinstance(validate(ok, TODAY), ValidWorker)


def test_income_above_the_highest_bracket() -> None:
    assert codes(validate(requested_worker(declared_income=20_700_001), TODAY)) == {
        "INCOME_ABOVE_MAXIMUM"
    }
    assert isinstance(validate(requested_worker(declared_income=20_700_000), TODAY), ValidWorker)


@pytest.mark.parametrize("field", ["full_name", "address", "kelurahan", "phone", "email"])
@pytest.mark.parametrize("control", ["\x00", "\x1b", "\x7f"])
def test_control_characters_are_refused_naming_the_field(field: str, control: str) -> None:
    worker = requested_worker(**{field: f"ab{control}cd"})
    reasons = validate(worker, TODAY)
    assert isinstance(reasons, list)
    assert ("TEXT_INVALID", field) in {(r.code, r.field) for r in reasons}


@pytest.mark.parametrize(
    "field", ["full_name", "address", "kelurahan", "kecamatan_code", "phone", "occupation"]
)
@pytest.mark.parametrize(
    ("character", "category"),
    [
        ("\u202e", "format"),  # RIGHT-TO-LEFT OVERRIDE: displays text reversed
        ("\u200b", "format"),  # ZERO WIDTH SPACE
        ("\ufeff", "format"),  # a byte-order mark inside a value
        ("\U000e0001", "format"),  # LANGUAGE TAG
        ("\u0378", "unassigned"),
        ("\U0010fffe", "unassigned"),  # a noncharacter
        ("\ud800", "surrogates"),  # JSON can carry it; it cannot even be stored as UTF-8
    ],
    ids=["rlo", "zwsp", "bom", "tag", "unassigned", "noncharacter", "surrogate"],
)
def test_invisible_and_unassigned_characters_are_refused_naming_the_field(
    field: str, character: str, category: str
) -> None:
    worker = read_worker(raw_worker(**{field: f"Siti{character}Aminah"}))
    reasons = validate(worker, TODAY)
    assert isinstance(reasons, list)
    [text] = [r for r in reasons if r.code == "TEXT_INVALID"]
    assert text.field == field
    assert category in text.message


def test_accented_and_apostrophe_names_are_fine() -> None:
    for name in ("Siti Nur'aini", "Dewi Ayu Lestar\u00ed", "Tjo\u0308k", "D\u2019Costa"):
        assert isinstance(validate(requested_worker(full_name=name), TODAY), ValidWorker), name


def test_line_breaks_are_kept_in_an_address_only() -> None:
    assert isinstance(
        validate(requested_worker(address="Jl. Kartini 3\nRT 02/RW 05"), TODAY), ValidWorker
    )
    reasons = validate(requested_worker(full_name="Siti\nAminah"), TODAY)
    assert isinstance(reasons, list)
    assert [(r.code, r.field) for r in reasons] == [("TEXT_INVALID", "full_name")]


def test_every_reason_is_reported_together() -> None:
    worker = requested_worker(
        nik=make_nik(BIRTH, "M", serial="0000"),  # gender mismatch + serial
        kecamatan_code="35.14.01",
        phone="0343421234",
        email="nope",
        occupation="astronaut",
        declared_income=500_000,
        full_name="   ",
    )
    assert codes(validate(worker, TODAY)) == {
        "NAME_INVALID",
        "NIK_GENDER_MISMATCH",
        "NIK_SERIAL",
        "DOMICILE_KABUPATEN_PASURUAN",
        "PHONE_INVALID",
        "EMAIL_INVALID",
        "OCCUPATION_UNKNOWN",
        "INCOME_BELOW_MINIMUM",
    }


def test_a_worker_that_fits_the_schema_is_read_as_is() -> None:
    assert read_worker(raw_worker()) == requested_worker()


@pytest.mark.parametrize(
    ("changes", "code", "field"),
    [
        ({"full_name": "A" * 201}, "NAME_INVALID", "full_name"),
        ({"full_name": None}, "NAME_INVALID", "full_name"),
        ({"nik": 3575014101900001}, "NIK_FORMAT", "nik"),
        ({"birth_date": "31-02-1990"}, "BIRTH_DATE_INVALID", "birth_date"),
        ({"gender": "X"}, "GENDER_INVALID", "gender"),
        ({"address": "A" * 301}, "ADDRESS_INVALID", "address"),
        ({"kelurahan": ""}, "DOMICILE_KELURAHAN_INVALID", "kelurahan"),
        ({"kecamatan_code": "3" * 17}, "DOMICILE_KECAMATAN_INVALID", "kecamatan_code"),
        ({"phone": None}, "PHONE_INVALID", "phone"),
        ({"email": "a" * 255}, "EMAIL_INVALID", "email"),
        ({"occupation": 7}, "OCCUPATION_UNKNOWN", "occupation"),
        ({"declared_income": False}, "INCOME_INVALID", "declared_income"),
        ({"declared_income": "1000000"}, "INCOME_INVALID", "declared_income"),
        ({"declared_income": 1_000_000.5}, "INCOME_INVALID", "declared_income"),
        ({"preferred_language": "jv"}, "LANGUAGE_UNKNOWN", "preferred_language"),
        ({"emial": "siti@example.com"}, "FIELD_UNKNOWN", "emial"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_a_field_that_does_not_fit_the_schema_is_a_reason_with_a_code(
    changes: dict[str, Any], code: str, field: str
) -> None:
    reasons = validate(read_worker(raw_worker(**changes)), TODAY)
    assert isinstance(reasons, list)
    assert [(r.code, r.field) for r in reasons] == [(code, field)], reasons
    assert all("input" not in r.message.lower() or code != "NAME_INVALID" for r in reasons)


def test_a_typo_in_a_field_name_suggests_the_field() -> None:
    [problem] = validate(read_worker(raw_worker(emial="siti@example.com")), TODAY)  # type: ignore[misc]
    assert problem.message == "unknown field 'emial' (did you mean 'email'?)"


def test_schema_reasons_come_with_every_other_rule_broken() -> None:
    """A clerk fixes a row in one go: a name too long does not hide a bad phone or a
    NIK whose date disagrees with the birth date."""
    worker = raw_worker(
        full_name="A" * 250,
        phone="0343421234",
        nik=make_nik(date(1991, 1, 1), "F"),
        gender="F",
    )
    assert codes(validate(read_worker(worker), TODAY)) == {
        "NAME_INVALID",
        "PHONE_INVALID",
        "NIK_BIRTHDATE_MISMATCH",
    }


def test_rules_comparing_an_unreadable_field_say_nothing() -> None:
    """The birth date is unreadable: no age or NIK-date reason built on a stand-in."""
    worker = raw_worker(birth_date="not a date")
    assert codes(validate(read_worker(worker), TODAY)) == {"BIRTH_DATE_INVALID"}


@pytest.mark.parametrize("name", ["em\x00ail", "x" * 5000, "\u202eliame", "a\ud800"])
def test_an_unknown_field_name_is_echoed_printable_and_bounded(name: str) -> None:
    [problem] = validate(read_worker({**raw_worker(), name: 1}), TODAY)  # type: ignore[misc]
    expected = "TEXT_INVALID" if "\ud800" in name else "FIELD_UNKNOWN"
    assert problem.code == expected and problem.field is not None
    assert len(problem.field) <= 67
    assert all(unicodedata.category(c) not in {"Cc", "Cf", "Cs", "Cn"} for c in problem.field)
    assert all(unicodedata.category(c) not in {"Cc", "Cf", "Cs", "Cn"} for c in problem.message)


def test_a_reason_quoting_the_input_back_is_printable() -> None:
    """email-validator quotes the offending character: a NUL would not even store."""
    reasons = validate(requested_worker(email="si\x00ti@example.com"), TODAY)
    assert isinstance(reasons, list)
    assert all("\x00" not in r.message for r in reasons)
    assert "EMAIL_INVALID" in codes(reasons)


def test_a_worker_that_is_not_an_object_is_one_reason() -> None:
    for raw in (None, [], "Siti", 5):
        unreadable = read_worker(raw)
        assert not isinstance(unreadable, type(requested_worker()))
        assert [(r.code, r.field) for r in validate(unreadable, TODAY)] == [  # type: ignore[union-attr]
            ("WORKER_INVALID", "worker")
        ]


def test_unknown_fields_around_the_worker_are_reasons_too() -> None:
    reasons = validate(read_worker(raw_worker(), unknown_fields=["sourcee"]), TODAY)
    assert [(r.code, r.field) for r in reasons] == [("FIELD_UNKNOWN", "sourcee")]  # type: ignore[union-attr]


def test_an_unreadable_request_is_rejected_with_its_nik_masked() -> None:
    worker = read_worker(raw_worker(full_name="A" * 201))
    unreadable = EnrolmentCommand("req-9", "upstream", worker, "corr-9")
    decision = decide([unreadable], {}, TODAY)
    [(_, rejected)] = decision.rejected
    [event] = events_for([], decision.rejected, TODAY)
    assert isinstance(event, EnrolmentRejected)
    assert event.nik_masked == mask_nik(requested_worker().nik)
    assert [r.code for r in rejected.reasons] == ["NAME_INVALID"]


def test_valid_worker_is_normalised() -> None:
    worker = requested_worker(
        nik=" 3575014101900001 ", phone="0812-3456-7890", email="Siti@Example.com"
    )
    result = validate(worker, TODAY)
    assert isinstance(result, ValidWorker)
    assert result.nik == "3575014101900001"
    assert result.phone_e164 == "+6281234567890"
    assert result.email == "Siti@example.com"


# --- decide: one membership per NIK ------------------------------------------------


def test_decide_accepts_and_rejects_in_one_batch() -> None:
    good = command("req-1")
    bad = command("req-2", occupation="astronaut")
    decision = decide([good, bad], {}, TODAY)
    assert [c.request_id for c, _ in decision.to_store] == ["req-1"]
    [(rejected_command, rejected)] = decision.rejected
    assert rejected_command is bad
    assert rejected.request_id == "req-2"
    assert {r.code for r in rejected.reasons} == {"OCCUPATION_UNKNOWN"}


def test_duplicate_nik_within_a_batch() -> None:
    first = command("req-1")
    second = command("req-2")
    decision = decide([first, second], {}, TODAY)
    assert [c.request_id for c, _ in decision.to_store] == ["req-1"]
    [(_, rejected)] = decision.rejected
    [only] = rejected.reasons
    assert only.code == "DUPLICATE_NIK"
    assert only.field == "nik"
    assert "another request" in only.message


def test_duplicate_nik_keeps_the_holder_out_of_the_reasons_but_on_the_answer() -> None:
    number = participant_number(42)
    nik = make_nik(BIRTH, "F")
    decision = decide([command("req-9")], {nik: number}, TODAY)
    assert decision.to_store == []
    [(_, rejected)] = decision.rejected
    [only] = rejected.reasons
    assert only.code == "DUPLICATE_NIK"
    assert number not in only.message  # reasons reach events, topics and enrol-only keys
    assert rejected.existing_participant == number


def test_duplicate_check_ignores_surrounding_whitespace() -> None:
    nik = make_nik(BIRTH, "F")
    decision = decide([command("req-1", nik=f" {nik} ")], {nik: participant_number(7)}, TODAY)
    assert decision.to_store == []


def test_fullwidth_nik_is_not_a_second_membership() -> None:
    """The NIK already enrolled, written in FULLWIDTH digits, must not enrol again."""
    nik = make_nik(BIRTH, "F")
    decision = decide([command("req-1", nik=fullwidth(nik))], {nik: participant_number(7)}, TODAY)
    assert decision.to_store == []


def test_events_for_an_enrolment_and_a_rejection() -> None:
    good = command("req-1")
    bad = command("req-2", nik="3575014101900000")
    decision = decide([good, bad], {}, TODAY)
    [(stored_command, worker)] = decision.to_store
    events = events_for(
        [Numbered(stored_command, worker, participant_number(1))], decision.rejected, TODAY
    )
    enrolled, rejected = events
    assert isinstance(enrolled, WorkerEnrolled)
    assert enrolled.nik_masked == "************0001"
    assert enrolled.participant_number == participant_number(1)
    assert enrolled.phone_e164 == "+6281234567890"
    assert enrolled.enrolled_on == TODAY
    assert enrolled.correlation_id == "corr-req-1"
    assert isinstance(rejected, EnrolmentRejected)
    assert rejected.nik_masked == "************0000"
    assert "3575014101900000" not in rejected.model_dump_json()
    # Deterministic ids: the same request always yields the same event id.
    again = events_for(
        [Numbered(stored_command, worker, participant_number(1))], decision.rejected, TODAY
    )
    assert [e.event_id for e in again] == [e.event_id for e in events]


def test_rejected_event_omits_a_malformed_nik() -> None:
    bad = command("req-3", nik="12345")
    decision = decide([bad], {}, TODAY)
    [rejected] = events_for([], decision.rejected, TODAY)
    assert isinstance(rejected, EnrolmentRejected)
    assert rejected.nik_masked is None


# --- participant numbers -----------------------------------------------------------


def test_participant_number_shape() -> None:
    number = participant_number(1)
    assert number == "00000000018"
    assert len(number) == 11
    assert number.isdigit()
    assert is_valid_participant_number(number)


def test_luhn_check_digit_known_value() -> None:
    assert luhn_check_digit("7992739871") == "3"


def test_participant_number_sequence_exhausted() -> None:
    assert is_valid_participant_number(participant_number(10**10 - 1))
    with pytest.raises(ValueError, match="exhausted"):
        participant_number(10**10)


@pytest.mark.parametrize("value", [1, 2, 99, 1234567, 9_038, 10**10 - 1])
def test_any_single_digit_change_is_detected(value: int) -> None:
    number = participant_number(value)
    for position in range(len(number)):
        for digit in "0123456789":
            if digit == number[position]:
                continue
            changed = number[:position] + digit + number[position + 1 :]
            assert not is_valid_participant_number(changed), changed


@pytest.mark.parametrize("text", ["", "0000000001", "000000000188", "0000000001x", "abcdefghijk"])
def test_malformed_participant_numbers(text: str) -> None:
    assert not is_valid_participant_number(text)


@given(st.integers(1, 10**10 - 1))
def test_every_participant_number_is_luhn_valid(value: int) -> None:
    number = participant_number(value)
    assert len(number) == 11
    assert number[:10] == f"{value:010d}"
    assert is_valid_participant_number(number)


@given(st.integers(1, 10**10 - 1), st.integers(0, 10), st.integers(1, 9))
def test_any_single_digit_change_is_detected_property(value: int, position: int, bump: int) -> None:
    number = participant_number(value)
    digit = str((int(number[position]) + bump) % 10)
    changed = number[:position] + digit + number[position + 1 :]
    assert not is_valid_participant_number(changed)


# --- masking -----------------------------------------------------------------------


def test_mask_nik() -> None:
    assert mask_nik("3575014101900001") == "************0001"


@given(st.text(alphabet="0123456789", min_size=16, max_size=16))
def test_mask_nik_keeps_only_the_last_four(nik: str) -> None:
    masked = mask_nik(nik)
    assert masked == "*" * 12 + nik[-4:]
    assert nik[:12] not in masked


def test_an_unreadable_kelurahan_is_one_reason_not_also_an_unknown_kelurahan() -> None:
    worker = requested_worker(kelurahan="Gadingrejo\u0378")
    reasons = validate(worker, TODAY)
    assert [(r.code, r.field) for r in reasons] == [("TEXT_INVALID", "kelurahan")]  # type: ignore[union-attr]


def test_an_unreadable_kecamatan_does_not_make_the_kelurahan_a_mismatch() -> None:
    raw = requested_worker(kelurahan="Tapa'an").model_dump(mode="json")
    raw["kecamatan_code"] = "3" * 17  # too long for the schema
    reasons = validate(read_worker(raw), TODAY)
    assert [(r.code, r.field) for r in reasons] == [  # type: ignore[union-attr]
        ("DOMICILE_KECAMATAN_INVALID", "kecamatan_code")
    ]


def test_a_request_digest_ignores_key_order_spacing_and_omitted_defaults() -> None:
    raw = requested_worker().model_dump(mode="json")
    shuffled = dict(reversed(list(raw.items())))
    del shuffled["declared_income"]  # its default
    first = EnrolmentCommand("k", "api", read_worker(raw), "c")
    again = EnrolmentCommand("k", "api", read_worker(shuffled), "c")
    other = EnrolmentCommand("k", "api", read_worker({**raw, "full_name": "Siti"}), "c")
    assert first.digest == again.digest != other.digest
    assert len(first.digest) == 64


def test_an_unreadable_request_has_a_digest_of_what_was_sent() -> None:
    raw = {**requested_worker().model_dump(mode="json"), "emial": "x@example.com"}
    one = EnrolmentCommand("k", "api", read_worker(raw), "c")
    two = EnrolmentCommand("k", "api", read_worker({**raw, "emial": "y@example.com"}), "c")
    assert isinstance(one.worker, UnreadableWorker)
    assert one.digest != two.digest
    assert read_worker(["not", "an", "object"]).digest  # type: ignore[union-attr]


def test_every_reason_code_the_rules_can_give_is_catalogued_and_in_the_readme() -> None:
    import inspect
    import re
    from pathlib import Path

    from services.registration import app, changes, domain
    from services.registration.reasons import REASONS

    source = inspect.getsource(domain) + inspect.getsource(app) + inspect.getsource(changes)
    given = set(re.findall(r'"([A-Z][A-Z_]+_[A-Z]+)"', source))
    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    assert given <= set(REASONS), given - set(REASONS)
    assert [code for code in REASONS if f"| `{code}` |" not in readme] == []


def test_a_change_to_a_worker_enrolled_before_kelurahan_codes_fills_in_the_code() -> None:
    from services.registration.changes import WorkerDetails, apply_changes

    legacy = WorkerDetails(
        "+6281234567890", None, "Jl. Kepel 1", "357503", "tapaan", None, "id", 1_000_000
    )
    after = apply_changes(legacy, {"preferred_language": "en"})
    assert not isinstance(after, list)
    assert (after.kecamatan_code, after.kelurahan, after.kelurahan_code) == (
        "35.75.03",
        "Tapa'an",
        "35.75.03.1003",
    )
    junk = WorkerDetails("+6281234567890", None, "Jl. 1", "35.75.03", "Kampung", None, "id", 10**6)
    [problem] = apply_changes(junk, {"preferred_language": "en"})  # type: ignore[misc]
    assert problem.code == "DOMICILE_KELURAHAN_UNKNOWN"
    assert "give kecamatan_code and kelurahan" in problem.message
    fixed = apply_changes(junk, {"kecamatan_code": "35.75.03", "kelurahan": "Kepel"})
    assert not isinstance(fixed, list) and fixed.kelurahan_code == "35.75.03.1002"
