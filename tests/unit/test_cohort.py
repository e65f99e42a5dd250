"""The synthetic cohort obeys every registration rule it claims to, and is reproducible."""

from __future__ import annotations

import re
import time
from collections import Counter
from datetime import date
from pathlib import Path

import phonenumbers
import pytest
from phonenumbers import PhoneNumberType

from devtools import cohort
from devtools.cohort import (
    REJECTION_REASONS,
    CohortEntry,
    age_on,
    generate_cohort,
    load_cohort,
    misspelt,
    nik_birth_date,
    summary_expectations,
    write_cohort,
)
from services.registration.codes import KOTA_PASURUAN_KECAMATAN, OCCUPATIONS
from services.registration.regions import (
    Kelurahan,
    KelurahanMismatch,
    KelurahanUnknown,
    canonical_kecamatan_code,
)

TODAY = date(2025, 5, 22)
SEED = 20250522


@pytest.fixture(scope="module")
def full_cohort() -> list[CohortEntry]:
    return generate_cohort(9038, invalid=25, seed=SEED, today=TODAY)


@pytest.fixture(scope="module")
def valid(full_cohort: list[CohortEntry]) -> list[CohortEntry]:
    return [entry for entry in full_cohort if entry.expected_reason is None]


def is_id_mobile(phone: str) -> bool:
    try:
        number = phonenumbers.parse(phone, "ID")
    except phonenumbers.NumberParseException:
        return False
    return (
        phonenumbers.is_valid_number(number)
        and phonenumbers.number_type(number) == PhoneNumberType.MOBILE
    )


def e164(phone: str) -> str:
    return phonenumbers.format_number(
        phonenumbers.parse(phone, "ID"), phonenumbers.PhoneNumberFormat.E164
    )


def test_deterministic_for_a_seed() -> None:
    first = generate_cohort(300, invalid=16, seed=7, today=TODAY)
    again = generate_cohort(300, invalid=16, seed=7, today=TODAY)
    other = generate_cohort(300, invalid=16, seed=8, today=TODAY)
    assert first == again
    assert [e.worker.nik for e in first] != [e.worker.nik for e in other]


def test_valid_workers_do_not_depend_on_the_invalid_count() -> None:
    plain = generate_cohort(200, seed=7, today=TODAY)
    mixed = generate_cohort(200, invalid=9, seed=7, today=TODAY)
    assert [e.worker for e in plain] == [e.worker for e in mixed if e.expected_reason is None]


def test_request_ids_are_sequential_and_unique(full_cohort: list[CohortEntry]) -> None:
    ids = [entry.request_id for entry in full_cohort]
    assert ids[0] == f"cohort-{SEED}-000001"
    assert ids[-1] == f"cohort-{SEED}-{len(full_cohort):06d}"
    assert len(set(ids)) == len(ids)


def test_counts_and_reasons_add_up(full_cohort: list[CohortEntry]) -> None:
    assert len(full_cohort) == 9038 + 25
    reasons = [e.expected_reason for e in full_cohort if e.expected_reason is not None]
    assert len(reasons) == 25
    assert reasons[: len(REJECTION_REASONS)] == list(REJECTION_REASONS)  # cycles in order
    summary = summary_expectations(full_cohort)
    assert summary["enrolled"] == 9038
    assert summary["rejected"] == 25
    assert sum(summary["rejected_by_reason"].values()) == 25
    assert summary["rejected_by_reason"]["NIK_FORMAT"] == 3  # 25 = 2 x 10 + 5
    assert sum(summary["enrolled_by_occupation"].values()) == 9038
    assert sum(summary["enrolled_by_kecamatan"].values()) == 9038
    assert summary["monthly_premium_total"] == 151_838_400  # domain reference, section 2


def test_invalid_entries_are_interleaved(full_cohort: list[CohortEntry]) -> None:
    positions = [i for i, e in enumerate(full_cohort) if e.expected_reason is not None]
    assert positions[0] > 0
    assert positions[-1] - positions[0] > len(full_cohort) // 2


def test_valid_niks_are_unique_and_well_formed(valid: list[CohortEntry]) -> None:
    niks = [entry.worker.nik for entry in valid]
    assert len(set(niks)) == len(niks)
    assert all(re.fullmatch(r"35\d{10}(?!0000)\d{4}", nik) for nik in niks)


def test_nik_encodes_birth_date_and_gender(valid: list[CohortEntry]) -> None:
    for entry in valid:
        worker = entry.worker
        born, gender = nik_birth_date(worker.nik, TODAY)
        assert (born, gender) == (worker.birth_date, worker.gender), entry.request_id
        day = int(worker.nik[6:8])
        assert 41 <= day <= 71 if worker.gender == "F" else 1 <= day <= 31


