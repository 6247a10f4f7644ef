"""ContactStream: the accepted recipients of one upload, validated while the store copies them."""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

from tasks import texts
from webapi.contacts.columns import Columns
from webapi.contacts.errors import ContactsError
from webapi.contacts.rows import Contact, RejectedRow, RowDecider

# Rejected rows are kept in memory for the report, so their number must be bounded too.
_MIN_REJECTED_CAP = 10_000
# How many rejected rows an error's details carry; the operator needs examples, not the whole list.
_DETAILS_SAMPLE = 20


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


class ContactStream:
    """Accepted recipients, yielded one at a time while the input is read.

    It is its own single pass over the input, like a file. Rejected rows, blank-row notes and the accepted
    count fill in as it goes; the checks that need the whole input (too many contacts, none valid, a broken
    CSV line) raise ContactsError from the iteration, so a consumer that stores rows as they come must do so
    in a transaction it can roll back.
    Memory stays bounded by the limits (recipients seen, rejected rows), not by the size of the input.
    """

    def __init__(
        self,
        columns: Columns,
        decider: RowDecider,
        rows: Iterable[tuple[int, Any]],
        max_contacts: int,
        encoding: str,
        delimiter: str,
        notes: list[str],
        resources: ExitStack | None = None,
    ) -> None:
        """Keep what the iteration needs; `resources` is closed when the iteration ends or `close()` is called."""
        self.phone_column = decider.phone_name
        self.parameter_columns = columns.parameter_names
        self.rich_columns = columns.rich  # header and button columns (webapi/contacts/columns.py)
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

    def require_links(self, names: Iterable[str]) -> None:
        """Reject rows whose value in these rich columns is not an https link (call before reading rows)."""
        wanted = set(names)
        self._decider.link_positions = frozenset(i for i, n in enumerate(self._decider.rich_names) if n in wanted)

    def exclude(self, phones: set[str], reason: str) -> None:
        """Reject, with `reason`, the rows whose normalized phone is one of `phones` (call before reading)."""
        self._decider.excluded = phones
        self._decider.excluded_reason = reason

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
        except OSError as exc:
            raise ContactsError(texts.FILE_UNREADABLE.format(), {"error": str(exc)}) from None
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
                        texts.TOO_MANY_CONTACTS.format(limit=max_contacts, row=row),
                        {"max_contacts": max_contacts, "found_at_least": max_contacts + 1, "stopped_at_row": row},
                    )
                self.accepted += 1
                yield outcome
            else:
                assert isinstance(outcome, RejectedRow)
                rejected.append(outcome)
                if len(rejected) > rejected_cap:
                    raise ContactsError(
                        texts.TOO_MANY_REJECTED.format(limit=rejected_cap, row=row),
                        {"rejected_at_least": len(rejected), "rejected_sample": _sample(rejected)},
                    )
        if not self.accepted:
            if not rejected:
                raise ContactsError(texts.NO_CONTACTS.format(), {"columns": self._columns.names})
            raise ContactsError(
                texts.NO_VALID_CONTACT.format(
                    count=len(rejected), column=self.phone_column, region=self._decider.region
                ),
                {"rejected_count": len(rejected), "rejected_sample": _sample(rejected)},
            )
        if blank:
            self.notes.append(texts.NOTE_BLANK_ROWS.format(count=blank) if blank > 1 else texts.NOTE_BLANK_ROW.format())

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
