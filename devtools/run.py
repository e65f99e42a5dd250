"""The main job: bring up Kafka and PostgreSQL, start the three services and the two
stand-ins as separate processes, feed a synthetic cohort through registration, wait
until every confirmation is delivered, print the summary, then keep running until
Ctrl-C (or exit at once with --exit).

Each run gets a fresh demo database and its own topic prefix, so figures are those of
this run alone; the previous run's demo database and topics are removed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from aiokafka.admin import AIOKafkaAdminClient

import infra
from devtools.cohort import DEFAULT_SEED, generate_cohort
from devtools.feeder import DEFAULT_RETRY_FOR_S, ProgressLine, RetryNotice, mismatches
from devtools.pipeline import PipelineTimeout, RunReport, run_cohort
from devtools.stack import LocalStack, StackConfig, StackError

DEMO_DATABASE = "perisai_demo"
DEMO_TOPIC_PREFIX = "demo-"
BILLING_TIMEZONE = "Asia/Jakarta"  # coverage bills WIB calendar months
REPO = Path(__file__).resolve().parent.parent


def rupiah(amount: int) -> str:
    return f"Rp {amount:,}"


async def _drop_old_demo_topics(bootstrap: str, keep_prefix: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        old = [
            t
            for t in await admin.list_topics()
            if t.startswith(DEMO_TOPIC_PREFIX) and not t.startswith(keep_prefix)
        ]
        if old:
            await admin.delete_topics(old)
    finally:
        await admin.close()


def print_summary(report: RunReport, entries_total: int) -> None:
    s = report.summary
    reg, cov, notif = s["registration"], s["coverage"], s["notifications"]["deliveries"]
    sms, email = notif.get("sms", {}), notif.get("email", {})
    active = cov["policies"].get("active", 0)
    reasons = ", ".join(f"{code} {n}" for code, n in reg["rejected_by_reason"].items())
    rate = 16_800
    lines = [
        "",
        f"Perisai: {entries_total:,} enrolment requests in {report.total_seconds:.1f} s "
        f"(fed in {report.feed_seconds:.1f} s)",
        f"  enrolled               {reg['enrolled']:>10,}",
        f"  rejected               {reg['rejected']:>10,}   {reasons}",
        f"  active policies        {active:>10,}",
        f"  premium due {cov['period']}    {rupiah(cov['premium_due']):>14}   "
        f"({cov['premium_postings']:,} postings; {active:,} x {rupiah(rate)} = "
        f"{rupiah(active * rate)})",
        f"  SMS delivered          {sms.get('sent', 0):>10,}   "
        f"(gateway recorded {s['sms_gateway']['accepted']:,}, sent twice "
        f"{s['sms_gateway']['duplicates']}; failed {sms.get('failed', 0)})",
        f"  emails delivered       {email.get('sent', 0):>10,}   "
        f"(mail server recorded {s['smtp_server']['accepted']:,}, sent twice "
        f"{s['smtp_server']['duplicates']}; failed {email.get('failed', 0)})",
        "",
    ]
    print("\n".join(lines), flush=True)


async def bill_this_month(stack: LocalStack) -> dict[str, Any]:
    """Run this month's billing (WIB) through coverage's API, as operations would."""
    period = f"{datetime.now(ZoneInfo(BILLING_TIMEZONE)):%Y-%m}"
    async with httpx.AsyncClient(
        base_url=stack.config.coverage_url, timeout=300, auth=stack.auth
    ) as client:
        response = await client.post("/v1/billing-runs", json={"period": period})
        response.raise_for_status()
        summary: dict[str, Any] = response.json()
        check = await client.get("/v1/ledger/check")
        check.raise_for_status()
    return {**summary, "ledger": check.json()}


def print_billing(summary: dict[str, Any]) -> None:
    rate = 16_800
    billed = summary["policies_billed"]
    lines = [
        f"Billing run {summary['period']} (POST /v1/billing-runs)",
        f"  policies billed        {billed:>10,}   ({summary['postings_created']:,} posted "
        f"now, {summary['postings_existing']:,} already posted)",
        f"  invoice total          {rupiah(summary['invoice_total']):>14}   "
        f"({billed:,} x {rupiah(rate)} = {rupiah(billed * rate)})",
    ]
    ledger = summary["ledger"]
    verdict = "ok" if ledger["ok"] else "VIOLATED: " + ", ".join(ledger["violations"])
    lines.append(
        f"  ledger check           {verdict}   ({len(ledger['checked']['invariants'])} "
        f"invariants over {ledger['checked']['entries']:,} entries)"
    )
    for agreement in summary["agreements"]:
        if agreement["refused"]:
            lines.append(f"  REFUSED {agreement['agreement_code']}: {agreement['refused']}")
    print("\n".join(lines) + "\n", flush=True)


async def _wait_for_stop() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()


async def run(args: argparse.Namespace) -> int:
    print("Starting Kafka and PostgreSQL (python -m infra up)...", flush=True)
    await asyncio.to_thread(infra.up)
    bootstrap = infra.kafka_bootstrap()
    run_id = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    prefix = f"{DEMO_TOPIC_PREFIX}{run_id}."
    database_url = await infra.create_database_async(DEMO_DATABASE)
    await _drop_old_demo_topics(bootstrap, prefix)
    log_dir = REPO / ".infra" / "run" / run_id
    config = StackConfig(
        database_url=database_url, kafka_bootstrap=bootstrap, log_dir=log_dir, topic_prefix=prefix
    )
    stack = LocalStack(config)
    print(f"Starting the services and stand-ins (logs in {log_dir})...", flush=True)
    try:
        await stack.start()
        print(
            f"  registration  {config.registration_url}/docs\n"
            f"  coverage      {config.coverage_url}/v1/summary\n"
            f"  notifications {config.notifications_url}/v1/summary\n"
            f"  SMS gateway   {config.sms_url}/v1/messages\n"
            f"  SMTP server   127.0.0.1:{config.smtp_port} "
            f"(read: {config.smtp_http_url}/v1/messages)\n"
            "API keys of this run (every scope; header 'Authorization: Bearer <key>'):\n"
            + "".join(f"  {name:<13} {key}\n" for name, key in stack.keys.items()),
            flush=True,
        )
        entries = generate_cohort(args.size, invalid=args.invalid, seed=args.seed)
        print(
            f"Feeding {len(entries):,} enrolment requests ({args.size:,} valid, "
            f"{args.invalid} deliberately invalid) through registration's HTTP API...",
            flush=True,
        )
        feeding = ProgressLine(len(entries), "enrolments")
        delivering = ProgressLine(0, "confirmations delivered")

        def on_delivery(done: int, total: int) -> None:
            feeding.finish()
            delivering(done, total)

        report = await run_cohort(
            stack,
            entries,
            timeout_s=args.timeout,
            on_feed_progress=feeding,
            on_delivery_progress=on_delivery,
            on_retry=RetryNotice(args.retry_for),
            retry_for_s=args.retry_for,
        )
        delivering.finish()
        print_summary(report, len(entries))
        billed = await bill_this_month(stack)
        print_billing(billed)
        if not billed["ledger"]["ok"]:
            return 1
        wrong = mismatches(entries, report.results)
        if wrong:
            print(f"{len(wrong)} outcomes differ from the cohort's expectations, e.g. {wrong[:3]}")
            return 1
        deliveries = report.summary["notifications"]["deliveries"]
        failed = sum(statuses.get("failed", 0) for statuses in deliveries.values())
        if failed:
            print(f"{failed} confirmations could not be delivered: see {log_dir}/notifications.log")
            return 1
        if args.exit:
            return 0
        print("Running. Press Ctrl-C to stop the services (Kafka and PostgreSQL keep running;")
        print("stop them with: .venv/bin/python -m infra down).", flush=True)
        await _wait_for_stop()
        return 0
    finally:
        print("Stopping the services...", flush=True)
        await asyncio.to_thread(stack.stop)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.run", description=__doc__)
    parser.add_argument("--size", type=int, default=9038, help="valid workers (default 9,038)")
    parser.add_argument(
        "--invalid", type=int, default=25, help="deliberately invalid requests (default 25)"
    )
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds to wait in all")
    parser.add_argument("--exit", action="store_true", help="exit after the summary")
    parser.add_argument(
        "--retry-for",
        type=float,
        default=DEFAULT_RETRY_FOR_S,
        metavar="SECONDS",
        help="how long the feeder retries while registration is unavailable "
        f"(default {DEFAULT_RETRY_FOR_S:.0f})",
    )
    args = parser.parse_args(argv)
    try:
        return asyncio.run(run(args))
    except (infra.InfraError, StackError, PipelineTimeout) as error:
        print(f"perisai run: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
