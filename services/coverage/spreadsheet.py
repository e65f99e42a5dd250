"""CSV as the city's finance office opens it in a spreadsheet: ';' separated (the
Indonesian locale's list separator, since ',' is its decimal mark), UTF-8 with a byte
order mark (so Excel reads the encoding), CRLF line ends, Rupiah as plain integers."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence

BOM = "\ufeff"
MEDIA_TYPE = "text/csv; charset=utf-8"

INVOICE_COLUMNS = (
    "row_type",
    "invoice_id",
    "agreement_code",
    "payer",
    "period",
    "status",
    "kecamatan_code",
    "occupation",
    "headcount",
    "amount_rupiah",
)
"""One ``detail`` row per kecamatan and occupation, then one ``total`` row."""

INVOICE_LINE_COLUMNS = (
    "entry_id",
    "policy_id",
    "participant_number",
    "period",
    "kecamatan_code",
    "occupation",
    "tariff_code",
    "jkk_rupiah",
    "jkm_rupiah",
    "amount_rupiah",
)
"""One row per ledger entry on the invoice."""

COVERAGE_COLUMNS = ("kecamatan_code", "occupation", "active_policies", "monthly_premium_rupiah")


def render(columns: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    out = io.StringIO()
    out.write(BOM)
    writer = csv.writer(out, delimiter=";", lineterminator="\r\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow(["" if value is None else value for value in row])
    return out.getvalue()


def invoice(invoice: Mapping[str, object]) -> str:
    head = [
        invoice["invoice_id"],
        invoice["agreement_code"],
        invoice["payer"],
        invoice["period"],
        invoice["status"],
    ]
    details = invoice["by_kecamatan_and_occupation"]
    assert isinstance(details, list)
    rows = [
        ["detail", *head, d["kecamatan_code"], d["occupation"], d["headcount"], d["amount"]]
        for d in details
    ]
    rows.append(["total", *head, "", "", invoice["headcount"], invoice["total"]])
    return render(INVOICE_COLUMNS, rows)


def invoice_lines(lines: Iterable[Mapping[str, object]]) -> str:
    return render(
        INVOICE_LINE_COLUMNS,
        (
            [
                line["entry_id"],
                line["policy_id"],
                line["participant_number"],
                line["period"],
                line["kecamatan_code"],
                line["occupation"],
                line["tariff_code"],
                line["jkk_amount"],
                line["jkm_amount"],
                line["amount"],
            ]
            for line in lines
        ),
    )


def coverage(groups: Iterable[Mapping[str, object]]) -> str:
    return render(COVERAGE_COLUMNS, ([g[c] for c in COVERAGE_COLUMNS] for g in groups))
