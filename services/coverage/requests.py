"""The bodies of coverage's commands, by API and command line alike: one validation,
with each field named when it is wrong."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

PERIOD_PATTERN = r"^[12][0-9]{3}-(0[1-9]|1[0-2])$"
Period = Annotated[str, StringConstraints(pattern=PERIOD_PATTERN)]
Reason = Annotated[
    str, StringConstraints(min_length=1, max_length=500, pattern=r"^[^\x00-\x1f\x7f]+$")
]


class BillingRunRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    period: Period = Field(description="The month to bill, YYYY-MM.", examples=["2026-11"])


class PaymentRequest(BaseModel):
    """A payment of an invoice, as the payer reported it."""

    model_config = ConfigDict(extra="forbid")

    amount: int = Field(gt=0, strict=True, description="Rupiah paid (whole).")
    paid_on: date = Field(description="The day the payer paid.")
    reference: Annotated[
        str, StringConstraints(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f\x7f]+$")
    ] = Field(description="The payer's payment reference; one reference is recorded once.")


class VoidRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Reason = Field(description="Why the invoice is cancelled.")


class EndAgreementRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    valid_to: date = Field(description="First day no longer in force (exclusive).")


class EndPolicyRequest(BaseModel):
    """End a worker's policy (until registration publishes deregistrations)."""

    model_config = ConfigDict(extra="forbid")

    on: date = Field(description="The last day of cover (death, moving away...).")
    reason: Reason = Field(examples=["deceased"])
