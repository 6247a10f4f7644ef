"""What an uploaded file is and how its text is encoded, decided in one pass over its bytes before any row is read."""

from __future__ import annotations

import codecs
import re
import zipfile
from dataclasses import dataclass
from typing import BinaryIO

from tasks import texts
from webapi.contacts.errors import ContactsError

# Big enough to amortise Python overhead, small enough to keep a 50 MB upload out of memory.
CHUNK_SIZE = 64 * 1024
# How much of the start of the file is enough to tell text from binary data, and UTF-16 without BOM.
_SNIFF_BYTES = 4096

_GZIP_MAGIC = b"\x1f\x8b"
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")
_XLS_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"

# Control characters other than tab and line ends: never part of a contact, and PostgreSQL text refuses NUL.
_CONTROL_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_CONTROL_BYTES = re.compile(b"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# Deleting every other byte leaves only the control bytes: a C loop, several times faster than the regex.
_NOT_CONTROL_BYTES = bytes(b for b in range(256) if _CONTROL_BYTES.match(bytes([b])) is None)

# How the operator reads each encoding's name in a message.
_SHOWN_NAMES = {
    "utf-8": "UTF-8",
    "utf-8-sig": "UTF-8",
    "utf-16": "UTF-16",
    "utf-16-le": "UTF-16",
    "utf-16-be": "UTF-16",
    "cp1252": "UTF-8 ni en Windows-1252",
}


@dataclass(frozen=True)
class Survey:
    """What one pass over the bytes found: the encoding, and what the row reader must still check for."""

    encoding: str
    # Without any quote character no cell can run over a line end.
    has_quotes: bool
    # Longest line in bytes (at least its length in characters); None when not measured.
    longest_line: int | None


class _Undecodable(Exception):
    """Internal signal that the bytes are not valid in the encoding tried, with the row where that happened."""

    def __init__(self, row: int, saw_non_ascii: bool) -> None:
        """Keep the row and whether valid non-ASCII text came before it (then the guess was right, the data broken)."""
        super().__init__(row)
        self.row = row
        self.saw_non_ascii = saw_non_ascii


def survey_upload(source: BinaryIO, start: int) -> Survey:
    """Read the whole file once in chunks: refuse what is not CSV text, and tell UTF-8, UTF-16 and Windows-1252 apart.

    The same pass refuses control characters and bytes no encoding explains, naming the row, so that reading
    the rows later cannot meet either.
    """
    first = source.read(CHUNK_SIZE)
    if not isinstance(first, (bytes, bytearray)):
        raise TypeError("open_csv expects a binary stream")
    encoding = _text_encoding(first)
    if encoding.startswith("utf-16"):
        try:
            _scan_utf16(source, first, encoding)
        except _Undecodable as bad:
            raise _undecodable_error(bad.row, encoding) from None
        return Survey(encoding, has_quotes=True, longest_line=None)
    _refuse_non_text(first, source, start)
    try:
        return _scan_ascii_compatible(source, start, first, encoding)
    except _Undecodable as bad:
        # A UTF-8 guess that failed before any accent decoded is a Windows "ANSI" export; one that failed after
        # accents did decode is a damaged UTF-8 file, and reading it as Windows-1252 would garble every name.
        if encoding != "utf-8" or bad.saw_non_ascii:
            raise _undecodable_error(bad.row, encoding) from None
    source.seek(start)
    try:
        # Spreadsheets saved as plain "CSV" on Windows use the ANSI code page, a superset of Latin-1's letters.
        return _scan_ascii_compatible(source, start, source.read(CHUNK_SIZE), "cp1252")
    except _Undecodable as bad:
        raise _undecodable_error(bad.row, "cp1252") from None


def _undecodable_error(row: int, encoding: str) -> ContactsError:
    """The operator's error for bytes that are not text in the encoding the file was read in."""
    return ContactsError(
        texts.UNDECODABLE_BYTES.format(row=row, encoding=_SHOWN_NAMES[encoding]), {"row": row, "encoding": encoding}
    )


def _control_error(row: int, char: str) -> ContactsError:
    """The operator's error for a control character, named by its code point."""
    code = f"U+{ord(char):04X}"
    return ContactsError(texts.CONTROL_CHARACTER.format(row=row, code=code), {"row": row, "code": code})


def _text_encoding(first: bytes) -> str:
    """The encoding the file's first bytes point to: a BOM, UTF-16's pattern of zero bytes, else UTF-8."""
    if first.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        # Excel's "Unicode text" export; there is no other reasonable reading of this BOM.
        return "utf-16"
    if first.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    sample = first[: _SNIFF_BYTES & ~1]
    units = len(sample) // 2
    if units >= 2:
        # Headers and phones are ASCII, so UTF-16 without BOM shows a zero byte in every other position.
        even_zeros, odd_zeros = sample[0::2].count(0), sample[1::2].count(0)
        if odd_zeros >= 0.7 * units and even_zeros <= 0.1 * units:
            return "utf-16-le"
        if even_zeros >= 0.7 * units and odd_zeros <= 0.1 * units:
            return "utf-16-be"
    return "utf-8"


def _refuse_non_text(first: bytes, source: BinaryIO, start: int) -> None:
    """Refuse workbooks, compressed archives and other binary data with what to upload instead."""
    if first.startswith(_XLS_MAGIC):
        raise ContactsError(texts.EXCEL_WORKBOOK.format(), {"detected": "excel"})
    if first.startswith(_ZIP_MAGICS):
        # An .xlsx is a zip archive too; only its entries tell a workbook from a zipped CSV.
        if _zip_holds_workbook(source, start):
            raise ContactsError(texts.EXCEL_WORKBOOK.format(), {"detected": "excel"})
        raise ContactsError(texts.COMPRESSED_FILE.format(), {"detected": "zip"})
    if first.startswith(_GZIP_MAGIC):
        raise ContactsError(texts.COMPRESSED_FILE.format(), {"detected": "gzip"})
    sample = first[:_SNIFF_BYTES]
    controls = len(sample.translate(None, _NOT_CONTROL_BYTES))
    # Random and compressed bytes are about 12% control bytes; a CSV with one stray NUL is far below 5%.
    if controls and controls * 20 >= len(sample):
        raise ContactsError(texts.BINARY_FILE.format(), {"detected": "binary"})


def _zip_holds_workbook(source: BinaryIO, start: int) -> bool:
    """Tell an Excel workbook from another zip archive; one too damaged to list is taken for a workbook."""
    source.seek(start)
    try:
        with zipfile.ZipFile(source) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return True
    finally:
        source.seek(start)
    return any(name.startswith("xl/") or name == "[Content_Types].xml" for name in names)


def _line_ends(text: str, after_cr: bool) -> int:
    """Count the line ends in `text` (\\n, \\r\\n or a lone \\r), given whether the text before ended with \\r."""
    count = text.count("\n") + text.count("\r") - text.count("\r\n")
    return count - 1 if after_cr and text.startswith("\n") else count


def _row_at(source: BinaryIO, start: int, offset: int) -> int:
    """The row (line) holding byte `offset` of an ASCII-compatible file; only called on the way to an error."""
    source.seek(start)
    rows, after_cr = 1, False
    while offset > 0:
        # Latin-1 maps bytes to characters one to one, so line ends are counted exactly whatever the encoding.
        text = source.read(min(CHUNK_SIZE, offset)).decode("latin-1")
        if not text:
            break
        offset -= len(text)
        rows += _line_ends(text, after_cr)
        after_cr = text.endswith("\r")
    return rows


def _scan_ascii_compatible(source: BinaryIO, start: int, first: bytes, encoding: str) -> Survey:
    """Decode every chunk strictly, refuse control bytes, and note quotes and the longest line for the reader."""
    decoder = codecs.getincrementaldecoder(encoding)("strict")
    offset = 0  # of `chunk` in the file
    has_quotes = False
    longest = tail = 0  # tail: the part of the current line read so far
    saw_non_ascii = False
    chunk = first
    while True:
        final = not chunk
        pending = decoder.getstate()[0]
        try:
            decoder.decode(chunk, final)
        except UnicodeDecodeError as exc:
            before = (pending + chunk)[: exc.start]
            raise _Undecodable(
                _row_at(source, start, offset - len(pending) + exc.start), saw_non_ascii or not before.isascii()
            ) from None
        if chunk.translate(None, _NOT_CONTROL_BYTES):
            control = _CONTROL_BYTES.search(chunk)
            assert control is not None  # translate() just found one
            raise _control_error(_row_at(source, start, offset + control.start()), control.group().decode("ascii"))
        saw_non_ascii = saw_non_ascii or not chunk.isascii()
        has_quotes = has_quotes or b'"' in chunk
        lines = chunk.split(b"\n")
        if len(lines) == 1:
            tail += len(chunk)
        else:
            longest = max(longest, tail + len(lines[0]), max(map(len, lines[1:-1]), default=0))
            tail = len(lines[-1])
        if final:
            return Survey(encoding, has_quotes, max(longest, tail))
        offset += len(chunk)
        chunk = source.read(CHUNK_SIZE)


def _scan_utf16(source: BinaryIO, first: bytes, encoding: str) -> None:
    """Decode a UTF-16 file strictly (lone surrogates, an odd last byte) and refuse control characters."""
    prefix_codec = encoding
    if encoding == "utf-16":
        prefix_codec = "utf-16-le" if first.startswith(codecs.BOM_UTF16_LE) else "utf-16-be"
    decoder = codecs.getincrementaldecoder(encoding)("strict")
    lines_before, after_cr = 0, False
    chunk = first
    while True:
        final = not chunk
        pending = decoder.getstate()[0]
        try:
            text = decoder.decode(chunk, final)
        except UnicodeDecodeError as exc:
            prefix = (pending + chunk)[: exc.start].decode(prefix_codec, "replace")
            raise _Undecodable(lines_before + _line_ends(prefix, after_cr) + 1, True) from None
        control = _CONTROL_CHARS.search(text)
        if control is not None:
            raise _control_error(lines_before + _line_ends(text[: control.start()], after_cr) + 1, control.group())
        if text:
            lines_before += _line_ends(text, after_cr)
            after_cr = text.endswith("\r")
        if final:
            return
        chunk = source.read(CHUNK_SIZE)
