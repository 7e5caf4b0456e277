"""Personal data out of request texts before anything stores them.

``redact(text)`` replaces every detected item by a typed placeholder (``[EMAIL]``, ``[PHONE]``,
``[CARD]``, ``[IBAN]``, ``[SSN]``, ``[IP]``) and returns the new text; ``redact_counts`` also
says how many of each kind it replaced. The original text is never returned, logged or kept.

Detectors are offline and checked, so ordinary numbers stay:

- ``EMAIL``: ``local@domain.tld`` (RFC 5322's common subset; a dot-separated domain with a
  2-63 letter top-level label).
- ``IBAN``: two letters, two check digits and 11-30 letters/digits (spaces every 4 allowed),
  the length the country's IBAN format has, and the ISO 13616 mod-97 check.
- ``CARD``: 13-19 digits (single spaces or dashes between groups) with a card network's
  prefix (Visa, Mastercard, Amex, Discover, JCB, Diners, UnionPay, Maestro) and the Luhn check.
- ``SSN``: US social security numbers written ``AAA-GG-SSSS`` with the SSA's excluded ranges
  (area 000, 666, 900-999; group 00; serial 0000) left alone.
- ``IP``: IPv4 dotted quads with every octet 0-255 (no leading zeros), not part of a longer
  dotted run (so version strings ``1.2.3`` and ``1.2.3.4.5`` stay).
- ``PHONE``: ``phonenumbers.PhoneNumberMatcher`` at ``Leniency.VALID`` (a number valid for its
  region's numbering plan), default region ``US`` for numbers without ``+``. A bare digit run
  (no ``+``, spaces, dashes, dots or brackets) right after an identifier word (order, invoice,
  ticket, booking, flight, ...) or ``#`` is an identifier, not a phone, and stays.

Order numbers, dates, times, amounts, flight numbers and version strings stay (the tests in
``agent_pipeline_tests/lib/data/test_redaction.py`` hold a corpus of both kinds).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable

import phonenumbers

PLACEHOLDERS = {
    "email": "[EMAIL]",
    "iban": "[IBAN]",
    "card": "[CARD]",
    "ssn": "[SSN]",
    "ip": "[IP]",
    "phone": "[PHONE]",
}

DEFAULT_REGION = "US"

_EMAIL = re.compile(
    r"(?<![\w.+-])[A-Za-z0-9](?:[A-Za-z0-9._%+-]{0,63})@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}(?![\w-])"
)

# IBAN lengths by country (ISO 13616 registry, SWIFT release 2024).
_IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BI": 27, "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27,
    "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27,
    "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22,
    "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32,
    "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19,
    "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18, "NO": 15, "OM": 23, "PK": 24,
    "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33, "SA": 24, "SC": 31,
    "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25, "SV": 28, "TL": 23,
    "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}  # fmt: skip
_IBAN = re.compile(r"(?<![A-Za-z0-9])([A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,31})(?![A-Za-z0-9])", re.IGNORECASE)

_DIGIT_RUN = re.compile(r"(?<![\w.,-])\d+(?:[ -]\d+)*(?![\w-]|[.,]\d)")
_SSN = re.compile(r"(?<![\d-])(\d{3})-(\d{2})-(\d{4})(?![\d-])")
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_IPV4 = re.compile(rf"(?<![\d.])(?:{_OCTET}\.){{3}}{_OCTET}(?![\d]|\.\d)")

_ID_WORDS = (
    "order|orders|invoice|ticket|booking|confirmation|reservation|reference|ref|tracking|"
    "parcel|package|shipment|case|flight|transaction|receipt|item|sku|serial|policy|claim|no|nr"
)
_ID_BEFORE = re.compile(rf"(?:\b(?:{_ID_WORDS})\b\.?|#)\s*(?:(?:number|num|id|no)\.?\s*)?[:#]?\s*$", re.IGNORECASE)


def luhn_ok(digits: str) -> bool:
    """The Luhn (mod 10) check over a string of digits."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def iban_ok(candidate: str) -> bool:
    """An IBAN (spaces ignored): known country, that country's length, ISO 13616 mod-97 check."""
    s = candidate.replace(" ", "").upper()
    if _IBAN_LENGTHS.get(s[:2]) != len(s) or not s[2:4].isdigit():
        return False
    moved = s[4:] + s[:4]
    num = "".join(str(int(c, 36)) for c in moved)
    return int(num) % 97 == 1


