"""Parse and validate an uploaded contacts list (CSV file or JSON records) into campaign recipients.

The modules, from the bottom up: `phones` (a cell to E.164), `columns` (which column is the phone),
`rows` (one row's fate), `stream` (the ContactStream the store copies from), `encodings` (what the uploaded
bytes are) and `sources` (the CSV and JSON entry points). Nothing here knows about HTTP.
"""

from __future__ import annotations

from webapi.contacts.columns import RichColumn
from webapi.contacts.errors import ContactsError
from webapi.contacts.phones import InvalidPhone, mask_value, normalize_phone
from webapi.contacts.rows import Contact, RejectedRow, is_https_link
from webapi.contacts.sources import DEFAULT_MAX_PARAM_LENGTH, open_csv, open_records
from webapi.contacts.stream import ContactStream, ParsedContacts

__all__ = [
    "DEFAULT_MAX_PARAM_LENGTH",
    "Contact",
    "ContactStream",
    "ContactsError",
    "InvalidPhone",
    "ParsedContacts",
    "RejectedRow",
    "RichColumn",
    "is_https_link",
    "mask_value",
    "normalize_phone",
    "open_csv",
    "open_records",
]
