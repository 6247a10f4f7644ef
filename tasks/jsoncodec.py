"""JSON on the hot paths: orjson where it can, the standard library for what orjson refuses.

Used for every message body sent, and on the notification path: each status notification is parsed twice
(the intake checks it is a JSON object, the webhook worker reads it) and its statuses are encoded once more
for the store, three notifications per message. orjson parses in less than half the time of `json` and
encodes in a tenth.
It is stricter (NaN, numbers beyond a double, lone surrogates, UTF-16 input, keys that are not strings):
whatever it refuses goes through `json`, so the same documents are accepted and refused as with `json`
alone. One difference is left: orjson reads an integer beyond 64 bits as a float. No field of a notification
carries one (error codes are small, ids and timestamps are strings), and the decision the intake takes (a
JSON object or not) does not depend on it. `dumps` writes the same document as `json.dumps` (compact, UTF-8;
a float may be written in another of its equal forms).
"""

from __future__ import annotations

import json
from json import encoder
from typing import Any

import orjson

#: `json`'s compact UTF-8 text: what `dumps` falls back on, for a caller that builds text rather than bytes.
encode_text = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
#: One JSON string as both encoders write it (the C function `json` uses), to write a document around it.
string = encoder.encode_basestring


def loads(raw: bytes | str) -> Any:
    """Parse a JSON document (ValueError when it is not one)."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return json.loads(raw)


def dumps(value: Any) -> bytes:
    """Encode `value` compactly as UTF-8 (TypeError or ValueError when it cannot be)."""
    try:
        return orjson.dumps(value)
    except TypeError:
        return encode_text(value).encode()
