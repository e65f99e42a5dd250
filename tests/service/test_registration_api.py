"""Registration's HTTP API in depth: the real app and handlers over a real PostgreSQL
schema (the broker is not started; the events are checked in the outbox)."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import uuid
from collections.abc import AsyncIterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any, cast

import asyncpg
import httpx
import pytest

from devtools.cohort import generate_cohort, write_cohort_csv
from services.registration.app import SPEC, create_app
from services.registration.settings import RegistrationSettings
from shared.relay import OutboxRelay
from shared.service import Resources
from tests.conftest import ServicePool, bearer, make_api_key
from tests.factories import requested_worker

HEADER_ID = (
    b"nik;nama;tanggal_lahir;jenis_kelamin;alamat;kelurahan;kode_kecamatan;no_hp;pekerjaan\n"
)

pytestmark = pytest.mark.integration


@pytest.fixture
async def pool(service_pool: ServicePool) -> asyncpg.Pool:
    return await service_pool(SPEC, max_size=8)


@pytest.fixture
async def api(pool: asyncpg.Pool, topic_prefix: str) -> AsyncIterator[httpx.AsyncClient]:
    settings = RegistrationSettings.model_construct(
        **{**RegistrationSettings().model_dump(), "topic_prefix": topic_prefix}
    )
    app = create_app(Resources(SPEC, settings, pool, cast(OutboxRelay, None)))
    transport = httpx.ASGITransport(app=app)
    key = await make_api_key(pool)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://registration", headers=bearer(key)
    ) as client:
        yield client


def worker_json(**changes: Any) -> dict[str, Any]:
    return {**requested_worker().model_dump(mode="json"), **changes}


async def events(pool: asyncpg.Pool, event_type: str) -> list[dict[str, Any]]:
    rows = await pool.fetch("SELECT value FROM outbox ORDER BY created_at, event_id")
    found = [json.loads(row["value"]) for row in rows]
    return [event for event in found if event["event_type"] == event_type]


async def test_the_same_key_for_a_different_worker_is_a_409_naming_the_first_answer(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    key = f"key-{uuid.uuid4()}"
    first = worker_json()
    created = await api.post("/v1/enrolments", json=first, headers={"Idempotency-Key": key})
    reordered = dict(reversed(list(first.items())))
    reordered.pop("declared_income")  # the default: the same request
    again = await api.post("/v1/enrolments", json=reordered, headers={"Idempotency-Key": key})
    other = await api.post(
        "/v1/enrolments",
        json={**first, "phone": "081298765432"},
        headers={"Idempotency-Key": key},
    )
    assert created.status_code == 201, created.text
    assert again.status_code == 201 and again.json() == created.json()
    assert other.status_code == 409, other.text
    problem = other.json()
    assert problem["type"] == "/problems/idempotency-conflict"
    assert (problem["request_id"], problem["outcome"], problem["first_outcome"]) == (
        key,
        "conflict",
        "enrolled",
    )
    assert problem["participant_number"] == created.json()["participant_number"]
    assert created.json()["participant_number"] in problem["detail"]
    assert len(await events(pool, "worker.enrolled")) == 1
    assert await pool.fetchval("SELECT count(*) FROM workers") == 1


async def test_a_rejected_request_reused_for_another_worker_is_a_conflict_too(
    api: httpx.AsyncClient,
) -> None:
    key = f"key-{uuid.uuid4()}"
    bad = await api.post(
        "/v1/enrolments", json=worker_json(phone="12"), headers={"Idempotency-Key": key}
    )
    fixed = await api.post("/v1/enrolments", json=worker_json(), headers={"Idempotency-Key": key})
    assert bad.status_code == 422
    assert fixed.status_code == 409
    assert fixed.json()["first_outcome"] == "rejected"


async def test_a_batch_names_conflicts_with_earlier_requests_and_within_itself(
    api: httpx.AsyncClient,
) -> None:
    earlier = f"key-{uuid.uuid4()}"
    assert (
        await api.post("/v1/enrolments", json=worker_json(), headers={"Idempotency-Key": earlier})
    ).status_code == 201
    twice = f"key-{uuid.uuid4()}"
    alice, bob = worker_json(), worker_json(nik="3575014101900002", phone="081311112222")
    response = await api.post(
        "/v1/enrolments/batch",
        json={
            "enrolments": [
                {"request_id": earlier, "worker": bob},
                {"request_id": twice, "worker": alice},
                {"request_id": twice, "worker": bob},
                {"request_id": twice, "worker": alice},
            ]
        },
    )
    assert response.status_code == 200, response.text
    outcomes = [
        (r["outcome"], [x["code"] for x in r["reasons"]]) for r in response.json()["results"]
    ]
    assert outcomes == [
        ("conflict", ["IDEMPOTENCY_CONFLICT"]),
        ("rejected", ["DUPLICATE_NIK"]),  # alice's NIK is the earlier request's worker
        ("conflict", ["IDEMPOTENCY_CONFLICT"]),
        ("rejected", ["DUPLICATE_NIK"]),
    ]


async def test_concurrent_requests_under_one_key_with_different_workers_decide_one(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    key = f"key-{uuid.uuid4()}"
    workers = [
        worker_json(nik=f"357501410190{n:04d}", phone=f"08131111{n:04d}") for n in range(1, 7)
    ]
    responses = await asyncio.gather(
        *(api.post("/v1/enrolments", json=w, headers={"Idempotency-Key": key}) for w in workers)
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201, 409, 409, 409, 409, 409], [r.text for r in responses]
    assert await pool.fetchval("SELECT count(*) FROM workers") == 1


async def test_the_status_of_any_request_by_its_id(api: httpx.AsyncClient) -> None:
    key = f"status/{uuid.uuid4()}"  # ids may hold slashes
    created = await api.post("/v1/enrolments", json=worker_json(), headers={"Idempotency-Key": key})
    batch_id = f"batch-{uuid.uuid4()}"
    await api.post(
        "/v1/enrolments/batch",
        json={"enrolments": [{"request_id": batch_id, "worker": worker_json(phone="x")}]},
    )

    status = await api.get(f"/v1/enrolments/{key}")
    rejected = await api.get(f"/v1/enrolments/{batch_id}")
    missing = await api.get(f"/v1/enrolments/never-{uuid.uuid4()}")

    assert status.status_code == 200, status.text
    body = status.json()
    assert (body["outcome"], body["source"], body["participant_number"]) == (
        "enrolled",
        "api",
        created.json()["participant_number"],
    )
    assert body["received_at"]
    assert (rejected.json()["outcome"], rejected.json()["source"]) == ("rejected", "bulk")
    assert [r["code"] for r in rejected.json()["reasons"]] == ["PHONE_INVALID"]
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"


async def enrolled(api: httpx.AsyncClient, **changes: Any) -> str:
    response = await api.post(
        "/v1/enrolments",
        json=worker_json(**changes),
        headers={"Idempotency-Key": f"key-{uuid.uuid4()}"},
    )
    assert response.status_code == 201, response.text
    return str(response.json()["participant_number"])


async def test_a_change_of_contact_is_validated_stored_announced_and_kept_in_history(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    number = await enrolled(api)
    response = await api.patch(
        f"/v1/workers/{number}",
        json={
            "phone": "+62 813-1111-2222",
            "email": "Siti@Example.com",
            "preferred_language": "en",
        },
        headers={"X-Actor": "clerk.ani"},
    )
    again = await api.patch(f"/v1/workers/{number}", json={"phone": "081311112222"})

    assert response.status_code == 200, response.text
    assert sorted(response.json()["changed"]) == ["email", "phone_e164", "preferred_language"]
    assert response.json()["worker"]["revision"] == 2
    assert again.status_code == 200 and again.json()["changed"] == []  # the same again
    [event] = await events(pool, "worker.details-changed")
    assert (event["phone_e164"], event["email"], event["preferred_language"]) == (
        "+6281311112222",
        "Siti@example.com",
        "en",
    )
    assert event["revision"] == 2 and event["participant_number"] == number
    history = (await api.get(f"/v1/workers/{number}/history")).json()
    assert [(h["revision"], h["change"], h["actor"]) for h in history] == [
        (1, "enrolled", "api"),
        (2, "details_changed", "clerk.ani (key test)"),
    ]
    assert history[1]["changes"]["phone_e164"] == {"from": "+6281234567890", "to": "+6281311112222"}
    with pytest.raises(asyncpg.RaiseError, match="append-only"):
        await pool.execute("UPDATE worker_history SET actor = 'someone else'")


async def test_a_move_within_the_city_needs_a_kelurahan_of_the_new_kecamatan(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    number = await enrolled(api)
    alone = await api.patch(f"/v1/workers/{number}", json={"kecamatan_code": "35.75.03"})
    moved = await api.patch(
        f"/v1/workers/{number}",
        json={"kecamatan_code": "357503", "kelurahan": "tapaan", "address": "Jl. Kepel 3"},
    )
    assert alone.status_code == 422
    assert [r["code"] for r in alone.json()["reasons"]] == ["DOMICILE_KELURAHAN_MISMATCH"]
    assert alone.json()["type"] == "/problems/change-rejected"
    assert moved.status_code == 200, moved.text
    worker = moved.json()["worker"]
    assert (worker["kecamatan_code"], worker["kelurahan"], worker["kelurahan_code"]) == (
        "35.75.03",
        "Tapa'an",
        "35.75.03.1003",
    )
    [event] = await events(pool, "worker.details-changed")
    assert sorted(event["changed"]) == ["address", "kecamatan_code", "kelurahan", "kelurahan_code"]


async def test_a_change_breaking_rules_is_refused_with_every_reason_and_changes_nothing(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    number = await enrolled(api)
    response = await api.patch(
        f"/v1/workers/{number}",
        json={"phone": "0343-412345", "email": "not an email", "declared_income": 50},
    )
    outside = await api.patch(
        f"/v1/workers/{number}", json={"kecamatan_code": "35.14.01", "kelurahan": "Pandaan"}
    )
    unknown_field = await api.patch(f"/v1/workers/{number}", json={"nik": "3575010101900001"})
    assert response.status_code == 422
    assert sorted(r["code"] for r in response.json()["reasons"]) == [
        "EMAIL_INVALID",
        "INCOME_BELOW_MINIMUM",
        "PHONE_INVALID",
    ]
    [reason] = outside.json()["reasons"]
    assert reason["code"] == "DOMICILE_KABUPATEN_PASURUAN"
    assert "deregistration (reason MOVED_OUT)" in reason["message"]
    assert unknown_field.status_code == 422  # identity is not a detail to change
    assert await events(pool, "worker.details-changed") == []
    assert len((await api.get(f"/v1/workers/{number}/history")).json()) == 1


async def test_deregistration_ends_the_membership_once_and_a_later_enrolment_starts_another(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    worker = worker_json()
    number = await enrolled(api, **worker)
    enrolled_on = (await api.get(f"/v1/workers/{number}")).json()["enrolled_on"]
    body = {"reason": "MOVED_OUT", "effective_date": enrolled_on}
    first = await api.post(f"/v1/workers/{number}/deregistration", json=body)
    same = await api.post(f"/v1/workers/{number}/deregistration", json=body)
    other = await api.post(f"/v1/workers/{number}/deregistration", json={**body, "reason": "DIED"})
    change = await api.patch(f"/v1/workers/{number}", json={"preferred_language": "en"})

    assert first.status_code == 200, first.text
    assert (first.json()["status"], first.json()["deregistration_reason"]) == (
        "deregistered",
        "MOVED_OUT",
    )
    assert same.status_code == 200
    assert other.status_code == 409
    assert other.json()["type"] == "/problems/already-deregistered"
    assert change.status_code == 409
    assert change.json()["type"] == "/problems/worker-deregistered"
    [event] = await events(pool, "worker.deregistered")
    assert (event["reason"], event["effective_date"], event["membership"]) == (
        "MOVED_OUT",
        enrolled_on,
        1,
    )

    back = await api.post(
        "/v1/enrolments",
        json={**worker, "phone": "081399998888"},
        headers={"Idempotency-Key": f"key-{uuid.uuid4()}"},
    )
    assert back.status_code == 201, back.text
    assert back.json()["participant_number"] == number
    record = (await api.get(f"/v1/workers/{number}")).json()
    assert (record["status"], record["membership"], record["revision"]) == ("active", 2, 3)
    enrolments = await events(pool, "worker.enrolled")
    assert [(e["membership"], e["revision"]) for e in enrolments] == [(1, 1), (2, 3)]
    assert len({e["worker_id"] for e in enrolments}) == 1
    history = (await api.get(f"/v1/workers/{number}/history")).json()
    assert [h["change"] for h in history] == ["enrolled", "deregistered", "re_enrolled"]
    assert history[2]["changes"]["phone_e164"] == {"from": "+6281234567890", "to": "+6281399998888"}
    duplicate = await api.post(
        "/v1/enrolments", json=worker, headers={"Idempotency-Key": f"key-{uuid.uuid4()}"}
    )
    assert [r["code"] for r in duplicate.json()["reasons"]] == ["DUPLICATE_NIK"]


@pytest.mark.parametrize(
    ("shift_days", "code"),
    [(-1, "EFFECTIVE_DATE_BEFORE_ENROLMENT"), (1, "EFFECTIVE_DATE_IN_FUTURE")],
)
async def test_a_deregistration_date_outside_the_membership_is_refused(
    api: httpx.AsyncClient, shift_days: int, code: str
) -> None:
    number = await enrolled(api)
    enrolled_on = date.fromisoformat((await api.get(f"/v1/workers/{number}")).json()["enrolled_on"])
    response = await api.post(
        f"/v1/workers/{number}/deregistration",
        json={"reason": "DIED", "effective_date": str(enrolled_on + timedelta(days=shift_days))},
    )
    assert response.status_code == 422
    assert [r["code"] for r in response.json()["reasons"]] == [code]


async def test_changes_to_nobody_are_404_and_a_bad_reason_is_422(api: httpx.AsyncClient) -> None:
    nobody = "00000000018"
    assert (await api.patch(f"/v1/workers/{nobody}", json={"email": None})).status_code == 404
    dereg = await api.post(
        f"/v1/workers/{nobody}/deregistration",
        json={"reason": "DIED", "effective_date": "2026-01-01"},
    )
    assert dereg.status_code == 404
    number = await enrolled(api)
    bad = await api.post(
        f"/v1/workers/{number}/deregistration",
        json={"reason": "BORED", "effective_date": "2026-01-01"},
    )
    assert bad.status_code == 422


async def test_concurrent_re_enrolments_of_one_deregistered_worker_start_one_membership(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    worker = worker_json()
    number = await enrolled(api, **worker)
    enrolled_on = (await api.get(f"/v1/workers/{number}")).json()["enrolled_on"]
    await api.post(
        f"/v1/workers/{number}/deregistration",
        json={"reason": "REQUESTED", "effective_date": enrolled_on},
    )
    responses = await asyncio.gather(
        *(
            api.post("/v1/enrolments", json=worker, headers={"Idempotency-Key": f"again-{n}"})
            for n in range(6)
        )
    )
    assert sorted(r.status_code for r in responses) == [201, 422, 422, 422, 422, 422]
    assert (await api.get(f"/v1/workers/{number}")).json()["membership"] == 2


async def test_a_clerk_finds_workers_by_name_nik_tail_and_birth_date_or_phone(
    api: httpx.AsyncClient,
) -> None:
    names = ["Siti Aminah", "SITI Aisyah", "Sîti Amalia", "Budi Santoso"]
    numbers = {}
    for n, name in enumerate(names, start=1):
        numbers[name] = await enrolled(
            api, full_name=name, nik=f"357501410190{n:04d}", phone=f"08131111{n:04d}"
        )

    by_name = await api.get("/v1/workers", params={"q": "siti a"})
    accents = await api.get("/v1/workers", params={"q": "SITI AM"})
    by_nik = await api.get("/v1/workers", params={"q": "0004 01-01-1990"})
    by_phone = await api.get("/v1/workers", params={"q": "+62 813 1111 0002"})
    too_short = await api.get("/v1/workers", params={"q": "s"})

    assert [w["full_name"] for w in by_name.json()["items"]] == [
        "SITI Aisyah",
        "Sîti Amalia",
        "Siti Aminah",
    ]
    assert [w["full_name"] for w in accents.json()["items"]] == ["Sîti Amalia", "Siti Aminah"]
    [found] = by_nik.json()["items"]
    assert (found["full_name"], found["nik_masked"]) == ("Budi Santoso", "************0004")
    assert [w["participant_number"] for w in by_phone.json()["items"]] == [numbers["SITI Aisyah"]]
    assert too_short.status_code == 422
    assert "357501410190" not in by_name.text + by_nik.text  # NIKs are masked


async def test_search_pages_follow_the_cursor_to_the_end(api: httpx.AsyncClient) -> None:
    for n in range(1, 8):
        await enrolled(
            api, full_name=f"Rina {n}", nik=f"357501410190{n:04d}", phone=f"08131111{n:04d}"
        )
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params = {"q": "rina", "limit": "3", **({"cursor": cursor} if cursor else {})}
        page = (await api.get("/v1/workers", params=params)).json()
        seen += [w["full_name"] for w in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"Rina {n}" for n in range(1, 8)]
    assert pages == 3
    bad = await api.get("/v1/workers", params={"q": "rina", "cursor": "not-a-cursor"})
    assert bad.status_code == 422


def city_csv(tmp_path: Path, size: int, invalid: int, **options: Any) -> bytes:
    path = tmp_path / "city.csv"
    write_cohort_csv(generate_cohort(size, invalid=invalid, seed=11), path, **options)
    return path.read_bytes()


async def finished(api: httpx.AsyncClient, import_id: str) -> dict[str, Any]:
    for _ in range(200):
        status = (await api.get(f"/v1/imports/{import_id}")).json()
        if status["status"] == "done":
            return dict(status)
        await asyncio.sleep(0.05)
    raise AssertionError(f"import not done: {status}")


async def test_a_csv_upload_enrols_every_row_once_and_reports_each_row(
    api: httpx.AsyncClient, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    body = city_csv(tmp_path, 40, 10)
    created = await api.post(
        "/v1/imports",
        content=body,
        params={"filename": "daftar.csv"},
        headers={"Content-Type": "text/csv"},
    )
    assert created.status_code == 202, created.text
    status = await finished(api, created.json()["import_id"])
    again = await api.post("/v1/imports", content=body, headers={"Content-Type": "text/csv"})

    assert (status["rows_total"], status["rows_done"], status["enrolled"], status["rejected"]) == (
        50,
        50,
        40,
        10,
    )
    assert sum(status["rejected_by_reason"].values()) == 10
    assert again.status_code == 202
    assert again.json()["import_id"] == status["import_id"]
    assert (again.json()["uploads"], again.json()["enrolled"]) == (2, 40)
    assert len(await events(pool, "worker.enrolled")) == 40
    assert len(await events(pool, "enrolment.rejected")) == 10

    report = await api.get(f"/v1/imports/{status['import_id']}/rows", params={"format": "csv"})
    assert report.headers["content-type"].startswith("text/csv")
    text = report.content.decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(text), delimiter=";"))
    assert rows[0][:4] == ["row", "line", "outcome", "participant_number"]
    assert [int(r[0]) for r in rows[1:]] == list(range(1, 51))
    rejected = [r for r in rows[1:] if r[2] == "rejected"]
    assert len(rejected) == 10 and all(r[4] and r[5] and r[6] for r in rejected)
    assert any("NIK harus 16 digit" in r[5] for r in rejected)
    enrolled = [r for r in rows[1:] if r[2] == "enrolled"]
    assert all(len(r[3]) == 11 for r in enrolled)
    page = (await api.get(f"/v1/imports/{status['import_id']}/rows", params={"after": 45})).json()
    assert [r["row_number"] for r in page["rows"]] == [46, 47, 48, 49, 50]


@pytest.mark.parametrize(
    ("body", "line", "what"),
    [
        (b"nama,nik\nSiti,1\n", 1, "missing column(s)"),
        (
            HEADER_ID + b"3575;Budi \xe9;01-01-1990;L;Jl;Kepel;357503;0812;pedagang\n",
            2,
            "not UTF-8",
        ),
        (HEADER_ID + b"1;2;3;4;5;6;7;8;9\n1;2;3;4;5;6;7;8;9;10\n", 3, "10 fields"),
        (b"", 1, "empty"),
    ],
)
async def test_a_malformed_file_is_refused_naming_the_line_and_nothing_is_stored(
    api: httpx.AsyncClient, pool: asyncpg.Pool, body: bytes, line: int, what: str
) -> None:
    response = await api.post("/v1/imports", content=body, headers={"Content-Type": "text/csv"})
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["type"] == "/problems/import-file-invalid"
    assert f"line {line}: " in problem["detail"] and what in problem["detail"]
    assert await pool.fetchval("SELECT count(*) FROM imports") == 0
    assert await pool.fetchval("SELECT count(*) FROM enrolment_requests") == 0


async def test_english_headers_commas_and_no_bom_are_read_too(
    api: httpx.AsyncClient, tmp_path: Path
) -> None:
    semicolons = city_csv(tmp_path, 5, 0, indonesian=False).decode("utf-8-sig")
    out = io.StringIO()
    csv.writer(out).writerows(csv.reader(io.StringIO(semicolons), delimiter=";"))
    assert out.getvalue().startswith("nik,full_name,birth_date,")
    created = await api.post(
        "/v1/imports", content=out.getvalue().encode(), headers={"Content-Type": "text/csv"}
    )
    status = await finished(api, created.json()["import_id"])
    assert (status["enrolled"], status["rejected"]) == (5, 0)
