"""What happens to one input row: accepted as a Contact, rejected with a reason, or skipped as blank."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

from tasks import texts
from webapi.contacts.columns import Columns
from webapi.contacts.phones import InvalidPhone, mask_value, normalize_in_region

# Control characters (tab and line ends aside) and lone surrogates cannot be stored in PostgreSQL text or
# sent to WhatsApp. CSV files are checked for them as a whole; JSON strings can carry them as \u escapes.
_UNUSABLE_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")
# No media host needs a longer link; one this long is most likely several cells run together.
_MAX_LINK_LENGTH = 2048


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
        if _UNUSABLE_CHARS.search(value):
            raise _RowProblem(texts.ROW_VALUE_CONTROL_CHARACTER.format(column=column))
        return value.strip()
    if isinstance(value, bool):
        raise _RowProblem(texts.ROW_VALUE_BOOLEAN.format(column=column))
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise _RowProblem(texts.ROW_VALUE_NOT_A_NUMBER.format(column=column))
        # JSON producers often write whole numbers, phones included, as floats (584141234567.0).
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, Decimal):
        return format(value.normalize(), "f") if value == value.to_integral_value() else str(value)
    raise _RowProblem(texts.ROW_VALUE_WRONG_TYPE.format(column=column))


class RowDecider:
    """Turns one input row (CSV cells or a JSON object) into a Contact, a RejectedRow, or None for a blank row."""

    def __init__(self, columns: Columns, region: str, named_params: bool) -> None:
        """Prepare per-upload state: the column layout and the phones accepted so far (for duplicates)."""
        self.names = columns.names
        self.width = len(columns.names)
        self.phone_index = columns.phone_index
        self.phone_name = columns.names[columns.phone_index]
        self.param_names = columns.parameter_names
        self.name_set = frozenset(columns.names)
        # Header and button columns are split from the body parameters and stored after them.
        others = [n for i, n in enumerate(columns.names) if i != columns.phone_index]
        self.rich_names = [c.name for c in columns.rich]
        self.rich_positions = [others.index(n) for n in self.rich_names]
        self.body_positions = [i for i, n in enumerate(others) if n not in set(self.rich_names)]
        self.optional_rich = {i for i, c in enumerate(columns.rich) if c.kind == "filename"}
        self.link_positions: frozenset[int] = frozenset()  # rich columns holding https links (see require_links)
        self.region = region
        self.named_params = named_params
        self.first_row_of_phone: dict[str, int] = {}
        self.last_row = 0  # lets a CSV syntax error name the row where reading stopped
        self.excluded: frozenset[str] | set[str] = frozenset()  # numbers that must not be sent to (opt-outs)
        self.excluded_reason = ""

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
                raise _RowProblem(texts.ROW_NOT_AN_OBJECT.format())
        except _RowProblem as problem:
            return RejectedRow(row, mask_value(problem.phone_raw), problem.reason)
        if not any(values):
            return None
        return self._decide_values(row, values)

    def _values_from_cells(self, cells: list[str]) -> list[str]:
        """Align a short or long CSV row with the header; extra empty cells (Excel padding) are fine."""
        if len(cells) > self.width and not any(c.strip() for c in cells[self.width :]):
            return [c.strip() for c in cells[: self.width]]
        if not any(c.strip() for c in cells):
            return []
        phone_raw = cells[self.phone_index] if self.phone_index < len(cells) else ""
        raise _RowProblem(texts.ROW_WIDTH_MISMATCH.format(cells=len(cells), columns=self.width), phone_raw)

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
            raise _RowProblem(texts.ROW_FIELD_MISSING.format(field=missing[0]), phone_raw)
        if unknown:
            raise _RowProblem(texts.ROW_FIELD_UNKNOWN.format(field=unknown[0]), phone_raw)
        return values

    def _decide_values(self, row: int, values: list[str]) -> Contact | RejectedRow:
        """Validate the phone, the parameters and uniqueness of an aligned, trimmed row (consumes `values`)."""
        # Popping the phone leaves the parameters in place, sparing per-row list copies.
        phone_raw = values.pop(self.phone_index)
        params = values
        try:
            phone = normalize_in_region(phone_raw, self.region)
        except InvalidPhone as exc:
            return RejectedRow(row, mask_value(phone_raw), exc.reason)
        rich: list[str] = []
        if self.rich_positions:
            rich = [params[i] for i in self.rich_positions]
            params = [params[i] for i in self.body_positions]
            problem = self._rich_problem(rich)
            if problem is not None:
                return RejectedRow(row, mask_value(phone_raw), problem)
        if "" in params:
            empty = [name for name, value in zip(self.param_names, params, strict=False) if not value]
            # WhatsApp refuses a template whose text parameter is empty, so the row could never be delivered.
            quoted = ", ".join(f"'{n}'" for n in empty)
            reason = (texts.ROW_PARAM_EMPTY if len(empty) == 1 else texts.ROW_PARAMS_EMPTY).format(columns=quoted)
            return RejectedRow(row, mask_value(phone_raw), reason)
        if phone in self.excluded:
            return RejectedRow(row, mask_value(phone_raw), self.excluded_reason)
        first = self.first_row_of_phone.get(phone)
        if first is not None:
            return RejectedRow(row, mask_value(phone_raw), texts.ROW_DUPLICATE.format(first=first))
        self.first_row_of_phone[phone] = row
        if self.named_params:
            named = dict(zip(self.param_names, params, strict=False))
            if rich:
                named.update(zip(self.rich_names, rich, strict=True))
            return Contact(row, phone, named)
        return Contact(row, phone, params + rich if rich else params)

    def _rich_problem(self, values: list[str]) -> str | None:
        """Why a row's header or button values cannot be sent: an empty one, or a link that is not https."""
        for i, value in enumerate(values):
            if not value:
                if i not in self.optional_rich:
                    return texts.ROW_PARAM_EMPTY.format(columns=f"'{self.rich_names[i]}'")
            elif i in self.link_positions and not is_https_link(value):
                return texts.ROW_LINK_INVALID.format(column=self.rich_names[i])
        return None


def is_https_link(value: str) -> bool:
    """Whether a value is an https:// address WhatsApp can fetch media from (a host, no spaces)."""
    if len(value) > _MAX_LINK_LENGTH or any(ch.isspace() for ch in value):
        return False
    parts = urlsplit(value)
    return parts.scheme == "https" and bool(parts.hostname) and "." in (parts.hostname or "")
