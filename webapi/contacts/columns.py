"""Which column of the header holds the phone, and whether the others can be template parameters."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from tasks import texts
from webapi.contacts.errors import ContactsError
from webapi.contacts.phones import InvalidPhone, mask_value, phone_digits

# A template body holds at most 1,024 characters and every placeholder ({{1}}) takes at least five, so
# no approved template has anywhere near 99 body parameters; a file with more columns is a spreadsheet
# exported whole (or not a contact list), and reading 10,000 cells per row would only waste memory.
MAX_COLUMNS = 100

# Header words that identify the phone column (after folding case and accents).
_STRONG_PHONE_WORDS = frozenset(
    {"telefono", "phone", "celular", "movil", "whatsapp", "mobile", "telephone", "cel", "tel", "fono", "msisdn"}
)
# "numero" alone is a phone column, but loses against a column that names the phone explicitly.
_WEAK_PHONE_WORDS = frozenset({"numero", "number"})
# Words that may accompany a phone word without changing its meaning ("número de teléfono", "Nº celular").
_FILLER_WORDS = frozenset({"de", "del", "num", "nro", "nr", "no", "n"})


# Columns that fill a rich template's header and buttons instead of its body (README, "Plantillas"):
# "encabezado", "encabezado_nombre_archivo", "boton_<índice>_url" and "boton_<índice>_respuesta", compared
# like other header names (case, accents, spaces or "_" alike); the index counts the template's buttons
# from 0, as the Cloud API does.
HEADER_COLUMN = ("encabezado",)
FILENAME_COLUMN = ("encabezado", "nombre", "archivo")
_BUTTON_KINDS = {"url": "url", "respuesta": "quick_reply"}


@dataclass(frozen=True)
class RichColumn:
    """A column that fills a header or button parameter: its name, what it fills, and the button index."""

    name: str
    kind: str  # header, filename, url or quick_reply
    index: int | None = None  # the button's index, for url and quick_reply


def rich_column(name: str) -> RichColumn | None:
    """What a column fills by its name, or None for a body parameter (or the phone)."""
    words = tuple(_name_words(name))
    if words == HEADER_COLUMN:
        return RichColumn(name, "header")
    if words == FILENAME_COLUMN:
        return RichColumn(name, "filename")
    if len(words) == 3 and words[0] == "boton" and words[1].isdigit() and words[2] in _BUTTON_KINDS:
        return RichColumn(name, _BUTTON_KINDS[words[2]], int(words[1]))
    return None


@dataclass(frozen=True)
class Columns:
    """The resolved layout of the input: all column names, which one is the phone, and notes for the operator."""

    names: list[str]
    phone_index: int
    notes: list[str]
    rich: tuple[RichColumn, ...] = ()

    @property
    def parameter_names(self) -> list[str]:
        """The body parameter columns: every column except the phone and the rich ones, in input order."""
        rich = {c.name for c in self.rich}
        return [n for i, n in enumerate(self.names) if i != self.phone_index and n not in rich]


def fold(name: str) -> str:
    """Compare header names ignoring case, surrounding spaces and accents."""
    decomposed = unicodedata.normalize("NFKD", name.strip().casefold())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def _name_words(name: str) -> list[str]:
    """Split a folded header name into words, treating "_", "-", "." and spaces alike."""
    return re.findall(r"[a-z0-9]+", fold(name))


def _phone_header_rank(name: str) -> int | None:
    """Rank a header as phone column: 0 names the phone explicitly, 1 is a bare "número", None is not a phone."""
    words = _name_words(name)
    if not words or any(
        w not in _STRONG_PHONE_WORDS and w not in _WEAK_PHONE_WORDS and w not in _FILLER_WORDS for w in words
    ):
        return None
    if any(w in _STRONG_PHONE_WORDS for w in words):
        return 0
    if any(w in _WEAK_PHONE_WORDS for w in words):
        return 1
    return None


def _looks_like_phone(value: str) -> bool:
    """Tell whether a header cell is really a phone number, i.e. the file has no header row."""
    try:
        digits, _ = phone_digits(value)
    except InvalidPhone:
        return False
    return len(digits) >= 7


def check_column_count(count: int, *, at_least: bool = False) -> None:
    """Refuse an input with more columns than a template could use."""
    if count > MAX_COLUMNS:
        shown = texts.COLUMNS_AT_LEAST.format(count=count) if at_least else str(count)
        raise ContactsError(
            texts.TOO_MANY_COLUMNS.format(count=shown, limit=MAX_COLUMNS),
            {"columns_count": count, "max_columns": MAX_COLUMNS},
        )


def header_names(cells: list[str]) -> list[str]:
    """Trim header cells, drop Excel's trailing empty columns, and refuse unnamed columns in between."""
    names = [c.strip() for c in cells]
    if names:
        # A UTF-8 BOM read as Windows-1252 shows up as these three characters.
        names[0] = names[0].removeprefix("\ufeff").removeprefix("ï»¿").strip()
    while names and not names[-1]:
        names.pop()
    check_column_count(len(names))
    unnamed = [i + 1 for i, n in enumerate(names) if not n]
    if unnamed:
        raise ContactsError(texts.UNNAMED_COLUMN.format(position=unnamed[0]), {"unnamed_positions": unnamed})
    return names


