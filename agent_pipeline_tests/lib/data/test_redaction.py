"""Personal data is replaced before storage; near-misses (ids, dates, amounts) stay as written."""

import pytest

from agent_pipeline.lib.data.redaction import iban_ok, luhn_ok, redact, redact_counts

# (text, expected after redaction)
PERSONAL = [
    ("mail me at jo.doe+news@mail.example.co.uk.", "mail me at [EMAIL]."),
    ("ANNA_B@Example.COM wrote", "[EMAIL] wrote"),
    ("call +1 415-555-2671 today", "call [PHONE] today"),
    ("my number is (415) 555-2671", "my number is [PHONE]"),
    ("ring 415.555.2671 after six", "ring [PHONE] after six"),
    ("my phone is 4155552671", "my phone is [PHONE]"),
    ("office +44 20 7946 0958 please", "office [PHONE] please"),
    ("card 4111 1111 1111 1111 exp 12/25", "card [CARD] exp 12/25"),
    ("pay with 4111-1111-1111-1111", "pay with [CARD]"),
    ("mastercard 5500005555555559 thanks", "mastercard [CARD] thanks"),
    ("amex 3782 822463 10005", "amex [CARD]"),
    ("iban DE89 3704 0044 0532 0130 00 pls", "iban [IBAN] pls"),
    ("send to GB82WEST12345698765432.", "send to [IBAN]."),
    ("FR14 2004 1010 0505 0001 3M02 606", "[IBAN]"),
    ("nl91abna0417164300", "[IBAN]"),
    ("my ssn is 123-45-6789", "my ssn is [SSN]"),
    ("server 192.168.1.20 is down", "server [IP] is down"),
    ("from 8.8.8.8, to jo@x.io", "from [IP], to [EMAIL]"),
]

NEAR_MISSES = [
    "where is order 4155552671",
    "order #4155552671 has not arrived",
    "invoice no. 4111111111111111",  # an id word before it: still a valid Luhn number -> see below
    "order number 1234567890123456",
    "tracking 1Z999AA10123456784",
    "flight UA 1234 on 2024-03-15",
    "book flight BA2490 at 10:30",
    "it costs $1,234.56 or 1.234,56 EUR",
    "pay 12.50 on 03/15/2024",
    "zip 94103 and 10001",
    "version 1.2.3 and 1.2.3.4.5",
    "ssn-like 000-12-3456 and 666-12-3456 and 923-45-6789",
    "DE89 3704 0044 0532 0130 01",  # IBAN with a wrong check digit
    "4111 1111 1111 1112",  # fails Luhn
    "1234 5678 9012 3456",  # no card network starts with 1
    "set a timer for 20 minutes at 7:45",
    "convert 300 grams to ounces",
    "the meeting is 2025-11-25T10:00:00Z",
    "what is 1234567 times 89",
    "an email-like thing: user at example dot com",
]


@pytest.mark.parametrize("text,expected", PERSONAL)
def test_personal_data_is_replaced(text, expected):
    assert redact(text) == expected


@pytest.mark.parametrize("text", [t for t in NEAR_MISSES if not t.startswith("invoice")])
def test_near_misses_stay(text):
    assert redact(text) == text


def test_a_card_number_is_redacted_even_after_an_id_word():
    # Cards are checked by network prefix and Luhn, not by context: a card is personal data
    # wherever it appears. Only bare phone-like digit runs defer to an id word before them.
    assert redact("invoice no. 4111111111111111") == "invoice no. [CARD]"


def test_counts_by_kind():
    text, counts = redact_counts("a@b.io, b@c.io, 4111111111111111, +1 415 555 2671")
    assert counts == {"email": 2, "card": 1, "phone": 1}
    assert "@" not in text and "4111" not in text and "2671" not in text


def test_checks():
    assert luhn_ok("79927398713") and not luhn_ok("79927398710")
    assert iban_ok("GB82 WEST 1234 5698 7654 32") and not iban_ok("GB82 WEST 1234 5698 7654 33")
    assert not iban_ok("XX82WEST12345698765432")


def test_empty_and_non_text():
    assert redact("") == ""
    assert redact("no digits at all") == "no digits at all"
    with pytest.raises(TypeError):
        redact(None)


def test_redaction_is_idempotent():
    # The server redacts before it writes landing files and ingestion redacts again.
    for text, expected in PERSONAL:
        assert redact(expected) == expected == redact(redact(text))
