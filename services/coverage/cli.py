"""Coverage's commands for operations. Each works on the database alone: the events it
causes go to the outbox, which the running coverage service publishes.

    python -m services.coverage bill --period 2026-11
    python -m services.coverage ledger check
    python -m services.coverage agreements add --code ... | end CODE --to DATE | list | show CODE
    python -m services.coverage invoices list [--period] | show ID [--csv] | lines ID
    python -m services.coverage invoices pay ID --amount N --paid-on DATE --reference REF
    python -m services.coverage invoices void ID --reason TEXT
    python -m services.coverage policies end --worker-id ID --on DATE --reason TEXT
    python -m services.coverage sweep

Results are JSON on stdout; progress and errors go to stderr. Exit codes: 0 done,
1 refused or the ledger check failed, 2 bad usage or no database, 3 a billing run for
the month is already in progress.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import date, datetime
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

import asyncpg
import uvloop
from fastapi.encoders import jsonable_encoder
from pydantic import ValidationError

from services.coverage import (
    agreements,
    billing,
    domain,
    invoices,
    ledger,
    policies,
    spreadsheet,
    store,
)
from services.coverage.errors import NotFound, Refused
from services.coverage.requests import EndPolicyRequest, PaymentRequest, VoidRequest
from services.coverage.settings import CoverageSettings
from shared import db
from shared.cli_args import positive_int
from shared.errors import StartupError
from shared.logs import configure_logging
from shared.outbox import enqueue_events
from shared.service import ServiceSpec, open_database

COMMANDS = ("bill", "ledger", "agreements", "invoices", "policies", "sweep")

EXIT_REFUSED, EXIT_USAGE, EXIT_BUSY = 1, 2, 3


class Done(Exception):
    def __init__(self, code: int) -> None:
        self.code = code


def period_arg(text: str) -> date:
    try:
        return domain.parse_period(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def date_arg(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date: expected YYYY-MM-DD") from None


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="python -m services.coverage",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = top.add_subparsers(dest="command", required=True)

    bill = sub.add_parser("bill", help="bill one month (safe to repeat)")
    bill.add_argument("--period", type=period_arg, required=True, help="YYYY-MM")
    bill.add_argument(
        "--chunk",
        type=positive_int,
        default=billing.DEFAULT_CHUNK,
        help="policies per statement (progress is shown after each)",
    )

    ledger_cmd = sub.add_parser("ledger", help="the ledger's invariants")
    ledger_cmd.add_argument("action", choices=["check"])

    agr = sub.add_parser("agreements", help="funding agreements")
    agr_sub = agr.add_subparsers(dest="action", required=True)
    add = agr_sub.add_parser("add", help="record an agreement")
    add.add_argument("--code", required=True)
    add.add_argument("--payer", required=True)
    add.add_argument("--payer-type", required=True, choices=["apbd", "apbn", "self"])
    add.add_argument("--funding-source", required=True)
    add.add_argument(
        "--from",
        dest="valid_from",
        required=True,
        type=date_arg,
        help="first day in force, YYYY-MM-DD",
    )
    add.add_argument(
        "--to",
        dest="valid_to",
        type=date_arg,
        help="first day no longer in force (exclusive); omit for open-ended",
    )
    add.add_argument(
        "--ceiling",
        dest="budget_ceiling",
        required=True,
        type=int,
        help="budget ceiling in whole Rupiah",
    )
    add.add_argument("--grace-months", type=int, default=domain.DEFAULT_GRACE_MONTHS)
    add.add_argument("--programmes", default="JKK,JKM", help="comma-separated: JKK,JKM")
    close = agr_sub.add_parser("end", help="close an agreement's window")
    close.add_argument("code")
    close.add_argument(
        "--to",
        dest="valid_to",
        required=True,
        type=date_arg,
        help="first day no longer in force, YYYY-MM-DD",
    )
    agr_sub.add_parser("list", help="every agreement")
    show = agr_sub.add_parser("show", help="an agreement and its budget")
    show.add_argument("code")

    inv = sub.add_parser("invoices", help="invoices and payments")
    inv_sub = inv.add_subparsers(dest="action", required=True)
    inv_list = inv_sub.add_parser("list")
    inv_list.add_argument("--period", type=period_arg)
    inv_show = inv_sub.add_parser("show")
    inv_show.add_argument("invoice_id", type=UUID)
    inv_show.add_argument("--csv", action="store_true", help="the finance office's CSV")
    inv_lines = inv_sub.add_parser("lines", help="every line with its ledger entry (CSV)")
    inv_lines.add_argument("invoice_id", type=UUID)
    pay = inv_sub.add_parser("pay", help="record a payment")
    pay.add_argument("invoice_id", type=UUID)
    pay.add_argument("--amount", type=int, required=True, help="whole Rupiah")
    pay.add_argument("--paid-on", type=date_arg, required=True)
    pay.add_argument("--reference", required=True)
    void = inv_sub.add_parser("void", help="cancel an unpaid invoice")
    void.add_argument("invoice_id", type=UUID)
    void.add_argument("--reason", required=True)

    pol = sub.add_parser("policies", help="policies")
    pol_sub = pol.add_subparsers(dest="action", required=True)
    end = pol_sub.add_parser("end", help="end a policy from a date, with a reason")
    who = end.add_mutually_exclusive_group(required=True)
    who.add_argument("--worker-id", type=UUID)
    who.add_argument("--policy-id", type=UUID)
    end.add_argument("--on", type=date_arg, required=True, help="last day of cover")
    end.add_argument("--reason", required=True)

    sub.add_parser("sweep", help="start pending policies, lapse and reinstate (as daily)")
    return top


def emit(value: Any) -> None:
    print(json.dumps(jsonable_encoder(value), indent=2, ensure_ascii=False))


def show_progress(progress: billing.Progress) -> None:
    share = progress.policies_done / progress.policies_total if progress.policies_total else 1
    print(
        f"billing {progress.agreement_code}: {progress.policies_done:,}/"
        f"{progress.policies_total:,} policies ({share:.0%}), "
        f"{progress.postings_created:,} posted now, {progress.elapsed_s:.1f} s",
        file=sys.stderr,
        flush=True,
    )


async def run(args: argparse.Namespace, pool: asyncpg.Pool, today: date) -> int:
    handlers: dict[str, Callable[[], Awaitable[int]]] = {}

    async def bill() -> int:
        billing.check_period(args.period, today)
        started = time.monotonic()
        try:
            summary = await billing.run(
                pool, args.period, trigger="command", chunk=args.chunk, progress=show_progress
            )
        except billing.BillingInProgress as error:
            print(f"perisai-coverage: {error}; try again when it ends", file=sys.stderr)
            return EXIT_BUSY
        print(f"billed {summary.period} in {time.monotonic() - started:.1f} s", file=sys.stderr)
        emit(summary.as_dict())
        return 0

    async def check() -> int:
        async with db.connection(pool) as conn:
            report = await ledger.check(conn)
        emit(report)
        return 0 if report["ok"] else EXIT_REFUSED

    async def agreements_cmd() -> int:
        async with db.transaction(pool) as conn:
            if args.action == "list":
                emit([agreements.describe(a) for a in await store.agreements(conn)])
            elif args.action == "show":
                emit(await agreements.report(conn, args.code, today))
            elif args.action == "end":
                await agreements.end(conn, args.code, args.valid_to)
                emit(await agreements.report(conn, args.code, today))
            else:
                draft = agreements.AgreementDraft(
                    code=args.code,
                    payer=args.payer,
                    payer_type=args.payer_type,
                    funding_source=args.funding_source,
                    valid_from=args.valid_from,
                    valid_to=args.valid_to,
                    budget_ceiling=args.budget_ceiling,
                    grace_months=args.grace_months,
                    programmes=tuple(p.strip() for p in args.programmes.split(",")),
                )
                agreement, added, events = await agreements.add(conn, draft, today)
                await enqueue_events(conn, events)
                report = await agreements.report(conn, agreement.code, today)
                emit({**report, "added": added, "events": len(events)})
        return 0

    async def invoices_cmd() -> int:
        async with db.transaction(pool) as conn:
            if args.action == "list":
                emit(await store.invoices(conn, args.period))
            elif args.action in ("show", "lines"):
                found = await store.invoice(conn, args.invoice_id)
                if found is None:
                    raise NotFound(f"no invoice {args.invoice_id}")
                if args.action == "lines":
                    lines = await store.invoice_lines(conn, args.invoice_id)
                    sys.stdout.write(spreadsheet.invoice_lines(lines))
                elif args.csv:
                    sys.stdout.write(spreadsheet.invoice(found))
                else:
                    emit({**found, "payments": await store.payments(conn, args.invoice_id)})
            elif args.action == "pay":
                payment = PaymentRequest(
                    amount=args.amount, paid_on=args.paid_on, reference=args.reference
                )
                outcome = await invoices.pay(
                    conn,
                    args.invoice_id,
                    amount=payment.amount,
                    paid_on=payment.paid_on,
                    reference=payment.reference,
                    today=today,
                )
                await enqueue_events(conn, outcome.events)
                emit(
                    {
                        "payment_id": outcome.payment_id,
                        "status": outcome.status,
                        "total": outcome.total,
                        "paid_amount": outcome.paid_amount,
                        "outstanding": outcome.outstanding,
                        "recorded_now": outcome.recorded_now,
                        "events": len(outcome.events),
                    }
                )
            else:
                void = VoidRequest(reason=args.reason)
                reversed_amount, events = await invoices.void(
                    conn, args.invoice_id, reason=void.reason, today=today
                )
                await enqueue_events(conn, events)
                emit({"invoice_id": args.invoice_id, "status": "void", "reversed": reversed_amount})
        return 0

    async def policies_cmd() -> int:
        async with db.transaction(pool) as conn:
            request = EndPolicyRequest(on=args.on, reason=args.reason)
            event, reversed_amount = await policies.end(
                conn,
                policy_id=args.policy_id,
                worker_id=args.worker_id,
                on=request.on,
                reason=request.reason,
            )
            await enqueue_events(conn, [event])
        emit({**event.model_dump(mode="json"), "reversed_amount": reversed_amount})
        return 0

    async def sweep() -> int:
        async with db.transaction(pool) as conn:
            events = await policies.daily_sweep(conn, today)
            await enqueue_events(conn, events)
        counts: dict[str, int] = {}
        for event in events:
            kind = event.model_dump()["event_type"]
            counts[kind] = counts.get(kind, 0) + 1
        emit({"today": today, "events": counts})
        return 0

    handlers.update(
        bill=bill,
        ledger=check,
        agreements=agreements_cmd,
        invoices=invoices_cmd,
        policies=policies_cmd,
        sweep=sweep,
    )
    return await handlers[args.command]()


async def _main(spec: ServiceSpec, args: argparse.Namespace) -> int:
    settings = CoverageSettings.load()
    configure_logging(spec.name, "WARNING" if settings.log_level == "INFO" else settings.log_level)
    today = datetime.now(ZoneInfo(settings.timezone)).date()
    async with open_database(spec, settings, max_size=2) as pool:
        return await run(args, pool, today)


def main(spec: ServiceSpec, argv: Sequence[str]) -> None:
    args = parser().parse_args(argv)
    try:
        code = uvloop.run(_main(spec, args))
    except (Refused, NotFound) as error:
        print(f"perisai-coverage: {error}", file=sys.stderr)
        code = EXIT_REFUSED
    except ValidationError as error:
        for problem in error.errors():
            where = ".".join(str(part) for part in problem["loc"]) or "agreement"
            print(f"perisai-coverage: {where}: {problem['msg']}", file=sys.stderr)
        code = EXIT_USAGE
    except (StartupError, db.DatabaseUnavailable) as error:
        print(f"perisai-coverage: {error}", file=sys.stderr)
        code = EXIT_USAGE
    except KeyboardInterrupt:
        print("perisai-coverage: interrupted; nothing half-done is kept", file=sys.stderr)
        code = 130
    sys.exit(code)
