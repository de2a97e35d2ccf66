"""PII detection and redaction: true positives per kind and language, true negatives, overlaps, logging."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest
from django.conf import settings
from pythonjsonlogger.json import JsonFormatter

from apps.security import pii
from apps.security.pii import PiiKind, PiiMatch, PiiRedactingFilter, detect, redact, redact_with

# Full-width forms, written as escapes because they look like ASCII in an editor.
FULLWIDTH = str.maketrans("0123456789-", "\uff10\uff11\uff12\uff13\uff14\uff15\uff16\uff17\uff18\uff19\uff0d")


def kinds_of(text: str) -> list[tuple[PiiKind, str, str]]:
    return [(m.kind, m.text, m.detail) for m in detect(text)]


# --- E-mail ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Contact: jane.doe+shop@example.co.uk.", "Contact: [EMAIL]."),
        ("Schreib mir an max.mustermann@beispiel.de, danke!", "Schreib mir an [EMAIL], danke!"),
        ("Mon e-mail : marie-claire_2@exemple.fr (perso)", "Mon e-mail : [EMAIL] (perso)"),
        (
            "Mi correo es JUAN@EMPRESA.ES y el de Ana ana@empresa.es",
            "Mi correo es [EMAIL] y el de Ana [EMAIL]",
        ),
        ("メールはtaro_yamada@example.jpです", "メールは[EMAIL]です"),
        ("<a href='mailto:x@sub.example.org'>", "<a href='mailto:[EMAIL]'>"),
    ],
)
def test_email_positives(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize(
    "text", ["npm i left-pad@1.3.0", "ping @channel", "root@localhost", "a @ b.com", "x@y", "email me at"]
)
def test_email_negatives(text: str) -> None:
    assert detect(text, kinds=[PiiKind.EMAIL]) == []


# --- Phone numbers -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "number",
    [
        "+49 30 1234567",
        "+49 (0)30 1234567",
        "+4915112345678",
        "+1 (415) 555-2671",
        "+33 6 12 34 56 78",
        "+44 20 7946 0958",
        "+81 90-1234-5678",
        "+34 612 34 56 78",
        "0049 30 1234567",
        "030 1234567",
        "(030) 1234567",
        "030/1234567",
        "0171-1234567",
        "06 12 34 56 78",
        "06.12.34.56.78",
        "0612345678",
        "090-1234-5678",
        "020 7946 0958",
        "415-555-2671",
        "(415) 555-2671",
        "415.555.2671",
    ],
)
def test_phone_formats(number: str) -> None:
    assert redact(f"Tel. {number}, danke") == "Tel. [PHONE], danke"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Ruf mich unter 0171 1234567 an.", "Ruf mich unter [PHONE] an."),
        ("Appelez-moi au 06 12 34 56 78 svp", "Appelez-moi au [PHONE] svp"),
        ("Mi móvil es +34 612 34 56 78.", "Mi móvil es [PHONE]."),
        ("電話は090-1234-5678までお願いします", "電話は[PHONE]までお願いします"),
        ("電話は" + "090-1234-5678".translate(FULLWIDTH) + "です", "電話は[PHONE]です"),
        ("電話は090\u30fc1234\u30fc5678です", "電話は[PHONE]です"),
        ("Rufen Sie +49 30 1234567 2024-05-01 an", "Rufen Sie [PHONE] 2024-05-01 an"),
    ],
)
def test_phone_in_context(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_fullwidth_match_keeps_original_text_and_offsets() -> None:
    text = "電話は" + "090-1234-5678".translate(FULLWIDTH) + "です"
    [match] = detect(text)
    assert (match.kind, match.start, match.end) == (PiiKind.PHONE, 3, 16)
    assert match.text == text[3:16] == "090-1234-5678".translate(FULLWIDTH)


# True negatives for every kind: the numbers chat and logs are full of.
NOT_PII = [
    "Lieferung am 2024-05-01",
    "Termin 01.05.2024 14:30",
    "am 2024-05-01 10:30 Uhr",
    "ts=2024-05-01T10:30:00+02:00",
    "um 14:30 oder 9:15",
    "Preis 1,299.00 €",
    "Preis 1.299,00 €",
    "prix 1 299,00 €",
    "Bestellung SO-100234 ist unterwegs",
    "order #0012345678",
    "order 100234567",
    "invoice 00123456789",
    "app version 10.2.3",
    "host 192.168.100.200",
    "UPS 1Z999AA10123456784",
    "USPS 9400 1000 0000 0000 0000 00",
    "ISBN 978-3-16-148410-0",
    "call 112 or 110",
    "epoch 1714557600",
    "1+1=2 and +1 day",
    "2 55 08 14 168 025 39",
]


@pytest.mark.parametrize("text", NOT_PII)
def test_common_numbers_are_not_pii(text: str) -> None:
    assert detect(text) == []
    assert redact(text) == text


# --- Payment cards -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("number", "brand"),
    [
        ("4242 4242 4242 4242", "visa"),
        ("4111-1111-1111-1111", "visa"),
        ("4222222222222", "visa"),
        ("5555555555554444", "mastercard"),
        ("2223 0031 2200 3222", "mastercard"),
        ("3782 822463 10005", "amex"),
        ("6011 1111 1111 1117", "discover"),
        ("3530 1113 3330 0000", "jcb"),
        ("3622 720627 1667", "diners"),
        ("6200 0000 0000 0005", "unionpay"),
    ],
)
def test_card_brands(number: str, brand: str) -> None:
    assert kinds_of(f"Karte: {number}.") == [(PiiKind.CARD, number, brand)]


@pytest.mark.parametrize(
    "text",
    [
        "4242 4242 4242 4241",  # Luhn fails
        "9999 9999 9999 9995",  # Luhn passes, no scheme issues 99...
        "55555555555544441",  # 17 digits: no Mastercard has 17
        "ref SO-4242424242424242",  # part of an identifier
    ],
)
def test_card_negatives(text: str) -> None:
    assert detect(text, kinds=["card"]) == []


def test_card_followed_by_expiry_and_in_languages() -> None:
    assert redact("Meine Karte 4242 4242 4242 4242 12 25 wurde belastet") == (
        "Meine Karte [CARD] 12 25 wurde belastet"
    )
    assert redact("カード番号は4242424242424242です", style="mask") == "カード番号は[CARD •••• 4242]です"
    assert redact("tarjeta 3782 822463 10005, caduca 05/27", style="mask") == (
        "tarjeta [CARD •••• 0005], caduca 05/27"
    )


# --- IBAN --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("iban", "country"),
    [
        ("DE89 3704 0044 0532 0130 00", "DE"),
        ("DE89370400440532013000", "DE"),
        ("GB29 NWBK 6016 1331 9268 19", "GB"),
        ("FR14 2004 1010 0505 0001 3M02 606", "FR"),
        ("ES9121000418450200051332", "ES"),
        ("IT60 X054 2811 1010 0000 0123 456", "IT"),
        ("NL91ABNA0417164300", "NL"),
        ("CH93 0076 2011 6238 5295 7", "CH"),
        ("BE68 5390 0754 7034", "BE"),
        ("AT61 1904 3002 3457 3201", "AT"),
        ("NO93 8601 1117 947", "NO"),
        ("PL61 1090 1014 0000 0712 1981 2874", "PL"),
    ],
)
def test_iban_countries(iban: str, country: str) -> None:
    assert kinds_of(f"IBAN: {iban} BIC XYZ") == [(PiiKind.IBAN, iban, country)]


@pytest.mark.parametrize(
    "text",
    [
        "DE89 3704 0044 0532 0130 01",  # mod-97 fails
        "DE89370400440532013000123",  # longer than a German IBAN
        "XX89370400440532013000",  # no such country
        "DE00370400440532013000",  # check digits 00 never occur
    ],
)
def test_iban_negatives(text: str) -> None:
    assert detect(text, kinds=["iban"]) == []


def test_iban_in_sentences_and_mask() -> None:
    assert redact("Bitte an DE89 3704 0044 0532 0130 00 überweisen.", style="mask") == (
        "Bitte an [IBAN •••• 3000] überweisen."
    )
    assert redact("Mon IBAN : FR1420041010050500013M02606.") == "Mon IBAN : [IBAN]."
    assert redact("口座はGB29NWBK60161331926819です", style="mask") == "口座は[IBAN •••• 6819]です"


# --- National identifiers ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "value", "scheme"),
    [
        ("SSN 536-22-1234 on file", "536-22-1234", "us_ssn"),
        ("SSN 536 22 1234 on file", "536 22 1234", "us_ssn"),
        ("my SSN is 536221234", "536221234", "us_ssn"),
        ("NI number AB 12 34 56 C", "AB 12 34 56 C", "uk_nino"),
        ("NINO: AB123456C", "AB123456C", "uk_nino"),
        ("Steuer-ID 86095742719 liegt vor", "86095742719", "de_steuer_id"),
        ("Steuer-ID 86 095 742 719 liegt vor", "86 095 742 719", "de_steuer_id"),
        ("NIR : 2 55 08 14 168 025 38", "2 55 08 14 168 025 38", "fr_nir"),
        ("NIR : 255081416802538", "255081416802538", "fr_nir"),
        ("né en Corse : 1 85 02 2A 004 017 17", "1 85 02 2A 004 017 17", "fr_nir"),
        ("DNI 12345678Z", "12345678Z", "es_dni"),
        ("DNI: 12345678-Z.", "12345678-Z", "es_dni"),
        ("NIE X1234567L", "X1234567L", "es_nie"),
        ("NIE Y-1234567-X", "Y-1234567-X", "es_nie"),
        ("codice fiscale RSSMRA85T10A562S", "RSSMRA85T10A562S", "it_codice_fiscale"),
        ("BSN: 111222333", "111222333", "nl_bsn"),
        ("mijn burgerservicenummer is 123456782", "123456782", "nl_bsn"),
        ("マイナンバーではなくSSN 536-22-1234です", "536-22-1234", "us_ssn"),
    ],
)
def test_national_ids(text: str, value: str, scheme: str) -> None:
    assert kinds_of(text) == [(PiiKind.NATIONAL_ID, value, scheme)]


@pytest.mark.parametrize(
    "text",
    [
        "000-12-3456",  # SSN area 000
        "666-12-3456",  # SSN area 666
        "912-34-5678",  # SSN area 9xx
        "123-00-4567",  # SSN group 00
        "123-45-0000",  # SSN serial 0000
        "536-22 1234",  # mixed separators
        "ref 536221234",  # 9 digits without an SSN/BSN label
        "QQ123456C",  # QQ is never issued
        "GB123456A",  # GB is never issued
        "AB123456E",  # suffix beyond D
        "AB 12 3456 C",  # mixed spacing
        "Steuer-ID 86095742718",  # check digit
        "Steuer-ID 11111111111",  # digit distribution
        "2 55 08 14 168 025 39",  # NIR key
        "12345678A",  # DNI letter
        "X1234567T",  # NIE letter
        "RSSMRA85T10A562T",  # codice fiscale check character
        "BSN 111222334",  # 11-proof
        "BSN 111222333 en order 123456782",  # the label covers only the number right after it
    ],
)
def test_national_id_negatives(text: str) -> None:
    matches = detect(text, kinds=["national_id"])
    assert [m.text for m in matches] == (["111222333"] if text.startswith("BSN 111222333") else [])


# --- Overlaps, API -----------------------------------------------------------------------------------------
def test_longest_match_wins_on_overlap() -> None:
    text = "Karte +4242 4242 4242 4242"
    assert [m.text for m in detect(text, kinds=["phone"])] == ["+4242 4242 4242"]
    assert kinds_of(text) == [(PiiKind.CARD, "4242 4242 4242 4242", "visa")]


def test_more_specific_kind_wins_on_equal_length() -> None:
    phone = PiiMatch(PiiKind.PHONE, 0, 10, "x" * 10)
    national_id = PiiMatch(PiiKind.NATIONAL_ID, 0, 10, "x" * 10)
    email = PiiMatch(PiiKind.EMAIL, 12, 20, "x" * 8)
    assert pii._resolve([phone, email, national_id]) == [national_id, email]


def test_iban_is_not_split_into_phone_numbers() -> None:
    assert kinds_of("IBAN DE89 3704 0044 0532 0130 00") == [
        (PiiKind.IBAN, "DE89 3704 0044 0532 0130 00", "DE")
    ]


def test_email_wins_over_digits_inside_it() -> None:
    assert kinds_of("mail 0301234567.4242424242424242@example.com") == [
        (PiiKind.EMAIL, "0301234567.4242424242424242@example.com", "")
    ]


def test_detect_returns_sorted_non_overlapping_typed_matches() -> None:
    text = "Jane (jane@example.com, +49 30 1234567) zahlt mit 4242 4242 4242 4242 von DE89370400440532013000."
    matches = detect(text)
    assert matches == [
        PiiMatch(PiiKind.EMAIL, 6, 22, "jane@example.com", ""),
        PiiMatch(PiiKind.PHONE, 24, 38, "+49 30 1234567", ""),
        PiiMatch(PiiKind.CARD, 50, 69, "4242 4242 4242 4242", "visa"),
        PiiMatch(PiiKind.IBAN, 74, 96, "DE89370400440532013000", "DE"),
    ]
    assert all(text[m.start : m.end] == m.text for m in matches)
    assert redact(text) == "Jane ([EMAIL], [PHONE]) zahlt mit [CARD] von [IBAN]."
    assert redact(text, style="mask") == (
        "Jane ([EMAIL], [PHONE]) zahlt mit [CARD •••• 4242] von [IBAN •••• 3000]."
    )
    assert redact(text, kinds=[PiiKind.CARD, "iban"]) == (
        "Jane (jane@example.com, +49 30 1234567) zahlt mit [CARD] von [IBAN]."
    )


def test_national_id_label_and_mask_are_the_same() -> None:
    assert redact("SSN 536-22-1234", style="mask") == "SSN [NATIONAL_ID]"
    assert redact("SSN 536-22-1234") == "SSN [NATIONAL_ID]"


def test_repr_never_shows_the_value() -> None:
    [match] = detect("jane@example.com")
    assert "jane" not in repr(match)
    assert repr(match) == "PiiMatch(kind=<PiiKind.EMAIL: 'email'>, start=0, end=16, detail='')"


def test_unknown_style_or_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown redaction style"):
        redact("x", style="blur")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="'passport'"):
        detect("jane@example.com", kinds=["passport"])


def test_text_without_pii_is_returned_unchanged() -> None:
    text = "Hallo, wie geht's? 10 Stück à 3,50 €"
    assert redact(text) is text
    assert detect("") == []


def test_redact_with_reversible_tokens() -> None:
    vault: dict[str, str] = {}

    def tokenize(match: PiiMatch) -> str:
        token = f"<{match.kind.value}:{len(vault) + 1}>"
        vault[token] = match.text
        return token

    text = "Ruf +33 6 12 34 56 78 an oder schreib an marie@example.fr"
    redacted = redact_with(text, tokenize)
    assert redacted == "Ruf <phone:1> an oder schreib an <email:2>"
    assert vault == {"<phone:1>": "+33 6 12 34 56 78", "<email:2>": "marie@example.fr"}
    restored = redacted
    for token, value in vault.items():
        restored = restored.replace(token, value)
    assert restored == text
    assert (
        redact_with(text, tokenize, kinds=["email"]) == "Ruf +33 6 12 34 56 78 an oder schreib an <email:3>"
    )


ALL_SAMPLES = [
    *NOT_PII,
    "Jane (jane@example.com, +49 30 1234567) zahlt mit 4242 4242 4242 4242 von DE89370400440532013000.",
    "IBAN DE89 3704 0044 0532 0130 00 BIC COBADEFFXXX, MT84 MALT 0110 0001 2345 MTLC AST0 01S",
    "codice fiscale RSSMRA85T10A562S, NIE Y-1234567-X, NI AB 12 34 56 C, BSN: 111222333",
    "電話は" + "090-1234-5678".translate(FULLWIDTH) + "、カードは4242 4242 4242 4242 12 25です",
]


@pytest.mark.parametrize("text", ALL_SAMPLES)
def test_prechecks_do_not_change_results(text: str) -> None:
    """The fast path (digit clusters, windows) finds exactly what whole-text scans find."""
    fast = pii._resolve(pii._scan(text, frozenset(PiiKind)))
    full = pii._resolve(pii._scan(text, frozenset(PiiKind), precheck=False))
    assert fast == full


# --- Logging -----------------------------------------------------------------------------------------------
class ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def pii_logger() -> Iterator[tuple[logging.Logger, ListHandler]]:
    logger = logging.getLogger("tests.security.pii")
    handler = ListHandler()
    handler.addFilter(PiiRedactingFilter())
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    yield logger, handler
    logger.removeHandler(handler)
    logger.propagate = True


def test_filter_redacts_message_args_and_extras(pii_logger: tuple[logging.Logger, ListHandler]) -> None:
    logger, handler = pii_logger
    logger.info(
        "lead %s called from %s",
        "jane@example.com",
        "+49 30 1234567",
        extra={"customer": "IBAN DE89370400440532013000", "attempts": 3, "note": "nothing here"},
    )
    [record] = handler.records
    assert record.getMessage() == "lead [EMAIL] called from [PHONE]"
    assert record.customer == "IBAN [IBAN]"  # type: ignore[attr-defined]
    assert record.attempts == 3  # type: ignore[attr-defined]
    assert record.note == "nothing here"  # type: ignore[attr-defined]


def test_filter_survives_bad_format_args(pii_logger: tuple[logging.Logger, ListHandler]) -> None:
    logger, handler = pii_logger
    logger.info("total %d for %s", "jane@example.com")
    [record] = handler.records
    assert record.getMessage() == "total %d for %s (args: ('[EMAIL]',))"


def test_filter_redacts_tracebacks_and_dict_messages(pii_logger: tuple[logging.Logger, ListHandler]) -> None:
    logger, handler = pii_logger
    try:
        raise ValueError("no account for jane@example.com")
    except ValueError:
        logger.exception("lookup failed")
    logger.info({"event": "signup", "email": "jane@example.com", "count": 1})
    tb_record, dict_record = handler.records
    assert tb_record.exc_info is None
    assert tb_record.exc_text is not None
    assert tb_record.exc_text.endswith("ValueError: no account for [EMAIL]")
    assert dict_record.msg == {"event": "signup", "email": "[EMAIL]", "count": 1}


def test_json_log_line_carries_no_pii(pii_logger: tuple[logging.Logger, ListHandler]) -> None:
    logger, _ = pii_logger
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("%(levelname)s %(message)s"))
    handler.addFilter(PiiRedactingFilter())
    logger.addHandler(handler)
    try:
        try:
            raise KeyError("4242 4242 4242 4242")
        except KeyError:
            logger.exception("card %s rejected", "4242424242424242", extra={"payer": "jane@example.com"})
    finally:
        logger.removeHandler(handler)
    line = stream.getvalue()
    assert "4242" not in line
    assert "jane" not in line
    assert '"message": "card [CARD] rejected"' in line
    assert '"payer": "[EMAIL]"' in line


def test_settings_wire_the_filter_into_the_console_handler() -> None:
    assert settings.LOGGING["filters"]["pii"] == {"()": "apps.security.pii.PiiRedactingFilter"}
    assert "pii" in settings.LOGGING["handlers"]["console"]["filters"]
