"""Parse and validate an uploaded contacts list (CSV file or JSON records) into campaign recipients."""

from __future__ import annotations

import codecs
import csv
import io
import itertools
import re
import shutil
import tempfile
import unicodedata
from collections.abc import Iterable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any, BinaryIO

import phonenumbers
from phonenumbers import NumberParseException, PhoneMetadata, PhoneNumberFormat, ValidationResult

__all__ = [
    "Contact",
    "ContactStream",
    "ContactsError",
    "InvalidPhone",
    "ParsedContacts",
    "RejectedRow",
    "mask_value",
    "normalize_phone",
    "open_csv",
    "open_records",
]

# Big enough to amortise Python overhead, small enough to keep a 50 MB upload out of memory.
_CHUNK_SIZE = 64 * 1024
# Non-seekable uploads are copied to a temporary file; small ones may stay in memory.
_SPOOL_MAX_MEMORY = 1024 * 1024
# A header line longer than this is not a header: the file is probably not a CSV at all.
_MAX_HEADER_CHARS = 64 * 1024
# Rejected rows are kept in memory for the report, so their number must be bounded too.
_MIN_REJECTED_CAP = 10_000
# How many rejected rows an error's details carry; the operator needs examples, not the whole list.
_DETAILS_SAMPLE = 20
# Longest masked value shown to the operator.
_MAX_SHOWN_CHARS = 40

_DELIMITERS = ("\t", ";", ",")  # order is the tie-break preference
_BLANK_LINE = re.compile(r'[\s;,"]*')

# Header words that identify the phone column (after folding case and accents).
_STRONG_PHONE_WORDS = frozenset(
    {"telefono", "phone", "celular", "movil", "whatsapp", "mobile", "telephone", "cel", "tel", "fono", "msisdn"}
)
# "numero" alone is a phone column, but loses against a column that names the phone explicitly.
_WEAK_PHONE_WORDS = frozenset({"numero", "number"})
# Words that may accompany a phone word without changing its meaning ("número de teléfono", "Nº celular").
_FILLER_WORDS = frozenset({"de", "del", "num", "nro", "nr", "no", "n"})

_XLSX_MAGIC = b"PK\x03\x04"
_XLS_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"

# What people put between digit groups: spaces (also the non-breaking ones spreadsheets use), dots, dashes,
# parentheses. Anything else in a phone cell is reported rather than guessed away.
_DROP_SEPARATORS = str.maketrans("", "", " \t\u00a0\u202f.()-\u2010\u2011\u2012\u2013\u2014\u2015")
# Excel writes long numbers as e.g. 5.84141234567E+11, with "," as decimal mark in Spanish locales.
_SCIENTIFIC = re.compile(r"([0-9]+)(?:[.,]([0-9]+))?[eE]\+?([0-9]{1,2})")


@dataclass(frozen=True, slots=True)
class Contact:
    """One accepted recipient: its source row, E.164 phone without "+", and template body parameters."""

    row: int
    phone: str
    params: list[str] | dict[str, str]


@dataclass(frozen=True, slots=True)
class RejectedRow:
    """One excluded row, with its masked phone value and the reason shown to the operator."""

    row: int
    value: str
    reason: str


@dataclass
class ParsedContacts:
    """Outcome of parsing a contacts list: accepted recipients, rejected rows and how the input was read."""

    contacts: list[Contact]
    rejected: list[RejectedRow]
    phone_column: str
    parameter_columns: list[str]
    encoding: str
    delimiter: str
    notes: list[str] = field(default_factory=list)


class ContactsError(ValueError):
    """The whole upload is unusable; `message` tells the operator what to fix, `details` is for the API response."""

    def __init__(self, message: str, details: dict | None = None) -> None:
        """Keep the operator message and machine-readable details together."""
        super().__init__(message)
        self.message = message
        self.details = details if details is not None else {}


class InvalidPhone(ValueError):
    """A single phone value cannot be used; `reason` is the Spanish explanation for the operator."""

    def __init__(self, reason: str) -> None:
        """Store the reason so callers need not parse the exception text."""
        super().__init__(reason)
        self.reason = reason


# --------------------------------------------------------------------------- phone numbers