def _ibans(text: str, counts: Counter) -> str:
    """IBANs, compact or in groups of four; the country's length decides where one ends."""

    def repl(m: re.Match) -> str:
        raw = m.group(1)
        want = _IBAN_LENGTHS.get(raw[:2].upper())
        if want is None:
            return raw
        n = 0
        for end, ch in enumerate(raw, start=1):
            if ch != " ":
                n += 1
            if n == want:
                rest = raw[end:]
                if (not rest or rest[0] == " ") and iban_ok(raw[:end]):
                    counts["iban"] += 1
                    return PLACEHOLDERS["iban"] + rest
                break
        return raw

    return _IBAN.sub(repl, text)


def _card_network(digits: str) -> bool:
    """True when the digits carry a card network's issuer prefix and a length it issues."""
    n, p2, p3, p4, p6 = len(digits), int(digits[:2]), int(digits[:3]), int(digits[:4]), int(digits[:6])
    if digits[0] == "4":  # Visa
        return n in (13, 16, 19)
    if 51 <= p2 <= 55 or 2221 <= p4 <= 2720:  # Mastercard
        return n == 16
    if p2 in (34, 37):  # American Express
        return n == 15
    if p4 == 6011 or p2 == 65 or 644 <= p3 <= 649 or 622126 <= p6 <= 622925:  # Discover
        return 16 <= n <= 19
    if 3528 <= p4 <= 3589:  # JCB
        return 16 <= n <= 19
    if 300 <= p3 <= 305 or p2 in (36, 38, 39) or p4 == 3095:  # Diners Club
        return 14 <= n <= 19
    if p2 == 62:  # UnionPay
        return 16 <= n <= 19
    if p2 in (50, 56, 57, 58) or p2 == 67 or p2 == 63:  # Maestro
        return 12 <= n <= 19
    return False


def _ssn_ok(m: re.Match) -> bool:
    area, group, serial = m.group(1), m.group(2), m.group(3)
    return area != "000" and area != "666" and area[0] != "9" and group != "00" and serial != "0000"


def _sub(pattern: re.Pattern, kind: str, accept: Callable[[re.Match], bool], text: str, counts: Counter) -> str:
    def repl(m: re.Match) -> str:
        if accept(m):
            counts[kind] += 1
            return PLACEHOLDERS[kind]
        return m.group(0)

    return pattern.sub(repl, text)


def _phones(text: str, region: str, counts: Counter) -> str:
    out, last = [], 0
    for m in phonenumbers.PhoneNumberMatcher(text, region, leniency=phonenumbers.Leniency.VALID):
        raw = m.raw_string
        if raw.isdigit() and _ID_BEFORE.search(text[max(0, m.start - 40) : m.start]):
            continue  # "order 4155552671": an identifier that happens to be a valid phone number
        out.append(text[last : m.start])
        out.append(PLACEHOLDERS["phone"])
        counts["phone"] += 1
        last = m.end
    if not out:
        return text
    out.append(text[last:])
    return "".join(out)


def redact_counts(text: str, *, region: str = DEFAULT_REGION) -> tuple[str, dict[str, int]]:
    """``text`` with personal data replaced by placeholders, and how many of each kind."""
    if not isinstance(text, str):
        raise TypeError(f"redact expects a str, got {type(text).__name__}")
    counts: Counter = Counter()
    if not text:
        return text, {}
    out = _sub(_EMAIL, "email", lambda m: True, text, counts)
    out = _ibans(out, counts)
    out = _cards(out, counts)
    out = _sub(_SSN, "ssn", _ssn_ok, out, counts)
    out = _sub(_IPV4, "ip", lambda m: True, out, counts)
    if any(ch.isdigit() for ch in out):
        out = _phones(out, region, counts)
    return out, dict(counts)


def _cards(text: str, counts: Counter) -> str:
    """Card numbers inside runs of digit groups (``4111 1111 1111 1111 12/25`` keeps ``12/25``)."""

    def repl(m: re.Match) -> str:
        groups = re.split(r"([ -])", m.group(0))  # digits, sep, digits, ...
        nums, seps = groups[0::2], groups[1::2]
        out, i = [], 0
        while i < len(nums):
            hit = None
            for j in range(len(nums), i, -1):  # longest run of groups first
                digits = "".join(nums[i:j])
                if 13 <= len(digits) <= 19 and _card_network(digits) and luhn_ok(digits):
                    hit = j
                    break
            if hit is None:
                out.append(nums[i])
                i += 1
            else:
                out.append(PLACEHOLDERS["card"])
                counts["card"] += 1
                i = hit
            if i < len(nums):
                out.append(seps[i - 1])
        return "".join(out)

    return _DIGIT_RUN.sub(repl, text)


def redact(text: str, *, region: str = DEFAULT_REGION) -> str:
    """``text`` with emails, phone numbers, card numbers, IBANs, US SSNs and IPv4 addresses replaced."""
    return redact_counts(text, region=region)[0]
