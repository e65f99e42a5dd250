"""API keys and their scopes: what a caller may do, free of I/O.

A key is ``psk_`` and 43 random URL-safe characters (256 bits). Only its SHA-256 is
stored: a key that random cannot be guessed from its hash, so the slow hashes passwords
need add nothing here and would cost every request. The first 12 characters (``psk_``
and 8 of the random part) are kept in clear, so an operator can tell which listed key a
caller holds without the key itself being kept anywhere.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from uuid import UUID

KEY_PREFIX = "psk_"
SHOWN_CHARS = 12
"""How much of a key is kept in clear to tell keys apart: ``psk_`` and 8 more."""


class Scope(StrEnum):
    """What a key may do. A route names the scopes any one of which lets a caller in."""

    ENROL = "enrol"
    """Submit enrolments (one, a batch, a CSV import) and follow their outcome."""
    READ = "read"
    """Read workers' personal data (search, record, history, policy). Every read is kept
    in the access log."""
    ADMIN = "admin"
    """Change workers, deregister them, manage funding agreements, end policies."""
    FINANCE = "finance"
    """Billing runs, invoices, payments, the ledger check, billing reports."""
    OPS = "ops"
    """Summaries, reports without personal data, metrics."""


def parse_scopes(values: list[str] | tuple[str, ...]) -> frozenset[Scope]:
    """The scopes named (``enrol``, ``read,admin``...), or ValueError naming the unknown."""
    names = [part.strip() for value in values for part in value.split(",") if part.strip()]
    unknown = sorted({name for name in names if name not in Scope.__members__.values()})
    if unknown:
        known = ", ".join(scope.value for scope in Scope)
        raise ValueError(f"unknown scope {', '.join(unknown)} (known: {known})")
    if not names:
        raise ValueError("a key needs at least one scope")
    return frozenset(Scope(name) for name in names)


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def key_digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def shown_part(key: str) -> str:
    return key[:SHOWN_CHARS]


_KEY_SHAPE = re.compile(rf"^{KEY_PREFIX}[A-Za-z0-9_-]{{43}}$")


def bearer_key(authorization: str | None) -> str | None:
    """The key of an ``Authorization: Bearer <key>`` header, or None. Anything that is
    not shaped exactly like one of our keys is None too: it cannot match, and costs no
    database lookup."""
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    key = value.strip()
    if scheme.lower() != "bearer" or not _KEY_SHAPE.match(key):
        return None
    return key


@dataclass(frozen=True)
class Caller:
    """Who is calling: the key that authenticated the request."""

    key_id: UUID
    name: str
    shown: str
    scopes: frozenset[Scope]

    def may(self, *scopes: Scope) -> bool:
        """Holds any one of ``scopes``."""
        return not self.scopes.isdisjoint(scopes)


@dataclass(frozen=True)
class StoredKey:
    """A key as the store keeps it (never the key itself)."""

    key_id: UUID
    name: str
    shown: str
    scopes: frozenset[Scope]
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None

    def refusal(self, now: datetime) -> str | None:
        """Why the key cannot be used now (revoked, expired), or None."""
        if self.revoked_at is not None and self.revoked_at <= now:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return None

    def caller(self) -> Caller:
        return Caller(self.key_id, self.name, self.shown, self.scopes)

    def as_dict(self, now: datetime) -> dict[str, object]:
        return {
            "key_id": str(self.key_id),
            "name": self.name,
            "shown": self.shown,
            "scopes": sorted(self.scopes),
            "created_at": self.created_at.isoformat(),
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
            "usable": self.refusal(now) is None,
        }
