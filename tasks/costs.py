"""What messages cost: the optional rate card (RATE_CARD_FILE) and the figures built on it.

WhatsApp charges each delivered template by its category and the recipient's country (per-message pricing
since July 2025). The rate card says how much, per category and country calling code, in one currency:

CSV (docs/rate-card.csv), one price per row; a `*` code is the price for every other country:

    categoria,codigo_pais,precio,moneda
    marketing,58,0.0436,USD
    marketing,*,0.0625,USD

JSON: {"moneda": "USD", "tarifas": {"marketing": {"58": 0.0436, "*": 0.0625}, "utility": {...}}}

The webhooks count billable messages per campaign as "b:<category>:<first 3 digits of the phone>"; three
digits always tell the calling code (calling codes are 1 to 3 digits and none is the start of another).
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

import phonenumbers

from tasks import texts

CATEGORIES = ("marketing", "utility", "authentication", "service")
DEFAULT_CATEGORY = "marketing"
ANY_COUNTRY = "*"
BILLABLE_PREFIX = "b:"


class RateCardError(ValueError):
    """The rate card file cannot be used; the message says what to fix."""


@dataclass(frozen=True)
class RateCard:
    """Prices per message by category and country calling code ("*" for the rest), in one currency."""

    currency: str = "USD"
    rates: dict[str, dict[str, Decimal]] = field(default_factory=dict)

    def price(self, category: str, code: str | None) -> Decimal | None:
        """The price of one message of `category` to a number of calling code `code`, or None when unpriced."""
        prices = self.rates.get(category)
        if not prices:
            return None
        if code is not None and code in prices:
            return prices[code]
        return prices.get(ANY_COUNTRY)


def calling_code(digits: str) -> str | None:
    """The country calling code a number in E.164 digits (or its first three digits) starts with."""
    for length in (1, 2, 3):
        head = digits[:length]
        if len(head) == length and head.isdigit() and int(head) in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
            return head
    return None


def _price(raw: object, where: str) -> Decimal:
    """A price of the card: a number of 0 or more."""
    try:
        value = Decimal(str(raw).strip().replace(",", "."))
    except InvalidOperation:
        value = Decimal(-1)
    if not value.is_finite() or value < 0:
        raise RateCardError(
            texts.RATE_CARD_BAD_ROW.format(row=where, problem=texts.RATE_CARD_BAD_PRICE.format(value=raw))
        )
    return value


def _entry(category: object, code: object, where: str) -> tuple[str, str]:
    """A card row's category and calling code, checked."""
    name = str(category or "").strip().lower()
    if name not in CATEGORIES:
        problem = texts.RATE_CARD_BAD_CATEGORY.format(value=category)
        raise RateCardError(texts.RATE_CARD_BAD_ROW.format(row=where, problem=problem))
    number = str(code or "").strip().lstrip("+")
    if number != ANY_COUNTRY and not (number.isdigit() and 1 <= len(number) <= 3):
        raise RateCardError(
            texts.RATE_CARD_BAD_ROW.format(row=where, problem=texts.RATE_CARD_BAD_CODE.format(value=code))
        )
    return name, number