def resolve_columns(names: list[str], phone_column: str | None, named_params: bool, source: str) -> Columns:
    """Find the phone column among `names` and check the others can serve as template parameters."""
    check_column_count(len(names))
    is_csv = source == "csv"
    # Error messages list the column names; a "name" that is really a phone number must not be echoed.
    shown = [mask_value(n) if _looks_like_phone(n) else n for n in names]
    listed = ", ".join(shown)
    notes: list[str] = []
    header_is_data = is_csv and shown != names
    no_header_row = ContactsError(texts.NO_HEADER_ROW.format(), {"first_row": shown})

    if phone_column is not None and phone_column.strip():
        wanted = fold(" ".join(phone_column.split()))
        matches = [i for i, n in enumerate(names) if fold(" ".join(n.split())) == wanted]
        if not matches:
            if header_is_data:
                raise no_header_row
            absent = texts.NAMED_PHONE_COLUMN_ABSENT_CSV if is_csv else texts.NAMED_PHONE_COLUMN_ABSENT_JSON
            raise ContactsError(
                absent.format(column=phone_column.strip(), columns=listed),
                {"phone_column": phone_column, "columns": shown},
            )
        if len(matches) > 1:
            notes.append(texts.NOTE_PHONE_COLUMN_REPEATED.format(count=len(matches), column=names[matches[0]]))
    else:
        ranks = [_phone_header_rank(n) for n in names]
        best = min((r for r in ranks if r is not None), default=None)
        if best is None:
            if header_is_data:
                raise no_header_row
            not_found = texts.PHONE_COLUMN_NOT_FOUND_CSV if is_csv else texts.PHONE_COLUMN_NOT_FOUND_JSON
            raise ContactsError(not_found.format(columns=listed), {"columns": shown})
        matches = [i for i, r in enumerate(ranks) if r == best]
        others = [names[i] for i, r in enumerate(ranks) if r is not None and i != matches[0]]
        if others:
            notes.append(
                texts.NOTE_SEVERAL_PHONE_COLUMNS.format(
                    columns=", ".join([names[matches[0]], *others]), chosen=names[matches[0]]
                )
            )
    phone_index = matches[0]

    rich = tuple(c for i, n in enumerate(names) if i != phone_index and (c := rich_column(n)) is not None)
    filled = [(c.kind, c.index) for c in rich]
    repeated_rich = sorted({c.name for c in rich if filled.count((c.kind, c.index)) > 1})
    if repeated_rich:
        raise ContactsError(
            texts.RICH_COLUMN_REPEATED.format(columns=", ".join(repeated_rich)),
            {"columns": names, "repeated": repeated_rich},
        )
    if named_params:
        params = [n for i, n in enumerate(names) if i != phone_index]
        repeated = sorted({n for n in params if params.count(n) > 1})
        if repeated:
            raise ContactsError(
                texts.REPEATED_COLUMNS.format(columns=", ".join(repeated)), {"columns": names, "repeated": repeated}
            )
    return Columns(names, phone_index, notes, rich)
