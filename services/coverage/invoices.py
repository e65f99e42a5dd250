"""Coverage's use cases for an issued invoice: recording the payer's payments and
voiding it. Each transition is an event; settling an overdue invoice reinstates the
policies it lapsed."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

import asyncpg

from services.coverage import policies, store
from services.coverage.errors import NotFound, Refused
from shared.events import (
    Event,
    InvoicePaid,
    InvoiceVoided,
    derive_event_id,
    utc_now,
    wire_time,
)

PAYMENT_NAMESPACE = uuid.UUID("0f7c2b7e-3a55-4a8e-8c1e-5d2b9e4f6a10")


@dataclass(frozen=True)
class PaymentOutcome:
    payment_id: uuid.UUID
    status: str
    total: int
    paid_amount: int
    recorded_now: bool
    """False when this reference was recorded before with the same amount and date."""
    events: Sequence[Event]

    @property
    def outstanding(self) -> int:
        return self.total - self.paid_amount


async def pay(
    conn: asyncpg.Connection,
    invoice_id: uuid.UUID,
    *,
    amount: int,
    paid_on: date,
    reference: str,
    today: date,
) -> PaymentOutcome:
    """Record a payment of an invoice. A partial payment keeps it open; the one that
    covers it makes it paid (InvoicePaid) and reinstates what its arrears lapsed (the
    policies it lapsed; lapsing itself is the schedule's, not a payment's, work). The
    same reference again with the same amount and date changes nothing; with others,
    it is refused."""
    invoice = await store.lock_invoice(conn, invoice_id)
    if invoice is None:
        raise NotFound(f"no invoice {invoice_id}")
    earlier = await store.payment_by_reference(conn, invoice_id, reference)
    if earlier is not None:
        if (earlier["amount"], earlier["paid_on"]) != (amount, paid_on):
            raise Refused(
                "PAYMENT_REFERENCE_REUSED",
                f"payment {reference!r} was recorded as Rp {earlier['amount']:,} on "
                f"{earlier['paid_on']}; a different payment needs its own reference",
            )
        return PaymentOutcome(
            earlier["payment_id"],
            invoice["status"],
            invoice["total"],
            invoice["paid_amount"],
            False,
            [],
        )
    if invoice["status"] == "void":
        raise Refused("INVOICE_VOID", f"invoice {invoice_id} is void: {invoice['void_reason']}")
    outstanding = invoice["total"] - invoice["paid_amount"]
    if amount > outstanding:
        raise Refused(
            "OVERPAYMENT",
            f"Rp {amount:,} is more than the Rp {outstanding:,} outstanding on invoice "
            f"{invoice_id}",
        )
    payment_id = uuid.uuid5(PAYMENT_NAMESPACE, f"{invoice_id}:{reference}")
    row = await store.record_payment(conn, payment_id, invoice_id, amount, paid_on, reference)
    events: list[Event] = []
    if row["status"] == "paid":
        events.append(
            InvoicePaid(
                # A paid invoice re-opened by late lines is paid again: a new event.
                event_id=derive_event_id("invoice.paid", invoice_id, invoice["revision"]),
                correlation_id=f"invoice:{invoice_id}",
                invoice_id=invoice_id,
                agreement_code=invoice["agreement_code"],
                period=f"{invoice['period']:%Y-%m}",
                total=row["total"],
                paid_amount=row["paid_amount"],
                paid_on=paid_on,
                reference=reference,
            )
        )
        events += await policies.reinstate(conn, today, invoice_id)
    return PaymentOutcome(payment_id, row["status"], row["total"], row["paid_amount"], True, events)


async def void(
    conn: asyncpg.Connection, invoice_id: uuid.UUID, *, reason: str, today: date
) -> tuple[int, list[Event]]:
    """Void an unpaid invoice: each of its postings is reversed in the ledger (the
    months stay billed once: a voided month is not billed again) and its amount returns
    to the agreement's budget. Returns the Rupiah reversed and the events."""
    agreement_code = await store.invoice_agreement(conn, invoice_id)
    if agreement_code is None:
        raise NotFound(f"no invoice {invoice_id}")
    await store.lock_budgets(conn, [agreement_code])  # first, as billing runs do
    invoice = await store.lock_invoice(conn, invoice_id)
    assert invoice is not None
    if invoice["status"] == "void":
        if invoice["void_reason"] == reason:
            return 0, []
        raise Refused(
            "INVOICE_VOID", f"invoice {invoice_id} is already void: {invoice['void_reason']}"
        )
    if invoice["paid_amount"] > 0:
        raise Refused(
            "INVOICE_HAS_PAYMENTS",
            f"invoice {invoice_id} has Rp {invoice['paid_amount']:,} paid; a paid invoice "
            "cannot be voided",
        )
    await store.void_invoice(conn, invoice_id, reason)
    reversed_amounts = await store.reverse_entries(
        conn,
        "invoice",
        [invoice_id],
        reason=f"invoice voided: {reason}",
        correlation_id=f"invoice:{invoice_id}",
        occurred_at=wire_time(utc_now()),
    )
    await store.commit_amounts(conn, {code: -amount for code, amount in reversed_amounts.items()})
    events: list[Event] = [
        InvoiceVoided(
            event_id=derive_event_id("invoice.voided", invoice_id),
            correlation_id=f"invoice:{invoice_id}",
            invoice_id=invoice_id,
            agreement_code=invoice["agreement_code"],
            period=f"{invoice['period']:%Y-%m}",
            total=invoice["total"],
            reason=reason,
        )
    ]
    events += await policies.reinstate(conn, today, invoice_id)
    return sum(reversed_amounts.values()), events
