"""API keys, scopes and the per-key rate limit, without I/O."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.api_keys import (
    KEY_PREFIX,
    Caller,
    Scope,
    StoredKey,
    bearer_key,
    key_digest,
    new_key,
    parse_scopes,
    shown_part,
)
from shared.rate_limit import RateLimiter

NOW = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
KEY = "psk_" + "A" * 43


def stored(**changes: object) -> StoredKey:
    values: dict[str, object] = {
        "key_id": uuid.uuid4(),
        "name": "clerks",
        "shown": "psk_abcdefgh",
        "scopes": frozenset({Scope.READ}),
        "created_at": NOW - timedelta(days=1),
        "expires_at": None,
        "revoked_at": None,
        **changes,
    }
    return StoredKey(**values)  # type: ignore[arg-type]


def test_keys_are_random_prefixed_and_kept_only_as_their_digest() -> None:
    keys = {new_key() for _ in range(100)}
    assert len(keys) == 100
    key = keys.pop()
    assert key.startswith(KEY_PREFIX) and len(key) == len(KEY_PREFIX) + 43
    assert len(key_digest(key)) == 32 and key_digest(key) != key_digest(new_key())
    assert shown_part(key) == key[:12]


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (
            "Bearer psk_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "psk_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        ),
        (
            "bearer   psk_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA  ",
            "psk_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        ),
        (f"Basic {KEY}", None),
        ("Bearer abc", None),  # not one of our keys: not even looked up
        ("Bearer psk_abc", None),  # not the shape of one
        (f"Bearer {KEY}x", None),
        ("Bearer psk_" + "a" * 42 + "!", None),
        (KEY, None),
        ("", None),
        (None, None),
    ],
)
def test_only_a_bearer_header_with_one_of_our_keys_is_read(
    header: str | None, expected: str | None
) -> None:
    assert bearer_key(header) == expected


def test_scopes_are_named_one_by_one_or_with_commas_and_unknown_ones_refused() -> None:
    assert parse_scopes(["enrol", "read,ops"]) == {Scope.ENROL, Scope.READ, Scope.OPS}
    with pytest.raises(ValueError, match="unknown scope root, superuser"):
        parse_scopes(["read", "superuser,root"])
    with pytest.raises(ValueError, match="at least one"):
        parse_scopes([" , "])


def test_a_caller_may_do_what_any_one_of_its_scopes_allows() -> None:
    caller = Caller(uuid.uuid4(), "clerks", "psk_abcdefgh", frozenset({Scope.ENROL}))
    assert caller.may(Scope.ENROL, Scope.READ)
    assert not caller.may(Scope.READ, Scope.ADMIN)


def test_a_revoked_or_expired_key_is_refused_from_that_moment() -> None:
    assert stored().refusal(NOW) is None
    assert stored(expires_at=NOW + timedelta(seconds=1)).refusal(NOW) is None
    assert stored(expires_at=NOW).refusal(NOW) == "expired"
    assert stored(revoked_at=NOW - timedelta(hours=1)).refusal(NOW) == "revoked"
    listed = stored(revoked_at=NOW).as_dict(NOW)
    assert listed["usable"] is False and "key" not in listed


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_is_allowed_then_one_request_per_interval() -> None:
    clock = Clock()
    limiter = RateLimiter(rate_per_s=2, burst=3, clock=clock)
    assert [limiter.take("k") for _ in range(3)] == [0, 0, 0]
    assert limiter.take("k") == pytest.approx(0.5)
    assert limiter.take("other") == 0  # each key has its own bucket
    clock.now = 0.5
    assert limiter.take("k") == 0
    assert limiter.take("k") > 0
    assert RateLimiter.retry_after(0.01) == "1" and RateLimiter.retry_after(2.2) == "3"


@given(
    rate=st.floats(min_value=0.5, max_value=50),
    burst=st.integers(min_value=1, max_value=20),
    gaps=st.lists(st.floats(min_value=0, max_value=2), min_size=1, max_size=200),
)
def test_no_key_ever_gets_more_than_its_burst_plus_its_rate(
    rate: float, burst: int, gaps: list[float]
) -> None:
    clock = Clock()
    limiter = RateLimiter(rate_per_s=rate, burst=burst, clock=clock)
    allowed = 0
    for gap in gaps:
        clock.now += gap
        wait = limiter.take("k")
        if wait == 0:
            allowed += 1
        else:
            assert 0 < wait <= 1 / rate + 1e-9
    assert allowed <= burst + rate * clock.now + 1e-6