class _RegionRules:
    """One region's numbering rules, precompiled so clean digit strings can skip the costly full parse."""

    def __init__(self, region: str) -> None:
        """Compile the metadata of `region` and decide whether the shortcut is safe for it."""
        meta = PhoneMetadata.metadata_for_region(region)
        self.region = region
        self.country_code = str(meta.country_code)
        self.enabled = False
        regions_sharing_code = phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(meta.country_code, ())
        general = meta.general_desc
        # The shortcut mirrors phonenumbers.parse only where parsing is simple: one region per country code
        # (so validity needs no region lookup), no prefix rewriting, and a general pattern with known lengths.
        if (
            len(regions_sharing_code) != 1
            or meta.national_prefix_transform_rule
            or general is None
            or not general.national_number_pattern
            or not general.possible_length
            or any(int(self.country_code[:i]) in phonenumbers.COUNTRY_CODE_TO_REGION_CODE
                   for i in range(1, len(self.country_code)))
        ):
            return
        prefix = meta.national_prefix_for_parsing or ""
        self.prefix_re = re.compile(prefix) if prefix else None
        self.literal_prefix = prefix if prefix.isdigit() else None
        self.idd_re = re.compile(meta.international_prefix) if meta.international_prefix else None
        self.general_re = re.compile(general.national_number_pattern)
        self.max_length = max(general.possible_length)
        self.local_lengths = frozenset(general.possible_length_local_only or ())
        type_descs = [
            meta.premium_rate, meta.toll_free, meta.shared_cost, meta.voip, meta.personal_number,
            meta.pager, meta.uan, meta.voicemail, meta.fixed_line, meta.mobile,
        ]
        # A number is valid when it matches the general description and at least one number type;
        # grouping the type patterns by length turns that into two regex calls.
        self.type_re_by_length: dict[int, re.Pattern[str]] = {}
        for length in general.possible_length:
            patterns = [
                desc.national_number_pattern
                for desc in type_descs
                if desc is not None and desc.national_number_pattern
                and (not desc.possible_length or length in desc.possible_length)
            ]
            if patterns:
                self.type_re_by_length[length] = re.compile("|".join(f"(?:{p})" for p in patterns))
        self.enabled = True

    def _strips_prefix(self, digits: str) -> bool:
        """Tell whether phonenumbers would see a national (trunk) prefix at the start of `digits`."""
        if self.prefix_re is None:
            return False
        match = self.prefix_re.match(digits)
        return match is not None and match.end() > 0

    def is_valid_nsn(self, nsn: str) -> bool:
        """Apply the same pattern checks as phonenumbers.is_valid_number to a national significant number."""
        type_re = self.type_re_by_length.get(len(nsn))
        return (
            type_re is not None
            and self.general_re.fullmatch(nsn) is not None
            and type_re.fullmatch(nsn) is not None
        )

    def fast_normalize(self, digits: str, international: bool) -> str | None:
        """Return the E.164 digits when the shortcut can decide with certainty that the number is valid, else None."""
        if not self.enabled:
            return None
        cc = self.country_code
        if international:
            if not digits.startswith(cc):
                return None
            nsn = digits[len(cc):]
        else:
            if self.idd_re is not None and self.idd_re.match(digits):
                return None
            if digits.startswith(cc):
                # phonenumbers drops a leading country code without "+" only if the whole string is not already
                # a plausible national number, or is too long to be one; anything else takes the slow path.
                too_long = len(digits) > self.max_length and len(digits) not in self.local_lengths
                if self.general_re.fullmatch(digits) is not None and not too_long:
                    return None
                nsn = digits[len(cc):]
            elif self._strips_prefix(digits):
                if self.literal_prefix is None or not digits.startswith(self.literal_prefix):
                    return None
                nsn = digits[len(self.literal_prefix):]
            else:
                nsn = digits
        # Leading zeros (Italian style) and a second trunk prefix are rare: let the library handle them.
        if not nsn or nsn[0] == "0" or self._strips_prefix(nsn) or not self.is_valid_nsn(nsn):
            return None
        return cc + nsn


@lru_cache(maxsize=None)
def _region_rules(region: str) -> _RegionRules:
    """Build (once per region) the precompiled numbering rules."""
    return _RegionRules(region)


def _checked_region(default_region: str) -> str:
    """Return the region code in upper case, or raise ValueError when phonenumbers does not know it."""
    region = (default_region or "").strip().upper()
    if region not in phonenumbers.SUPPORTED_REGIONS:
        raise ValueError(f"Región desconocida: {default_region!r}. Use un código de país de dos letras, como 'VE'.")
    return region


