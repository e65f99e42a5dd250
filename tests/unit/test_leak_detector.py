"""The e2e leak scan's detector finds a cohort's personal data in any form it is
written, and not its masked forms (so a clean scan means something)."""

from __future__ import annotations

from devtools.cohort import generate_cohort
from tests.e2e.leaks import PersonalData


def test_full_niks_phones_and_addresses_are_found_and_masked_ones_are_not() -> None:
    entries = generate_cohort(50, invalid=0, seed=11)
    data = PersonalData.of(entries)
    worker = next(e.worker for e in entries if e.worker.email)
    national = worker.phone.removeprefix("0")
    assert data.found(f'{{"nik": "{worker.nik}"}}') == {"nik"}
    assert data.found(f"to +62{national} now") == {"phone"}
    assert data.found(f"to 62{national}") == {"phone"}
    assert data.found(f"hp {worker.phone};") == {"phone"}
    assert data.found(f"<{str(worker.email).upper()}>") == {"email"}
    masked = f"{'*' * 12}{worker.nik[-4:]} +62{'*' * 8}{national[-3:]} {str(worker.email)[0]}***@x"
    assert data.found(masked) == set()
    assert data.found("participant 00000000018, 2026-12-01, Rp 151,838,400") == set()
