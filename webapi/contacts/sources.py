"""The two ways contacts arrive: an uploaded CSV file and the JSON body's records, both read into a ContactStream."""

from __future__ import annotations

import csv
import io
import itertools
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from contextlib import ExitStack
from typing import Any, BinaryIO

from tasks import texts
from webapi.contacts.columns import check_column_count, header_names, resolve_columns
from webapi.contacts.encodings import CHUNK_SIZE, Survey, survey_upload
from webapi.contacts.errors import ContactsError
from webapi.contacts.phones import checked_region
from webapi.contacts.rows import RowDecider
from webapi.contacts.stream import ContactStream

# The default of the MAX_PARAM_LENGTH setting: WhatsApp caps a template body at 1,024 characters, so a
# longer parameter could never be sent, and a cell that long is most often rows swallowed by a stray quote.
DEFAULT_MAX_PARAM_LENGTH = 1024
# Non-seekable uploads are copied to a temporary file; small ones may stay in memory.
_SPOOL_MAX_MEMORY = 1024 * 1024
# A header line longer than this is not a header: the file is probably not a CSV at all.
_MAX_HEADER_CHARS = 64 * 1024

_DELIMITERS = ("\t", ";", ",")  # order is the tie-break preference
_BLANK_LINE = re.compile(r'[\s;,"]*')


def _check_options(default_region: str, max_contacts: int, max_param_length: int) -> str:
    """Validate the caller's options, reporting an unknown region as an upload error."""
    if max_contacts < 1:
        raise ValueError("max_contacts must be at least 1")
    if max_param_length < 1:
        raise ValueError("max_param_length must be at least 1")
    try:
        return checked_region(default_region)
    except ValueError as exc:
        raise ContactsError(str(exc), {"default_region": default_region}) from None


def _param_too_long(row: int, names: list[str], values: Iterable[Any], limit: int) -> ContactsError:
    """The operator's error for the first value of a row longer than `limit`."""
    for name, value in zip(names, values, strict=False):
        if isinstance(value, str) and len(value) > limit:
            return ContactsError(
                texts.PARAM_TOO_LONG.format(row=row, column=name, length=len(value), limit=limit),
                {"row": row, "column": name, "length": len(value), "max_param_length": limit},
            )
    raise AssertionError("no value is too long")  # pragma: no cover - callers checked first


# --------------------------------------------------------------------------- CSV


def _open_seekable(stream: BinaryIO, stack: ExitStack) -> tuple[BinaryIO, int]:
    """Return a seekable binary source and its start offset, spooling non-seekable streams to a temporary file."""
    if isinstance(stream, io.IOBase) and stream.seekable():
        return stream, stream.tell()
    spool = stack.enter_context(tempfile.SpooledTemporaryFile(max_size=_SPOOL_MAX_MEMORY))
    shutil.copyfileobj(stream, spool, CHUNK_SIZE)
    spool.seek(0)
    return spool, 0  # type: ignore[return-value]  # a SpooledTemporaryFile reads like a binary file


def _detect_delimiter(line: str) -> str:
    """Pick the most frequent of tab, ";" and "," outside quotes in the header line (comma if none)."""
    counts = dict.fromkeys(_DELIMITERS, 0)
    quoted = False
    for ch in line:
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch in counts:
            counts[ch] += 1
    best = max(_DELIMITERS, key=counts.__getitem__)
    return best if counts[best] else ","


def _read_header_line(text: io.TextIOWrapper) -> tuple[str, int]:
    """Return the first non-blank line and its row number, skipping blank lines before the header."""
    row = 0
    while True:
        line = text.readline(_MAX_HEADER_CHARS)
        if not line:
            raise ContactsError(texts.EMPTY_FILE.format(), {})
        if len(line) >= _MAX_HEADER_CHARS and not line.endswith(("\n", "\r")):
            # Thousands of columns make a header this long too; say so rather than doubt it is a CSV.
            check_column_count(max(line.count(d) for d in _DELIMITERS) + 1, at_least=True)
            raise ContactsError(texts.HEADER_TOO_LONG.format(), {})
        row += 1
        if not _BLANK_LINE.fullmatch(line):
            return line, row


def _csv_rows(reader, names: list[str], header_row: int, max_param_length: int) -> Iterator[tuple[int, list[str]]]:
    """Yield each record with its row number, refusing the file where one record is not exactly one line.

    csv.reader lets a quoted cell run over line ends, so one unclosed quote would swallow every row after
    it into a single contact. Templates cannot carry line breaks anyway, so a record must end on the line
    it starts: the reader's line count then always equals the row count, and the first disagreement, a
    cell over the length limit, or a line end inside the last cell is a broken file, named by its row.
    """
    row = header_row
    cells: list[str] = []
    lines_before = header_row - 1  # blank lines above the header were read before the reader started
    try:
        for cells in reader:
            row += 1
            if reader.line_num + lines_before != row:
                raise ContactsError(
                    texts.CSV_UNCLOSED_QUOTE.format(row=row),
                    {"row": row, "lines": reader.line_num + lines_before - row + 1},
                )
            if cells and max(map(len, cells)) > max_param_length:
                raise _param_too_long(row, names + [""] * len(cells), cells, max_param_length)
            yield row, cells
    except csv.Error as exc:
        raise ContactsError(texts.CSV_UNREADABLE.format(row=row + 1), {"row": row + 1, "error": str(exc)}) from None
    # Only the last record can hold a line end without running into the next line: its quote reached the end.
    if any("\n" in c or "\r" in c for c in cells):
        raise ContactsError(texts.CSV_UNCLOSED_QUOTE.format(row=row), {"row": row, "lines": 1})