def _expand_scientific(text: str) -> str | None:
    """Turn an Excel scientific-notation number back into its digits, or return None if `text` is not one."""
    match = _SCIENTIFIC.fullmatch(text)
    if match is None:
        return None
    integer, fraction, exponent = match.group(1), match.group(2) or "", match.group(3)
    try:
        value = Decimal(f"{integer}.{fraction or '0'}E{exponent}")
    except InvalidOperation:  # pragma: no cover - the regex only lets valid decimals through
        return None
    lost = InvalidPhone(
        "Excel convirtió el número a notación científica y se perdieron dígitos; "
        "dé formato de texto a la columna y vuelva a exportar el archivo"
    )
    if value != value.to_integral_value():
        raise lost
    digits = str(int(value))
    # Excel pads the missing digits with zeros, so the number is exact only if every digit was written out.
    if len((integer + fraction).lstrip("0")) < len(digits):
        raise lost
    return digits


def _phone_digits(raw: str) -> tuple[str, bool]:
    """Reduce a phone cell to its digits and whether it was written in international form."""
    text = raw.strip()
    if text.isascii() and text.isdigit():
        digits, international = text, False
    else:
        # A leading apostrophe is how spreadsheet users force a cell to stay text.
        text = text.removeprefix("'").strip()
        digits = text.translate(_DROP_SEPARATORS)
        international = digits.startswith("+")
        if international:
            digits = digits[1:]
        if not (digits.isascii() and digits.isdigit()):
            digits, international = _digits_from_odd_cell(text), False
    # "00" is the international dialling prefix across Latin America and Europe.
    if not international and digits.startswith("00"):
        digits, international = digits[2:], True
    return digits, international


def _digits_from_odd_cell(text: str) -> str:
    """Recover a number Excel wrote in scientific notation, or raise InvalidPhone saying what is wrong."""
    if not text:
        raise InvalidPhone("celda de teléfono vacía")
    expanded = _expand_scientific(text)
    if expanded is not None:
        return expanded
    if any(ch.isalpha() for ch in text):
        raise InvalidPhone("el teléfono contiene letras")
    if not any(ch.isdigit() for ch in text):
        raise InvalidPhone("el teléfono no contiene dígitos")
    raise InvalidPhone("el teléfono contiene caracteres no permitidos")


def _parse_phone(digits: str, international: bool, region: str) -> str:
    """Validate with the full phonenumbers parser and return E.164 digits, or raise InvalidPhone."""
    try:
        number = phonenumbers.parse(("+" if international else "") + digits, region)
    except NumberParseException as exc:
        if exc.error_type == NumberParseException.INVALID_COUNTRY_CODE:
            raise InvalidPhone("el código de país no existe") from None
        if exc.error_type == NumberParseException.TOO_LONG:
            raise InvalidPhone("número demasiado largo") from None
        if exc.error_type in (NumberParseException.TOO_SHORT_NSN, NumberParseException.TOO_SHORT_AFTER_IDD):
            raise InvalidPhone("número demasiado corto") from None
        raise InvalidPhone("no parece un número de teléfono") from None
    if not phonenumbers.is_valid_number(number):
        if international:
            number_region = phonenumbers.region_code_for_country_code(number.country_code)
            place = f"el código de país +{number.country_code} ({number_region})"
        else:
            place = f"la región {region}"
        hint = ""
        possible = phonenumbers.is_possible_number_with_reason(number)
        if possible == ValidationResult.TOO_SHORT:
            hint = ": faltan dígitos"
        elif possible == ValidationResult.TOO_LONG:
            hint = ": sobran dígitos"
        elif not international:
            hint = "; si es de otro país, escríbalo con + y el código de país"
        raise InvalidPhone(f"número inválido para {place}{hint}")
    return phonenumbers.format_number(number, PhoneNumberFormat.E164)[1:]


def _normalize_in_region(raw: str, region: str) -> str:
    """Normalize a phone for an already-checked region, trying the precompiled shortcut first."""
    digits, international = _phone_digits(raw)
    fast = _region_rules(region).fast_normalize(digits, international)
    return fast if fast is not None else _parse_phone(digits, international, region)


def normalize_phone(raw: str, default_region: str) -> str:
    """Return the number as E.164 digits without "+" (WhatsApp's `to`), or raise InvalidPhone with the reason."""
    return _normalize_in_region(raw, _checked_region(default_region))