def parse_rate_card(text: str, is_json: bool) -> RateCard:
    """Read a rate card's text (CSV with a header row, or JSON), or RateCardError saying what is wrong."""
    rates: dict[str, dict[str, Decimal]] = {}
    currency = "USD"
    if is_json:
        try:
            document = json.loads(text)
        except ValueError as exc:
            raise RateCardError(str(exc)) from None
        if not isinstance(document, Mapping) or not isinstance(document.get("tarifas"), Mapping):
            raise RateCardError(texts.RATE_CARD_BAD_SHAPE)
        currency = str(document.get("moneda") or currency)[:10]
        for category, prices in document["tarifas"].items():
            if not isinstance(prices, Mapping):
                raise RateCardError(texts.RATE_CARD_BAD_SHAPE)
            for code, price in prices.items():
                where = f"{category}/{code}"
                name, number = _entry(category, code, where)
                rates.setdefault(name, {})[number] = _price(price, where)
        return RateCard(currency, rates)
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    columns = {c.strip().lower() for c in reader.fieldnames or []}
    missing = [c for c in ("categoria", "codigo_pais", "precio") if c not in columns]
    if missing:
        raise RateCardError(texts.RATE_CARD_MISSING_COLUMNS.format(columns=", ".join(missing)))
    for row_no, raw_row in enumerate(reader, start=2):
        row = {str(k).strip().lower(): (v or "").strip() for k, v in raw_row.items() if k is not None}
        if not any(row.values()):
            continue
        name, number = _entry(row.get("categoria"), row.get("codigo_pais"), str(row_no))
        rates.setdefault(name, {})[number] = _price(row.get("precio"), str(row_no))
        if row.get("moneda"):
            currency = row["moneda"][:10]
    return RateCard(currency, rates)


_CACHE: dict[str, tuple[float, RateCard]] = {}


def load_rate_card(path: str | None) -> RateCard | None:
    """The rate card at `path` (None when no file is configured), read again only when the file changes."""
    if not path:
        return None
    try:
        stamp = os.stat(path).st_mtime
        cached = _CACHE.get(path)
        if cached and cached[0] == stamp:
            return cached[1]
        with open(path, encoding="utf-8") as handle:
            card = parse_rate_card(handle.read(), path.lower().endswith(".json"))
    except (OSError, UnicodeDecodeError, RateCardError) as exc:
        raise RateCardError(texts.RATE_CARD_UNREADABLE.format(path=os.path.basename(path), error=exc)) from None
    _CACHE[path] = (stamp, card)
    return card


def billable_counts(fields: Mapping[str, str]) -> dict[tuple[str, str], int]:
    """A campaign's billable messages from its live fields, by (category, phone prefix)."""
    found: dict[tuple[str, str], int] = {}
    for name, value in fields.items():
        if name.startswith(BILLABLE_PREFIX):
            category, _, prefix = name[len(BILLABLE_PREFIX) :].partition(":")
            n = int(value or 0)
            if n:
                found[(category, prefix)] = found.get((category, prefix), 0) + n
    return found


def by_category(counts: Mapping[tuple[str, str], int]) -> dict[str, int]:
    """Billable messages per category."""
    result: dict[str, int] = {}
    for (category, _), n in counts.items():
        result[category] = result.get(category, 0) + n
    return result


def spent(card: RateCard, counts: Mapping[tuple[str, str], int]) -> dict:
    """What the billable messages cost at the card's prices: {total, moneda, sin_tarifa} (unpriced messages)."""
    total, unpriced = Decimal(0), 0
    for (category, prefix), n in counts.items():
        price = card.price(category, calling_code(prefix))
        if price is None:
            unpriced += n
        else:
            total += price * n
    return {"total": float(round(total, 4)), "moneda": card.currency, "sin_tarifa": unpriced}


def estimate(card: RateCard, recipients_by_code: Mapping[str | None, int], category: str) -> dict:
    """What sending a template of `category` to these recipients (per calling code) would cost.

    Returns {total, moneda, categoria, por_pais: [{codigo_pais, destinatarios, precio, subtotal}], sin_tarifa}.
    """
    total = Decimal(0)
    rows, unpriced = [], {}
    for code, n in sorted(recipients_by_code.items(), key=lambda item: (-item[1], item[0] or "")):
        price = card.price(category, code)
        if price is None:
            unpriced[code or "?"] = n
            continue
        total += price * n
        rows.append(
            {"codigo_pais": code, "destinatarios": n, "precio": float(price), "subtotal": float(round(price * n, 4))}
        )
    return {
        "total": float(round(total, 4)),
        "moneda": card.currency,
        "categoria": category,
        "por_pais": rows,
        "sin_tarifa": unpriced,
    }