def test_nik_prefix_mostly_kota_pasuruan(valid: list[CohortEntry]) -> None:
    prefixes = Counter(entry.worker.nik[:4] for entry in valid)
    share = prefixes["3575"] / len(valid)
    assert 0.82 < share < 0.88
    assert prefixes["3514"] > 0  # first registered in Kabupaten Pasuruan, living in the city
    for entry in valid:
        if entry.worker.nik.startswith("3575"):
            assert entry.worker.nik[4:6] in {"01", "02", "03", "04"}
        else:
            assert 1 <= int(entry.worker.nik[4:6]) <= 20


def test_ages_in_range(valid: list[CohortEntry]) -> None:
    ages = [age_on(entry.worker.birth_date, TODAY) for entry in valid]
    assert min(ages) >= 18
    assert max(ages) <= 63


def test_domicile_is_in_the_city(valid: list[CohortEntry]) -> None:
    for entry in valid:
        worker = entry.worker
        kecamatan = canonical_kecamatan_code(worker.kecamatan_code)
        assert kecamatan in KOTA_PASURUAN_KECAMATAN
        assert isinstance(cohort.REGIONS.resolve(worker.kelurahan, kecamatan), Kelurahan)
        assert re.search(r"No\. \d+, RT \d{2}/RW \d{2}$", worker.address)


def test_every_kelurahan_of_the_city_is_used_mostly_spelt_officially(
    valid: list[CohortEntry],
) -> None:
    official = {k.name for k in cohort.REGIONS.kelurahan}
    used = {cohort.REGIONS.find(entry.worker.kelurahan) for entry in valid}
    assert used == set(cohort.REGIONS.kelurahan)
    assert len(official) == 34
    assert {"Tapa'an", "Tamba'an", "Randusari"} <= {e.worker.kelurahan for e in valid}
    as_typed = [e for e in valid if e.worker.kelurahan not in official]
    undotted = [e for e in valid if "." not in e.worker.kecamatan_code]
    assert 0.05 < len(as_typed) / len(valid) < 0.15
    assert 0.005 < len(undotted) / len(valid) < 0.05


@pytest.mark.parametrize("kelurahan", [k.name for k in cohort.REGIONS.kelurahan])
def test_a_misspelt_kelurahan_is_no_kelurahan_of_the_city(kelurahan: str) -> None:
    assert cohort.REGIONS.find(misspelt(kelurahan)) is None


def test_every_valid_phone_is_a_unique_indonesian_mobile(valid: list[CohortEntry]) -> None:
    phones = [entry.worker.phone for entry in valid]
    bad = [phone for phone in phones if not is_id_mobile(phone)]
    assert bad == []
    normalised = [e164(phone) for phone in phones]
    assert len(set(normalised)) == len(normalised)
    assert all(re.fullmatch(r"\+628\d{7,11}", number) for number in normalised)
    assert all(11 <= len(number) - 2 <= 13 for number in normalised)  # 08.. form length
    forms = Counter("plus" if p.startswith("+") else p[:2] for p in phones)
    assert forms["08"] > forms["plus"] > 0
    assert forms["62"] > 0


def test_every_mobile_prefix_is_accepted_by_phonenumbers() -> None:
    for _, prefixes in cohort.MOBILE_PREFIXES.values():
        for prefix in prefixes:
            for length in cohort.PHONE_LENGTH_WEIGHTS:
                assert is_id_mobile(prefix + "1" * (length - len(prefix))), (prefix, length)


def test_emails_names_and_languages_look_real(valid: list[CohortEntry]) -> None:
    emails = [entry.worker.email for entry in valid if entry.worker.email]
    assert 0.22 < len(emails) / len(valid) < 0.28
    assert len(set(emails)) == len(emails)
    assert all(re.fullmatch(r"[a-z0-9.]+@[a-z.]+", email) for email in emails)
    names = [entry.worker.full_name for entry in valid]
    assert all(1 <= len(name.split()) <= 3 for name in names)
    assert any(len(name.split()) == 1 for name in names)
    english = sum(entry.worker.preferred_language == "en" for entry in valid) / len(valid)
    assert 0.015 < english < 0.045
    assert all(entry.worker.declared_income == 1_000_000 for entry in valid)


def test_occupations_are_known_and_realistically_weighted(valid: list[CohortEntry]) -> None:
    assert set(cohort.OCCUPATION_PROFILE) <= set(OCCUPATIONS)
    counts = Counter(entry.worker.occupation for entry in valid)
    ranked = [code for code, _ in counts.most_common()]
    assert ranked[:3] == ["pedagang", "buruh_tani", "pemilik_warung_kopi"]
    assert counts["marbot_masjid"] > counts["lainnya"]


