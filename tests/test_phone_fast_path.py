"""The precompiled fast path for phone numbers never decides differently from the full phonenumbers parse."""

from __future__ import annotations

import random

import phonenumbers
import pytest

from webapi.contacts import InvalidPhone, phones

# VE is the product's default; the others cover one-region codes the shortcut serves (CO, PE, MX, ES, DE,
# CL, AR) and shared or tricky codes it must leave to the library (US/CA share +1, IT keeps leading zeros,
# GB shares +44 with the Crown dependencies, BR has a carrier-code prefix rule).
REGIONS = ["VE", "CO", "PE", "MX", "ES", "DE", "CL", "AR", "US", "IT", "GB", "BR"]
# 12 regions x 4,500 cells: 54,000 cells in all.
SAMPLES_PER_REGION = 4_500


def _outcome(normalize, raw: str, region: str) -> tuple[str, str]:
    """("ok", E.164 digits) or ("rejected", the operator's reason)."""
    try:
        return "ok", normalize(raw, region)
    except InvalidPhone as exc:
        return "rejected", exc.reason


def _slow(raw: str, region: str) -> str:
    """The same cell through the full phonenumbers parse only."""
    digits, international = phones.phone_digits(raw)
    return phones.parse_phone(digits, international, region)


def _national_numbers(region: str) -> list[str]:
    """The library's example numbers of every type for the region, as national significant numbers."""
    numbers = []
    for kind in phonenumbers.PhoneNumberType.values():
        example = phonenumbers.example_number_for_type(region, kind)
        if example is not None:
            numbers.append(phonenumbers.national_significant_number(example))
    return numbers


def _spell(cc: str, trunk: str, nsn: str, rng: random.Random) -> str:
    """Write one national number the way an operator's spreadsheet might."""
    grouped = " ".join(nsn[i : i + rng.choice([2, 3, 4])] for i in range(0, len(nsn), 3))
    shape = rng.randrange(14)
    if shape == 0:
        return "+" + cc + nsn
    if shape == 1:
        return cc + nsn
    if shape == 2:
        return trunk + nsn
    if shape == 3:
        return nsn
    if shape == 4:
        return f"+{cc} {grouped}"
    if shape == 5:
        return f"({trunk}{nsn[:3]}) {nsn[3:6]}-{nsn[6:]}"
    if shape == 6:
        return f"00{cc}{nsn}"
    if shape == 7:
        return f"{cc}-{nsn[:3]}-{nsn[3:]}"
    if shape == 8:
        digits = cc + nsn
        mantissa = f"{digits[0]}{rng.choice('.,')}{digits[1 : rng.randrange(2, len(digits) + 1)]}"
        return f"{mantissa}E+{len(digits) - 1}"
    if shape == 9:
        return "0" * rng.randrange(1, 4) + nsn
    if shape == 10:
        return "'" + trunk + nsn
    if shape == 11:
        return cc + trunk + nsn
    if shape == 12:
        return f"+{cc}.{nsn[:3]}.{nsn[3:]}"
    return "".join(rng.choice("0123456789") for _ in range(rng.randrange(5, 16)))


def _corpus(region: str, rng: random.Random) -> list[str]:
    """Valid, nearly valid and invalid cells built around the region's example numbers."""
    cc = str(phonenumbers.country_code_for_region(region))
    trunk = phonenumbers.PhoneMetadata.metadata_for_region(region).national_prefix or "0"
    bases = _national_numbers(region)
    cells = []
    for _ in range(SAMPLES_PER_REGION):
        nsn = rng.choice(bases)
        # Keep a prefix of the example (so the number stays in a real range) and randomise the rest;
        # sometimes one digit short or long, to probe the length rules.
        keep = rng.randrange(1, len(nsn) + 1)
        extra = rng.choice([-1, 0, 0, 0, 0, 1])
        nsn = nsn[:keep] + "".join(rng.choice("0123456789") for _ in range(max(0, len(nsn) - keep + extra)))
        cells.append(_spell(cc, trunk, nsn, rng))
    return cells


@pytest.mark.parametrize("region", REGIONS)
def test_fast_path_and_full_parse_agree_on_every_cell(region):
    """Same E.164 or the same rejection reason, cell by cell, over thousands of generated cells per region."""
    rng = random.Random(f"phones-{region}")
    rules = phones.region_rules(region)
    fast_hits = accepted = 0
    disagreements = []
    for raw in _corpus(region, rng):
        product = _outcome(phones.normalize_phone, raw, region)
        reference = _outcome(_slow, raw, region)
        accepted += product[0] == "ok"
        if product != reference:
            disagreements.append((raw, product, reference))
        try:
            digits, international = phones.phone_digits(raw)
        except InvalidPhone:
            continue
        fast = rules.fast_normalize(digits, international)
        if fast is not None:
            fast_hits += 1
            number = phonenumbers.parse(("+" if international else "") + digits, region)
            assert phonenumbers.is_valid_number(number), raw
            assert fast == phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)[1:], raw
    assert disagreements == []
    # Both outcomes are well represented, so neither "all accepted" nor "all rejected" passes by accident.
    assert SAMPLES_PER_REGION // 10 < accepted < SAMPLES_PER_REGION * 9 // 10, accepted
    if rules.enabled:
        # The comparison means something only if the shortcut really decided a good share of the cells.
        assert fast_hits > SAMPLES_PER_REGION // 10, fast_hits
