"""Registration's commands for the city's data office. They work on the database alone:
the events they cause go to the outbox, which the running registration service
publishes.

    python -m services.registration import FILE [--batch-size N]

``import`` enrols every row of a CSV file (columns in the README) with the API's rules;
progress goes to stderr, the import's summary (JSON) to stdout. Running it again on the
same file (after a crash, or by mistake) carries on where it stopped and enrols nobody
twice. Exit codes: 0 done, 2 the file cannot be read (the line is named) or bad usage
or no database, 3 the same file is being imported by another process right now.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import uvloop
from fastapi.encoders import jsonable_encoder

from services.registration import csv_intake, imports, store
from services.registration.domain import AgeRule
from services.registration.settings import RegistrationSettings
from shared import db
from shared.cli_args import positive_int
from shared.errors import StartupError
from shared.logs import configure_logging
from shared.service import ServiceSpec, open_database

COMMANDS = ("import",)
EXIT_USAGE, EXIT_BUSY = 2, 3
PROGRESS_EVERY_S = 1.0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="python -m services.registration",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = top.add_subparsers(dest="command", required=True)
    load = sub.add_parser("import", help="enrol every row of a CSV file (safe to repeat)")
    load.add_argument("file", type=Path, help="the CSV file")
    load.add_argument(
        "--batch-size",
        type=positive_int,
        default=imports.DEFAULT_BATCH,
        help="rows per transaction (progress is shown as they commit)",
    )
    return top


class ProgressBar:
    """One line on stderr, rewritten at most once a second (a new line when stderr is
    not a terminal, so logs keep every step)."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.shown = 0.0
        self.first: int | None = None

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if self.first is None:
            self.first = done
        if now - self.shown < PROGRESS_EVERY_S and done < total:
            return
        self.shown = now
        width = 30
        filled = width * done // total if total else width
        rate = (done - self.first) / max(now - self.started, 1e-6)
        line = (
            f"[{'#' * filled}{'.' * (width - filled)}] {done:,}/{total:,} rows "
            f"({100 * done / total if total else 100:.1f}%) {rate:,.0f} rows/s"
        )
        end = "\r" if sys.stderr.isatty() and done < total else "\n"
        print(line, end=end, file=sys.stderr, flush=True)


async def _import(spec: ServiceSpec, args: argparse.Namespace) -> int:
    settings = RegistrationSettings.load()
    configure_logging(spec.name, "WARNING" if settings.log_level == "INFO" else settings.log_level)
    timezone = ZoneInfo(settings.timezone)

    def today() -> date:
        return datetime.now(timezone).date()

    print(f"checking {args.file} ...", file=sys.stderr, flush=True)
    found = imports.scan(args.file)
    print(
        f"{found.rows_total:,} rows, sha256 {found.digest[:12]}..., import {found.import_id}",
        file=sys.stderr,
        flush=True,
    )
    async with open_database(spec, settings, max_size=3) as pool:
        await imports.register(pool, found, args.file.name)
        await imports.run(
            pool,
            found,
            today,
            AgeRule(settings.min_age, settings.max_age_exclusive),
            batch=args.batch_size,
            progress=ProgressBar(),
        )
        async with db.connection(pool) as conn:
            status = await store.import_status(conn, found.import_id)
    print(json.dumps(jsonable_encoder(status), indent=2))
    return 0


def main(spec: ServiceSpec, argv: Sequence[str]) -> None:
    args = parser().parse_args(argv)
    try:
        code = uvloop.run(_import(spec, args))
    except FileNotFoundError as error:
        print(f"perisai-registration: {error.filename}: no such file", file=sys.stderr)
        code = EXIT_USAGE
    except csv_intake.FileInvalid as error:
        print(f"perisai-registration: {args.file}: {error}; nothing was stored", file=sys.stderr)
        code = EXIT_USAGE
    except imports.ImportBusy as error:
        print(f"perisai-registration: {error}", file=sys.stderr)
        code = EXIT_BUSY
    except (StartupError, db.DatabaseUnavailable) as error:
        print(f"perisai-registration: {error}", file=sys.stderr)
        code = EXIT_USAGE
    except KeyboardInterrupt:
        print(
            "perisai-registration: interrupted; whole batches are kept, run it again to carry on",
            file=sys.stderr,
        )
        code = 130
    sys.exit(code)
