"""The results export: a campaign's recipients as a CSV that spreadsheets open as they are.

UTF-8 with a byte-order mark (Excel reads accents right only with it), the separator the caller asks for
(`;` for a spreadsheet set to a Spanish locale), and no cell that a spreadsheet would run as a formula.
Rows are read from the store a keyset page at a time and written as they come, so memory stays flat
whatever the campaign's size.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Iterable, Iterator

from tasks import texts
from tasks.errors import describe
from tasks.vocabulary import RecipientStatus
from webapi.contacts import mask_value

log = logging.getLogger("webapi.exports")

BOM = "\ufeff"
# A cell starting with one of these is read as a formula by Excel, LibreOffice and Google Sheets.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# Statuses whose rows explain why, even when WhatsApp gave no code (a network error, an interrupted send).
_EXPLAINED = {RecipientStatus.FAILED, RecipientStatus.UNKNOWN}


def neutralise(value: object) -> str:
    """The cell as text, with a leading apostrophe when a spreadsheet would take it for a formula."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def row_cells(row: dict, full_phones: bool) -> list[str]:
    """One recipient as the export's cells, in EXPORT_HEADER's order."""
    code, detail = row.get("error_code"), row.get("error_detail")
    explained = code is not None or row["status"] in _EXPLAINED
    cells = (
        row["seq"],
        row["phone"] if full_phones else mask_value(row["phone"]),
        row["status"],
        row.get("wamid"),
        code,
        describe(code, detail) if explained else None,
        detail,
        row.get("attempts"),
        row.get("delivery_status"),
        row.get("sent_at"),
        row.get("delivered_at"),
        row.get("read_at"),
    )
    return [neutralise(c) for c in cells]


def csv_stream(rows: Iterable[dict], separator: str, full_phones: bool, rows_per_chunk: int = 1000) -> Iterator[bytes]:
    """The BOM and header, then the rows, encoded a few hundred kilobytes at a time."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=separator, lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)
    buffer.write(BOM)
    writer.writerow([neutralise(h) for h in texts.EXPORT_HEADER])
    pending = 0
    for row in rows:
        writer.writerow(row_cells(row, full_phones))
        pending += 1
        if pending == rows_per_chunk:
            yield buffer.getvalue().encode("utf-8")
            buffer.seek(0)
            buffer.truncate()
            pending = 0
    tail = buffer.getvalue()
    if tail:
        yield tail.encode("utf-8")


def filename(campaign_id: str) -> str:
    """The download's file name (campaign ids are already [a-z0-9_-])."""
    return f"resultados-{campaign_id}.csv"