def mask_value(raw: Any) -> str:
    """Hide every digit but the last few (at most 4, at most half) so a phone number is never echoed back."""
    text = "" if raw is None else str(raw).strip()
    digit_count = sum(ch.isdigit() for ch in text)
    keep = min(4, digit_count // 2)
    hidden = digit_count - keep
    out = []
    for ch in text:
        if ch.isdigit():
            out.append("*" if hidden > 0 else ch)
            hidden -= 1
        else:
            out.append(ch)
    masked = "".join(out)
    # The visible digits are at the end, so long values are cut at the start.
    return masked if len(masked) <= _MAX_SHOWN_CHARS else "…" + masked[-(_MAX_SHOWN_CHARS - 1):]


# --------------------------------------------------------------------------- columns


def _fold(name: str) -> str:
    """Compare header names ignoring case, surrounding spaces and accents."""
    decomposed = unicodedata.normalize("NFKD", name.strip().casefold())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def _name_words(name: str) -> list[str]:
    """Split a folded header name into words, treating "_", "-", "." and spaces alike."""
    return re.findall(r"[a-z0-9]+", _fold(name))


def _phone_header_rank(name: str) -> int | None:
    """Rank a header as phone column: 0 names the phone explicitly, 1 is a bare "número", None is not a phone."""
    words = _name_words(name)
    if not words or any(w not in _STRONG_PHONE_WORDS and w not in _WEAK_PHONE_WORDS and w not in _FILLER_WORDS
                        for w in words):
        return None
    if any(w in _STRONG_PHONE_WORDS for w in words):
        return 0
    if any(w in _WEAK_PHONE_WORDS for w in words):
        return 1
    return None


def _looks_like_phone(value: str) -> bool:
    """Tell whether a header cell is really a phone number, i.e. the file has no header row."""
    try:
        digits, _ = _phone_digits(value)
    except InvalidPhone:
        return False
    return len(digits) >= 7


@dataclass(frozen=True)
class _Columns:
    """The resolved layout of the input: all column names, which one is the phone, and notes for the operator."""

    names: list[str]
    phone_index: int
    notes: list[str]

    @property
    def parameter_names(self) -> list[str]:
        """Every column except the phone, in input order."""
        return [n for i, n in enumerate(self.names) if i != self.phone_index]


def _resolve_columns(names: list[str], phone_column: str | None, named_params: bool, source: str) -> _Columns:
    """Find the phone column among `names` and check the others can serve as template parameters."""
    noun = "Columnas del archivo" if source == "csv" else "Campos de los contactos"
    # Error messages list the column names; a "name" that is really a phone number must not be echoed.
    shown = [mask_value(n) if _looks_like_phone(n) else n for n in names]
    listed = ", ".join(shown)
    notes: list[str] = []

    def no_header_row() -> ContactsError:
        """The error for a CSV whose first row holds a contact instead of column names."""
        return ContactsError(
            "La primera fila parece ser un contacto y no una fila de encabezados. Agregue al inicio una "
            "fila con los nombres de las columnas, por ejemplo: telefono;nombre.",
            {"first_row": shown},
        )

    header_is_data = source == "csv" and shown != names
    if phone_column is not None and phone_column.strip():
        wanted = _fold(" ".join(phone_column.split()))
        matches = [i for i, n in enumerate(names) if _fold(" ".join(n.split())) == wanted]
        if not matches:
            if header_is_data:
                raise no_header_row()
            raise ContactsError(
                f"No existe la columna '{phone_column.strip()}' indicada en 'columna_telefono'. {noun}: {listed}.",
                {"phone_column": phone_column, "columns": shown},
            )
    else:
        ranks = [_phone_header_rank(n) for n in names]
        best = min((r for r in ranks if r is not None), default=None)
        if best is None:
            if header_is_data:
                raise no_header_row()
            what = "la columna" if source == "csv" else "el campo"
            raise ContactsError(
                f"No se encontró la columna de teléfono. {noun}: {listed}. "
                f"Renombre {what} a 'telefono' o indíquela en el campo 'columna_telefono'.",
                {"columns": shown},
            )
        matches = [i for i, r in enumerate(ranks) if r == best]
        others = [names[i] for i, r in enumerate(ranks) if r is not None and i != matches[0]]
        if others:
            notes.append(
                f"Hay varias columnas que parecen de teléfono ({', '.join([names[matches[0]], *others])}); "
                f"se usó '{names[matches[0]]}' y las demás se envían como parámetros de la plantilla."
            )
    if phone_column is not None and phone_column.strip() and len(matches) > 1:
        notes.append(
            f"Hay {len(matches)} columnas llamadas '{names[matches[0]]}'; se usó la primera como teléfono."
        )
    phone_index = matches[0]

    if named_params:
        params = [n for i, n in enumerate(names) if i != phone_index]
        repeated = sorted({n for n in params if params.count(n) > 1})
        if repeated:
            raise ContactsError(
                f"Hay columnas repetidas ({', '.join(repeated)}); con parámetros con nombre cada columna debe "
                "tener un nombre distinto.",
                {"columns": names, "repeated": repeated},
            )
    return _Columns(names, phone_index, notes)


# --------------------------------------------------------------------------- rows


class _RowProblem(Exception):
    """Internal signal that a row's shape is wrong before its values can be checked."""

    def __init__(self, reason: str, phone_raw: Any = "") -> None:
        """Keep the reason and whatever phone value could be found, for the masked report."""
        super().__init__(reason)
        self.reason = reason
        self.phone_raw = phone_raw


def _cell_text(value: Any, column: str) -> str:
    """Turn a JSON value into cell text: numbers become strings, null becomes empty, other types are refused."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, bool):
        raise _RowProblem(f"valor no admitido en '{column}' (verdadero/falso)")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise _RowProblem(f"valor no admitido en '{column}'")
        # JSON producers often write whole numbers, phones included, as floats (584141234567.0).
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, Decimal):
        return format(value.normalize(), "f") if value == value.to_integral_value() else str(value)
    raise _RowProblem(f"valor no admitido en '{column}' (se esperaba texto o número)")


class _RowDecider:
    """Turns one input row (CSV cells or a JSON object) into a Contact, a RejectedRow, or None for a blank row."""

    def __init__(self, columns: _Columns, region: str, named_params: bool) -> None:
        """Prepare per-upload state: the column layout and the phones accepted so far (for duplicates)."""
        self.names = columns.names
        self.width = len(columns.names)
        self.phone_index = columns.phone_index
        self.phone_name = columns.names[columns.phone_index]
        self.param_names = columns.parameter_names
        self.name_set = frozenset(columns.names)
        self.region = region
        self.named_params = named_params
        self.first_row_of_phone: dict[str, int] = {}
        self.last_row = 0  # lets a CSV syntax error name the row where reading stopped

    def decide(self, row: int, raw: list[str] | Mapping[Any, Any] | None) -> Contact | RejectedRow | None:
        """Apply every rule to one row (CSV cells or a JSON object); both entry points go through here."""
        self.last_row = row
        try:
            # csv.reader yields lists; testing that first keeps the ABC checks off the hot path.
            if type(raw) is list:
                values = self._values_from_cells(raw) if len(raw) != self.width else [c.strip() for c in raw]
            elif isinstance(raw, Mapping):
                values = self._values_from_mapping(raw)
            else:
                raise _RowProblem("el contacto no es un objeto con campos")
        except _RowProblem as problem:
            return RejectedRow(row, mask_value(problem.phone_raw), problem.reason)
        if not any(values):
            return None
        return self._decide_values(row, values)

    def _values_from_cells(self, cells: list[str]) -> list[str]:
        """Align a short or long CSV row with the header; extra empty cells (Excel padding) are fine."""
        if len(cells) > self.width and not any(c.strip() for c in cells[self.width:]):
            return [c.strip() for c in cells[: self.width]]
        if not any(c.strip() for c in cells):
            return []
        phone_raw = cells[self.phone_index] if self.phone_index < len(cells) else ""
        raise _RowProblem(f"la fila tiene {len(cells)} celdas y el encabezado {self.width} columnas", phone_raw)

    def _values_from_mapping(self, record: Mapping[Any, Any]) -> list[str]:
        """Align a JSON object's fields with the columns; missing or unknown non-empty fields reject the row."""
        by_name = {str(k).strip(): v for k, v in record.items()}
        phone_raw = by_name.get(self.phone_name, "")
        try:
            values = [_cell_text(by_name.get(name), name) for name in self.names]
            unknown = [k for k, v in by_name.items() if k not in self.name_set and _cell_text(v, k)]
        except _RowProblem as problem:
            raise _RowProblem(problem.reason, phone_raw) from None
        if not any(values) and not unknown:
            return values
        missing = [name for name in self.names if name not in by_name]
        if missing:
            raise _RowProblem(f"falta el campo '{missing[0]}'", phone_raw)
        if unknown:
            raise _RowProblem(f"campo no reconocido '{unknown[0]}'", phone_raw)
        return values

    def _decide_values(self, row: int, values: list[str]) -> Contact | RejectedRow:
        """Validate the phone, the parameters and uniqueness of an aligned, trimmed row (consumes `values`)."""
        # Popping the phone leaves the parameters in place, sparing per-row list copies.
        phone_raw = values.pop(self.phone_index)
        params = values
        try:
            phone = _normalize_in_region(phone_raw, self.region)
        except InvalidPhone as exc:
            return RejectedRow(row, mask_value(phone_raw), exc.reason)
        if "" in params:
            empty = [name for name, value in zip(self.param_names, params) if not value]
            # WhatsApp refuses a template whose text parameter is empty, so the row could never be delivered.
            quoted = ", ".join(f"'{n}'" for n in empty)
            reason = f"parámetro {quoted} vacío" if len(empty) == 1 else f"parámetros {quoted} vacíos"
            return RejectedRow(row, mask_value(phone_raw), reason)
        first = self.first_row_of_phone.get(phone)
        if first is not None:
            return RejectedRow(row, mask_value(phone_raw), f"duplicado de la fila {first}")
        self.first_row_of_phone[phone] = row
        return Contact(row, phone, dict(zip(self.param_names, params)) if self.named_params else params)


class ContactStream:
    """Accepted recipients, yielded one at a time while the input is read.

    It is its own single pass over the input, like a file. Rejected rows, blank-row notes and the accepted
    count fill in as it goes; the checks that need the whole input (too many contacts, none valid) raise
    ContactsError from the iteration, so a consumer that stores rows as they come must do so in a
    transaction it can roll back.
    Memory stays bounded by the limits (recipients seen, rejected rows), not by the size of the input.
    """

    def __init__(self, columns: _Columns, decider: _RowDecider, rows: Iterable[tuple[int, Any]],
                 max_contacts: int, encoding: str, delimiter: str, notes: list[str],
                 resources: ExitStack | None = None) -> None:
        """Keep what the iteration needs; `resources` is closed when the iteration ends or `close()` is called."""
        self.phone_column = decider.phone_name
        self.parameter_columns = columns.parameter_names
        self.encoding = encoding
        self.delimiter = delimiter
        self.notes = [*columns.notes, *notes]
        self.rejected: list[RejectedRow] = []
        self.accepted = 0
        self._columns = columns
        self._decider = decider
        self._rows = rows
        self._max_contacts = max_contacts
        self._resources = resources or ExitStack()
        self._iterator = None

    def __enter__(self) -> ContactStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the input (the caller's stream stays open)."""
        self._resources.close()

    def __iter__(self):
        """The one iterator over the accepted contacts: iterating again goes on where the last one stopped."""
        if self._iterator is None:
            self._iterator = self._read()
        return self._iterator

    def _read(self):
        """Yield each accepted Contact in input order, then run the whole-input checks."""
        try:
            yield from self._accepted()
        except csv.Error as exc:
            row = self._decider.last_row + 1
            raise ContactsError(
                f"El archivo no se pudo leer como CSV cerca de la fila {row}: revise comillas sin cerrar o "
                "celdas demasiado largas.",
                {"row": row, "error": str(exc)},
            ) from None
        except OSError as exc:
            raise ContactsError("No se pudo leer el archivo. Vuelva a subirlo.", {"error": str(exc)}) from None
        finally:
            self.close()

    def _accepted(self):
        """Run every row through the decider, stopping as soon as a limit is exceeded."""
        max_contacts = self._max_contacts
        rejected = self.rejected
        rejected_cap = max(max_contacts, _MIN_REJECTED_CAP)
        decide = self._decider.decide
        blank = 0
        for row, raw in self._rows:
            outcome = decide(row, raw)
            if outcome is None:
                blank += 1
            elif type(outcome) is Contact:
                if self.accepted >= max_contacts:
                    raise ContactsError(
                        f"Hay más de {max_contacts} contactos válidos y el máximo por envío es {max_contacts} "
                        f"(se dejó de leer en la fila {row}). Divida la lista en partes más pequeñas.",
                        {"max_contacts": max_contacts, "found_at_least": max_contacts + 1, "stopped_at_row": row},
                    )
                self.accepted += 1
                yield outcome
            else:
                rejected.append(outcome)
                if len(rejected) > rejected_cap:
                    raise ContactsError(
                        f"Hay más de {rejected_cap} filas con errores (se dejó de leer en la fila {row}). Revise "
                        "que la columna de teléfono y la región sean las correctas.",
                        {"rejected_at_least": len(rejected), "rejected_sample": _sample(rejected)},
                    )
        if not self.accepted:
            if not rejected:
                raise ContactsError(
                    "La lista no tiene contactos: solo se encontraron los encabezados o filas vacías. "
                    "Agregue al menos una fila con un teléfono.",
                    {"columns": self._columns.names},
                )
            raise ContactsError(
                f"Ningún contacto es válido: se rechazaron las {len(rejected)} filas. Revise la columna "
                f"'{self.phone_column}' y que la región ({self._decider.region}) sea la de los números sin "
                "código de país.",
                {"rejected_count": len(rejected), "rejected_sample": _sample(rejected)},
            )
        if blank:
            self.notes.append(f"Se ignoraron {blank} filas vacías." if blank > 1 else "Se ignoró 1 fila vacía.")

    def finish(self) -> None:
        """Read whatever nobody has read yet, so that the rejected rows and notes are complete."""
        for _ in self:
            pass

    def collect(self) -> ParsedContacts:
        """Read the whole input into memory (for callers that need the list, and for tests)."""
        contacts = list(self)
        return ParsedContacts(
            contacts=contacts,
            rejected=self.rejected,
            phone_column=self.phone_column,
            parameter_columns=self.parameter_columns,
            encoding=self.encoding,
            delimiter=self.delimiter,
            notes=self.notes,
        )


def _sample(rejected: list[RejectedRow]) -> list[dict[str, Any]]:
    """First rejected rows as plain dicts, for error details."""
    return [{"row": r.row, "value": r.value, "reason": r.reason} for r in rejected[:_DETAILS_SAMPLE]]


def _check_limits(default_region: str, max_contacts: int) -> str:
    """Validate the caller's options, reporting an unknown region as an upload error."""
    if max_contacts < 1:
        raise ValueError("max_contacts must be at least 1")
    try:
        return _checked_region(default_region)
    except ValueError as exc:
        raise ContactsError(str(exc), {"default_region": default_region}) from None


# --------------------------------------------------------------------------- CSV entry point


def _open_seekable(stream: BinaryIO, stack: ExitStack) -> tuple[BinaryIO, int]:
    """Return a seekable binary source and its start offset, spooling non-seekable streams to a temporary file."""
    if isinstance(stream, io.IOBase) and stream.seekable():
        return stream, stream.tell()
    spool = stack.enter_context(tempfile.SpooledTemporaryFile(max_size=_SPOOL_MAX_MEMORY))
    shutil.copyfileobj(stream, spool, _CHUNK_SIZE)
    spool.seek(0)
    return spool, 0


def _detect_encoding(source: BinaryIO) -> str:
    """Read the file once in chunks and tell UTF-8 (with or without BOM) from Windows-1252."""
    first = source.read(_CHUNK_SIZE)
    if not isinstance(first, (bytes, bytearray)):
        raise TypeError("open_csv expects a binary stream")
    if first.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        # Excel's "Unicode text" export; there is no other reasonable reading of this BOM.
        return "utf-16"
    if first.startswith(_XLSX_MAGIC) or first.startswith(_XLS_MAGIC):
        raise ContactsError(
            "El archivo es un libro de Excel, no un CSV. En Excel use 'Guardar como' > 'CSV UTF-8 "
            "(delimitado por comas)' y suba ese archivo.",
            {"detected": "excel"},
        )
    has_bom = first.startswith(codecs.BOM_UTF8)
    decoder = codecs.getincrementaldecoder("utf-8")()
    chunk = first
    try:
        while chunk:
            decoder.decode(chunk)
            chunk = source.read(_CHUNK_SIZE)
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        # Spreadsheets saved as plain "CSV" on Windows use the ANSI code page, a superset of Latin-1's letters.
        return "cp1252"
    return "utf-8-sig" if has_bom else "utf-8"


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
            raise ContactsError(
                "El archivo está vacío. Debe tener una fila de encabezados (por ejemplo telefono;nombre) "
                "y al menos un contacto.",
                {},
            )
        if len(line) >= _MAX_HEADER_CHARS and not line.endswith(("\n", "\r")):
            raise ContactsError(
                "La primera fila es demasiado larga para ser una fila de encabezados. Verifique que el archivo "
                "sea un CSV.",
                {},
            )
        row += 1
        if not _BLANK_LINE.fullmatch(line):
            return line, row


def _header_names(cells: list[str]) -> list[str]:
    """Trim header cells, drop Excel's trailing empty columns, and refuse unnamed columns in between."""
    names = [c.strip() for c in cells]
    if names:
        # A UTF-8 BOM read as Windows-1252 shows up as these three characters.
        names[0] = names[0].removeprefix("\ufeff").removeprefix("ï»¿").strip()
    while names and not names[-1]:
        names.pop()
    unnamed = [i + 1 for i, n in enumerate(names) if not n]
    if unnamed:
        raise ContactsError(
            f"La columna {unnamed[0]} no tiene nombre en la fila de encabezados. Escriba un nombre o elimine "
            "la columna.",
            {"unnamed_positions": unnamed},
        )
    return names


def open_csv(
    stream: BinaryIO,
    *,
    default_region: str = "VE",
    phone_column: str | None = None,
    named_params: bool = False,
    max_contacts: int = 100_000,
) -> ContactStream:
    """Check an uploaded CSV's encoding and header now; return its recipients as a stream read in bounded memory.

    Problems with the file as a whole (encoding, header, phone column) raise ContactsError here; problems
    found while reading rows raise it from the iteration. Blank lines anywhere are skipped but still
    counted, so row numbers match what a spreadsheet shows; rows whose template parameters are empty are
    rejected because WhatsApp would refuse them. The stream is left open; its position afterwards is
    unspecified.
    """
    region = _check_limits(default_region, max_contacts)
    stack = ExitStack()
    try:
        try:
            source, start = _open_seekable(stream, stack)
            encoding = _detect_encoding(source)
            source.seek(start)
        except OSError as exc:
            raise ContactsError("No se pudo leer el archivo. Vuelva a subirlo.", {"error": str(exc)}) from None
        text = io.TextIOWrapper(source, encoding=encoding, errors="replace", newline="")
        # Detaching keeps the caller's stream open when the wrapper is discarded.
        stack.callback(text.detach)
        return _open_text(text, encoding, region, phone_column, named_params, max_contacts, stack)
    except BaseException:
        stack.close()
        raise


def _open_text(
    text: io.TextIOWrapper,
    encoding: str,
    region: str,
    phone_column: str | None,
    named_params: bool,
    max_contacts: int,
    stack: ExitStack,
) -> ContactStream:
    """Read the header and delimiter of the decoded text and set up the row stream."""
    try:
        line, header_row = _read_header_line(text)
        delimiter = _detect_delimiter(line)
        reader = csv.reader(itertools.chain([line], text), delimiter=delimiter, skipinitialspace=True)
        names = _header_names(next(reader))
    except csv.Error as exc:
        raise ContactsError(
            "El archivo no se pudo leer como CSV cerca de la fila 1: revise comillas sin cerrar o "
            "celdas demasiado largas.",
            {"row": 1, "error": str(exc)},
        ) from None
    except OSError as exc:
        raise ContactsError("No se pudo leer el archivo. Vuelva a subirlo.", {"error": str(exc)}) from None
    columns = _resolve_columns(names, phone_column, named_params, "csv")
    notes = []
    if encoding == "cp1252":
        notes.append(
            "El archivo no está en UTF-8; se leyó como Windows-1252 (Latin-1). Si ve caracteres extraños en "
            "los nombres, guárdelo como 'CSV UTF-8'."
        )
    decider = _RowDecider(columns, region, named_params)
    # Counting records, not lines, matches the spreadsheet's row numbers even with multi-line quoted cells.
    rows = enumerate(reader, start=header_row + 1)
    return ContactStream(columns, decider, rows, max_contacts, encoding, delimiter, notes, stack)


# --------------------------------------------------------------------------- JSON entry point


def open_records(
    records: list[dict],
    *,
    default_region: str = "VE",
    phone_column: str | None = None,
    named_params: bool = False,
    max_contacts: int = 100_000,
) -> ContactStream:
    """Check the JSON body's `contactos` list and return its recipients as a stream, with the CSV rules.

    Rows are numbered from 1. The first object's fields play the role of the header: later objects missing
    one of them, or carrying an unknown non-empty field, are rejected.
    """
    region = _check_limits(default_region, max_contacts)
    if not isinstance(records, list):
        raise ContactsError("El campo 'contactos' debe ser una lista de objetos.", {})
    if not records:
        raise ContactsError("La lista 'contactos' está vacía. Agregue al menos un contacto.", {})
    first = next((r for r in records if isinstance(r, Mapping) and r), None)
    if first is None:
        raise ContactsError(
            "Los contactos deben ser objetos con campos, por ejemplo {\"telefono\": \"584141234567\", "
            "\"nombre\": \"Ana\"}.",
            {},
        )
    names = [str(k).strip() for k in first]
    unnamed = [n for n in names if not n]
    if unnamed:
        raise ContactsError("Hay un campo sin nombre en los contactos.", {"columns": names})
    if len(set(names)) != len(names):
        raise ContactsError("Hay campos repetidos en los contactos (difieren solo en espacios).", {"columns": names})
    columns = _resolve_columns(names, phone_column, named_params, "json")
    decider = _RowDecider(columns, region, named_params)
    # Anything but an object (a list, a bare string) is handed over as None so it is rejected, not unpacked.
    rows = ((i, r if isinstance(r, Mapping) else None) for i, r in enumerate(records, start=1))
    return ContactStream(columns, decider, rows, max_contacts, "json", "", [])