def test_each_invalid_entry_breaks_exactly_its_rule(full_cohort: list[CohortEntry]) -> None:
    earlier_valid: dict[str, CohortEntry] = {}
    for entry in full_cohort:
        worker, reason = entry.worker, entry.expected_reason
        if reason is None:
            earlier_valid[worker.nik] = entry
            continue
        if reason == "NIK_FORMAT":
            assert not re.fullmatch(r"\d{16}", worker.nik)
            continue
        born, gender = nik_birth_date(worker.nik, TODAY)
        assert gender == worker.gender
        age = age_on(worker.birth_date, TODAY)
        assert (born == worker.birth_date) is (reason != "NIK_BIRTHDATE_MISMATCH")
        assert (15 <= age < 65) is (reason != "AGE_OUT_OF_RANGE")
        if reason == "AGE_OUT_OF_RANGE":
            assert age in (70, 12)
        assert worker.kecamatan_code.startswith("35.14.") is (
            reason == "DOMICILE_KABUPATEN_PASURUAN"
        )
        kecamatan = canonical_kecamatan_code(worker.kecamatan_code)
        in_city = kecamatan in KOTA_PASURUAN_KECAMATAN
        assert in_city is (reason not in {"DOMICILE_KABUPATEN_PASURUAN", "DOMICILE_OUTSIDE_CITY"})
        if in_city:
            place = cohort.REGIONS.resolve(worker.kelurahan, kecamatan)
            assert isinstance(place, KelurahanUnknown) is (reason == "DOMICILE_KELURAHAN_UNKNOWN")
            assert isinstance(place, KelurahanMismatch) is (reason == "DOMICILE_KELURAHAN_MISMATCH")
        assert is_id_mobile(worker.phone) is (reason != "PHONE_INVALID")
        assert (worker.occupation in OCCUPATIONS) is (reason != "OCCUPATION_UNKNOWN")
        assert (worker.nik in earlier_valid) is (reason == "DUPLICATE_NIK")
        if reason == "DUPLICATE_NIK":
            original = earlier_valid[worker.nik].worker
            assert worker.phone != original.phone
            assert (worker.birth_date, worker.gender) == (original.birth_date, original.gender)


def test_duplicate_nik_needs_a_valid_worker() -> None:
    with pytest.raises(ValueError, match="DUPLICATE_NIK"):
        generate_cohort(0, invalid=len(REJECTION_REASONS), seed=1, today=TODAY)
    before_duplicates = len(REJECTION_REASONS) - 1
    only_invalid = generate_cohort(0, invalid=before_duplicates, seed=1, today=TODAY)
    assert [e.expected_reason for e in only_invalid] == list(REJECTION_REASONS[:-1])


def test_full_size_generates_quickly() -> None:
    started = time.perf_counter()
    entries = generate_cohort(seed=SEED, today=TODAY)
    elapsed = time.perf_counter() - started
    assert len(entries) == 9038
    assert elapsed < 3.0, f"took {elapsed:.2f}s"


def test_jsonl_round_trip(tmp_path: Path) -> None:
    entries = generate_cohort(50, invalid=10, seed=3, today=TODAY)
    path = tmp_path / "cohort.jsonl"
    assert write_cohort(entries, path) == 60
    assert load_cohort(path) == entries


def test_cli_writes_the_cohort(tmp_path: Path) -> None:
    out = tmp_path / "out" / "cohort.jsonl"
    argv = ["--size", "40", "--invalid", "8", "--seed", "5", "--today", "2025-05-22"]
    assert cohort.main([*argv, "--out", str(out)]) == 0
    loaded = load_cohort(out)
    assert loaded == generate_cohort(40, invalid=8, seed=5, today=TODAY)


def _result(entry: CohortEntry, outcome: str, *codes: str) -> dict:
    return {
        "request_id": entry.request_id,
        "outcome": outcome,
        "reasons": [{"code": c, "field": "nik", "message": ""} for c in codes],
    }


def test_mismatches_accept_either_request_of_a_duplicate_pair_winning() -> None:
    from devtools.feeder import mismatches

    entries = [e for e in generate_cohort(30, invalid=len(REJECTION_REASONS), seed=7)]
    duplicate = next(e for e in entries if e.expected_reason == "DUPLICATE_NIK")
    original = next(
        e for e in entries if e.expected_reason is None and e.worker.nik == duplicate.worker.nik
    )
    others = [e for e in entries if e not in (duplicate, original)]
    expected_results = {
        e.request_id: (
            _result(e, "enrolled")
            if e.expected_reason is None
            else _result(e, "rejected", e.expected_reason)
        )
        for e in others
    }

    def results(original_outcome: dict, duplicate_outcome: dict) -> list[dict]:
        chosen = {original.request_id: original_outcome, duplicate.request_id: duplicate_outcome}
        return [chosen.get(e.request_id) or expected_results[e.request_id] for e in entries]

    swapped = results(
        _result(original, "rejected", "DUPLICATE_NIK"), _result(duplicate, "enrolled")
    )
    assert mismatches(entries, swapped) == []
    both = results(_result(original, "enrolled"), _result(duplicate, "enrolled"))
    assert {m["request_id"] for m in mismatches(entries, both)} == {
        original.request_id,
        duplicate.request_id,
    }