def open_csv(
    stream: BinaryIO,
    *,
    default_region: str = "VE",
    phone_column: str | None = None,
    named_params: bool = False,
    max_contacts: int = 100_000,
    max_param_length: int = DEFAULT_MAX_PARAM_LENGTH,
) -> ContactStream:
    """Check an uploaded CSV's encoding and header now; return its recipients as a stream read in bounded memory.

    Problems with the file as a whole (what it is, encoding, control characters, header, phone column) raise
    ContactsError here; problems found while reading rows (a record spanning lines, an over-long cell) raise
    it from the iteration. Blank lines anywhere are skipped but still counted, so row numbers match what a
    spreadsheet shows; rows whose template parameters are empty are rejected because WhatsApp would refuse
    them. The stream is left open; its position afterwards is unspecified.
    """
    region = _check_options(default_region, max_contacts, max_param_length)
    stack = ExitStack()
    try:
        try:
            source, start = _open_seekable(stream, stack)
            survey = survey_upload(source, start)
            source.seek(start)
        except OSError as exc:
            raise ContactsError(texts.FILE_UNREADABLE.format(), {"error": str(exc)}) from None
        # The detection pass decoded every byte strictly, so "strict" here can only fail if the file changed.
        text = io.TextIOWrapper(source, encoding=survey.encoding, errors="strict", newline="")
        # Detaching keeps the caller's stream open when the wrapper is discarded.
        stack.callback(text.detach)
        return _open_text(text, survey, region, phone_column, named_params, max_contacts, max_param_length, stack)
    except BaseException:
        stack.close()
        raise


def _open_text(
    text: io.TextIOWrapper,
    survey: Survey,
    region: str,
    phone_column: str | None,
    named_params: bool,
    max_contacts: int,
    max_param_length: int,
    stack: ExitStack,
) -> ContactStream:
    """Read the header and delimiter of the decoded text and set up the row stream."""
    try:
        line, header_row = _read_header_line(text)
        delimiter = _detect_delimiter(line)
        reader = csv.reader(itertools.chain([line], text), delimiter=delimiter, skipinitialspace=True)
        cells = next(reader)
    except csv.Error as exc:
        raise ContactsError(
            texts.CSV_UNREADABLE.format(row=header_row), {"row": header_row, "error": str(exc)}
        ) from None
    except OSError as exc:
        raise ContactsError(texts.FILE_UNREADABLE.format(), {"error": str(exc)}) from None
    if reader.line_num != 1:
        raise ContactsError(texts.CSV_UNCLOSED_QUOTE.format(row=header_row), {"row": header_row})
    names = header_names(cells)
    columns = resolve_columns(names, phone_column, named_params, "csv")
    notes = [texts.NOTE_READ_AS_CP1252.format()] if survey.encoding == "cp1252" else []
    decider = RowDecider(columns, region, named_params)
    longest_allowed = min(max_param_length, csv.field_size_limit())
    if survey.has_quotes or survey.longest_line is None or survey.longest_line > longest_allowed:
        rows = _csv_rows(reader, names, header_row, max_param_length)
    else:
        # No quote means one record per line, and no line is longer than the limit: nothing left to check,
        # and most uploads (Excel quotes only cells holding the delimiter) skip the per-row cost.
        rows = enumerate(reader, start=header_row + 1)
    return ContactStream(columns, decider, rows, max_contacts, survey.encoding, delimiter, notes, stack)


# --------------------------------------------------------------------------- JSON


def open_records(
    records: list[dict],
    *,
    default_region: str = "VE",
    phone_column: str | None = None,
    named_params: bool = False,
    max_contacts: int = 100_000,
    max_param_length: int = DEFAULT_MAX_PARAM_LENGTH,
) -> ContactStream:
    """Check the JSON body's `contactos` list and return its recipients as a stream, with the CSV rules.

    Rows are numbered from 1. The first object's fields play the role of the header: later objects missing
    one of them, or carrying an unknown non-empty field, are rejected.
    """
    region = _check_options(default_region, max_contacts, max_param_length)
    if not isinstance(records, list):
        raise ContactsError(texts.RECORDS_NOT_A_LIST.format(), {})
    if not records:
        raise ContactsError(texts.RECORDS_EMPTY.format(), {})
    first = next((r for r in records if isinstance(r, Mapping) and r), None)
    if first is None:
        raise ContactsError(texts.RECORDS_NOT_OBJECTS.format(), {})
    names = [str(k).strip() for k in first]
    if not all(names):
        raise ContactsError(texts.RECORDS_UNNAMED_FIELD.format(), {"columns": names})
    if len(set(names)) != len(names):
        raise ContactsError(texts.RECORDS_REPEATED_FIELDS.format(), {"columns": names})
    columns = resolve_columns(names, phone_column, named_params, "json")
    decider = RowDecider(columns, region, named_params)
    return ContactStream(columns, decider, _json_rows(records, max_param_length), max_contacts, "json", "", [])


def _json_rows(records: list[Any], max_param_length: int) -> Iterator[tuple[int, Any]]:
    """Number the records from 1, refusing the list at the first value over the length limit."""
    for row, record in enumerate(records, start=1):
        if not isinstance(record, Mapping):
            # Anything but an object (a list, a bare string) is handed over as None so it is rejected, not unpacked.
            yield row, None
            continue
        if any(isinstance(v, str) and len(v) > max_param_length for v in record.values()):
            raise _param_too_long(row, [str(k).strip() for k in record], record.values(), max_param_length)
        yield row, record
