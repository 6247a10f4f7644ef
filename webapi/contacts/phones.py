"""Phone cells to E.164: a precompiled fast path for clean digit strings, phonenumbers for everything else."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from functools import cache
from typing import Any

import phonenumbers
from phonenumbers import NumberParseException, PhoneMetadata, PhoneNumberFormat, ValidationResult

from tasks import texts

# Longest masked value shown to the operator.
_MAX_SHOWN_CHARS = 40

# What people put between digit groups: spaces (also the non-breaking ones spreadsheets use), dots, dashes,
# parentheses. Anything else in a phone cell is reported rather than guessed away.
_DROP_SEPARATORS = str.maketrans("", "", " \t\u00a0\u202f.()-\u2010\u2011\u2012\u2013\u2014\u2015")
# Excel writes long numbers as e.g. 5.84141234567E+11, with "," as decimal mark in Spanish locales.
_SCIENTIFIC = re.compile(r"([0-9]+)(?:[.,]([0-9]+))?[eE]\+?([0-9]{1,2})")


class InvalidPhone(ValueError):
    """A single phone value cannot be used; `reason` is the Spanish explanation for the operator."""

    def __init__(self, reason: str) -> None:
        """Store the reason so callers need not parse the exception text."""
        super().__init__(reason)
        self.reason = reason


class RegionRules:
    """One region's numbering rules, precompiled so clean digit strings can skip the costly full parse."""

    def __init__(self, region: str) -> None:
        """Compile the metadata of `region` and decide whether the shortcut is safe for it."""
        meta = PhoneMetadata.metadata_for_region(region)
        assert meta is not None, f"phonenumbers has no metadata for {region}"  # regions come from its own list
        self.region = region
        self.country_code = str(meta.country_code)
        self.enabled = False
        regions_sharing_code = phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(meta.country_code or 0, ())
        general = meta.general_desc
        # The shortcut mirrors phonenumbers.parse only where parsing is simple: one region per country code
        # (so validity needs no region lookup), no prefix rewriting, and a general pattern with known lengths.
        if (
            len(regions_sharing_code) != 1
            or meta.national_prefix_transform_rule
            or general is None
            or not general.national_number_pattern
            or not general.possible_length
            or any(
                int(self.country_code[:i]) in phonenumbers.COUNTRY_CODE_TO_REGION_CODE
                for i in range(1, len(self.country_code))
            )
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
            meta.premium_rate,
            meta.toll_free,
            meta.shared_cost,
            meta.voip,
            meta.personal_number,
            meta.pager,
            meta.uan,
            meta.voicemail,
            meta.fixed_line,
            meta.mobile,
        ]
        # A number is valid when it matches the general description and at least one number type;
        # grouping the type patterns by length turns that into two regex calls.
        self.type_re_by_length: dict[int, re.Pattern[str]] = {}
        for length in general.possible_length:
            patterns = [
                desc.national_number_pattern
                for desc in type_descs
                if desc is not None
                and desc.national_number_pattern
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
        return type_re is not None and self.general_re.fullmatch(nsn) is not None and type_re.fullmatch(nsn) is not None

    def fast_normalize(self, digits: str, international: bool) -> str | None:
        """Return the E.164 digits when the shortcut can decide with certainty that the number is valid, else None."""
        if not self.enabled:
            return None
        cc = self.country_code
        if international:
            if not digits.startswith(cc):
                return None
            nsn = digits[len(cc) :]
        else:
            if self.idd_re is not None and self.idd_re.match(digits):
                return None
            if digits.startswith(cc):
                # phonenumbers drops a leading country code without "+" only if the whole string is not already
                # a plausible national number, or is too long to be one; anything else takes the slow path.
                too_long = len(digits) > self.max_length and len(digits) not in self.local_lengths
                if self.general_re.fullmatch(digits) is not None and not too_long:
                    return None
                nsn = digits[len(cc) :]
            elif self._strips_prefix(digits):
                if self.literal_prefix is None or not digits.startswith(self.literal_prefix):
                    return None
                nsn = digits[len(self.literal_prefix) :]
            else:
                nsn = digits
        # Leading zeros (Italian style) and a second trunk prefix are rare: let the library handle them.
        if not nsn or nsn[0] == "0" or self._strips_prefix(nsn) or not self.is_valid_nsn(nsn):
            return None
        return cc + nsn


@cache
def region_rules(region: str) -> RegionRules:
    """Build (once per region) the precompiled numbering rules."""
    return RegionRules(region)


def checked_region(default_region: str) -> str:
    """Return the region code in upper case, or raise ValueError when phonenumbers does not know it."""
    region = (default_region or "").strip().upper()
    if region not in phonenumbers.SUPPORTED_REGIONS:
        raise ValueError(texts.UNKNOWN_REGION.format(region=default_region))
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
    lost = InvalidPhone(texts.PHONE_SCIENTIFIC_NOTATION.format())
    if value != value.to_integral_value():
        raise lost
    digits = str(int(value))
    # Excel pads the missing digits with zeros, so the number is exact only if every digit was written out.
    if len((integer + fraction).lstrip("0")) < len(digits):
        raise lost
    return digits


def phone_digits(raw: str) -> tuple[str, bool]:
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
        raise InvalidPhone(texts.PHONE_EMPTY.format())
    expanded = _expand_scientific(text)
    if expanded is not None:
        return expanded
    if any(ch.isalpha() for ch in text):
        raise InvalidPhone(texts.PHONE_HAS_LETTERS.format())
    if not any(ch.isdigit() for ch in text):
        raise InvalidPhone(texts.PHONE_NO_DIGITS.format())
    raise InvalidPhone(texts.PHONE_BAD_CHARACTERS.format())


_PARSE_ERROR_TEXTS = {
    NumberParseException.INVALID_COUNTRY_CODE: texts.PHONE_UNKNOWN_COUNTRY_CODE,
    NumberParseException.TOO_LONG: texts.PHONE_TOO_LONG,
    NumberParseException.TOO_SHORT_NSN: texts.PHONE_TOO_SHORT,
    NumberParseException.TOO_SHORT_AFTER_IDD: texts.PHONE_TOO_SHORT,
}


def parse_phone(digits: str, international: bool, region: str) -> str:
    """Validate with the full phonenumbers parser and return E.164 digits, or raise InvalidPhone."""
    try:
        number = phonenumbers.parse(("+" if international else "") + digits, region)
    except NumberParseException as exc:
        raise InvalidPhone(_PARSE_ERROR_TEXTS.get(exc.error_type, texts.PHONE_NOT_A_NUMBER).format()) from None
    if not phonenumbers.is_valid_number(number):
        possible = phonenumbers.is_possible_number_with_reason(number)
        if possible == ValidationResult.TOO_SHORT:
            hint = texts.PHONE_HINT_MISSING_DIGITS.format()
        elif possible == ValidationResult.TOO_LONG:
            hint = texts.PHONE_HINT_EXTRA_DIGITS.format()
        elif not international:
            hint = texts.PHONE_HINT_FOREIGN.format()
        else:
            hint = ""
        if international:
            number_region = phonenumbers.region_code_for_country_code(number.country_code or 0)
            reason = texts.PHONE_INVALID_FOR_COUNTRY.format(
                country_code=number.country_code, region=number_region, hint=hint
            )
        else:
            reason = texts.PHONE_INVALID_FOR_REGION.format(region=region, hint=hint)
        raise InvalidPhone(reason)
    return phonenumbers.format_number(number, PhoneNumberFormat.E164)[1:]


def normalize_in_region(raw: str, region: str) -> str:
    """Normalize a phone for an already-checked region, trying the precompiled shortcut first."""
    digits, international = phone_digits(raw)
    fast = region_rules(region).fast_normalize(digits, international)
    return fast if fast is not None else parse_phone(digits, international, region)


def normalize_phone(raw: str, default_region: str) -> str:
    """Return the number as E.164 digits without "+" (WhatsApp's `to`), or raise InvalidPhone with the reason."""
    return normalize_in_region(raw, checked_region(default_region))


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
    return masked if len(masked) <= _MAX_SHOWN_CHARS else "…" + masked[-(_MAX_SHOWN_CHARS - 1) :]
