"""Personal data (PII) columns: e-mail addresses, phone numbers, person names, street addresses, national id,
IBAN and card numbers, IP addresses and URLs. Like ids they are not modelled: a repeated real e-mail address
modelled as a category would be copied into the synthetic rows. Each is replaced on decode by realistic fakes
from Faker (https://faker.readthedocs.io), in the locale the real values suggest and, for numbers, in their
formats.

- Detection (`detect_pii`, text columns): by values, when at least `SHARE` of up to `SAMPLE` non-null values
  match a kind's pattern (e-mail, IPv4, URL, IBAN, card numbers passing the Luhn check, international phone
  numbers written with their +country code; other phone numbers and US social security numbers also need the
  column's name to say so, as their patterns fit other codes), or by the column's name with values that look the
  part (person names, street addresses). Text and categorical columns are checked; numbers are not. SDV's PII sdtypes declared in the
  metadata (`email`, `phone_number`, `name`, ...; `PII_SDTYPES`) are honoured, and any other sdtype declared for a
  column overrides detection.
- What is learned (`pii_profile`, from the id statistics' first values): the locale (from the phone numbers'
  country codes or the e-mail addresses' country domains; en_US otherwise) and, for phone, national id and card
  numbers, up to `MAX_MASKS` formats with the digits masked (`+41 ## ### ## ##`): no real digit is kept except a
  phone number's country code, and only formats of digits and punctuation that at least `MIN_MASK_ROWS` values
  share (a note written beside one number is no format); without one, Faker's own numbers.
- Fakes (`fake_values`): seeded by the decode's generator. E-mail addresses are at `example.com`, `.org` or
  `.net` (reserved by RFC 2606: never a real mailbox), numbered so that each is unique, and built from the same
  row's fake name when the table has a name column (`link_names`). Numbers are random digits in a real format, so
  one equals a real number only by chance (about one in 10^digits per value).
"""

from __future__ import annotations

import re
from collections import Counter
from functools import lru_cache

import numpy as np
import pandas as pd

SAMPLE, SHARE, MAX_MASKS, MIN_MASK_ROWS = 1000, 0.9, 5, 5
PII_SDTYPES = ("email", "phone_number", "name", "first_name", "last_name", "address", "street_address", "ssn",
               "iban", "credit_card_number", "ipv4_address", "url")
MASKED = ("phone_number", "ssn", "credit_card_number")  # faked as random digits in the real values' formats

_FORMAT = re.compile(r"(\+\d{1,3})?[#\s().\-/]+")  # a mask of digits and punctuation only
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[A-Za-z]{2,}")
_IPV4 = re.compile(r"((25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(25[0-5]|2[0-4]\d|1?\d?\d)")
_URL = re.compile(r"https?://[^\s]+", re.IGNORECASE)
_IBAN = re.compile(r"[A-Z]{2}\d{2}[A-Z0-9]{11,30}")
_CARD = re.compile(r"\d{13,19}")
_PHONE = re.compile(r"\+?[\d\s().-]{7,24}")
_SSN = re.compile(r"\d{3}-\d{2}-\d{4}")
_PERSON = re.compile(r"[^\W\d_][\w'’.-]*( [^\W\d_][\w'’.-]*){0,3}")
_ADDRESS = re.compile(r"(?=.*\d)(?=.*[^\W\d_]{3}).{6,}")
_NAMES = [("phone_number", r"phone|tel(ephone)?|mobile|fax|cell"), ("ssn", r"ssn|social_?security|national_?id"),
          ("first_name", r"first_?name|given_?name|forename"), ("last_name", r"last_?name|surname|family_?name"),
          ("name", r"(full_?|person_?|customer_?|contact_?|client_?)?name"),
          ("street_address", r"street(_?address)?|address_?line_?1?"), ("address", r"(home_?|postal_?)?address")]
# Country calling codes and country domains of the locales Faker has (a sample of the common ones).
CALLING = {"1": "en_US", "44": "en_GB", "49": "de_DE", "41": "de_CH", "43": "de_AT", "33": "fr_FR", "39": "it_IT",
           "34": "es_ES", "31": "nl_NL", "32": "nl_BE", "46": "sv_SE", "45": "da_DK", "47": "no_NO", "48": "pl_PL",
           "351": "pt_PT", "55": "pt_BR", "61": "en_AU", "91": "en_IN", "81": "ja_JP", "353": "en_IE"}
DOMAINS = {"uk": "en_GB", "de": "de_DE", "ch": "de_CH", "at": "de_AT", "fr": "fr_FR", "it": "it_IT", "es": "es_ES",
           "nl": "nl_NL", "be": "nl_BE", "se": "sv_SE", "dk": "da_DK", "no": "no_NO", "pl": "pl_PL", "pt": "pt_PT",
           "br": "pt_BR", "au": "en_AU", "in": "en_IN", "jp": "ja_JP", "ie": "en_IE"}
DEFAULT_LOCALE = "en_US"
LOCALES = tuple(sorted({DEFAULT_LOCALE, *CALLING.values(), *DOMAINS.values()}))
MAX_MASK = 64  # characters of a kept format; a longer value is not a phone, id or card number
_PERSONS = ("name", "first_name", "last_name")


def _luhn(digits: str) -> bool:
    total = 0
    for k, d in enumerate(reversed(digits)):
        n = int(d) * (2 if k % 2 else 1)
        total += n - 9 if n > 9 else n
    return total % 10 == 0


def _share(values: pd.Series, test) -> float:
    return float(values.map(test).mean()) if len(values) else 0.0


def detect_pii(series: pd.Series) -> str | None:
    """The PII sdtype (one of PII_SDTYPES) of a text column, or None (see the module docstring)."""
    if isinstance(series.dtype, pd.CategoricalDtype):
        series = series.astype(object)
    if not (pd.api.types.is_object_dtype(series) or pd.api.types.is_string_dtype(series)):
        return None
    values = series.dropna().astype(str).str.strip().head(SAMPLE)
    values = values[values != ""]
    if not len(values):
        return None
    name = re.sub(r"[\s-]+", "_", str(series.name).strip().lower())
    # A person's name column is named so exactly ("product_name" is not one); a phone or address may be qualified.
    named = next((kind for kind, pattern in _NAMES
                  if re.fullmatch(pattern if kind in _PERSONS else rf"(.*_)?({pattern})(_.*)?", name)), None)
    compact = values.str.replace(r"[\s-]", "", regex=True)
    tests = [("email", lambda v: bool(_EMAIL.fullmatch(v))), ("ipv4_address", lambda v: bool(_IPV4.fullmatch(v))),
             ("url", lambda v: bool(_URL.fullmatch(v)))]
    for kind, test in tests:
        if _share(values, test) >= SHARE:
            return kind
    if _share(compact, lambda v: bool(_IBAN.fullmatch(v))) >= SHARE:
        return "iban"
    if _share(compact, lambda v: bool(_CARD.fullmatch(v)) and _luhn(v)) >= SHARE:
        return "credit_card_number"
    looks = {"phone_number": lambda v: bool(_PHONE.fullmatch(v)) and sum(c.isdigit() for c in v) >= 7,
             "ssn": lambda v: bool(_SSN.fullmatch(v)), "first_name": lambda v: bool(_PERSON.fullmatch(v)),
             "last_name": lambda v: bool(_PERSON.fullmatch(v)),
             "name": lambda v: bool(_PERSON.fullmatch(v)) and " " in v,
             "street_address": lambda v: bool(_ADDRESS.fullmatch(v)), "address": lambda v: bool(_ADDRESS.fullmatch(v))}
    if named and _share(values, looks[named]) >= SHARE:
        return named
    if _share(values, lambda v: v.startswith("+") and looks["phone_number"](v) and sum(c.isdigit() for c in v) >= 9) >= SHARE:
        return "phone_number"  # international numbers need no name to say so
    return None


def mask(value: str, kind: str) -> str:
    """`value` with its digits as '#', but a phone number's country code (+CC)."""
    code = ""
    if kind == "phone_number" and value.startswith("+"):
        digits = re.match(r"\+(\d{1,3})", value)
        code = next((c for c in sorted(CALLING, key=len, reverse=True) if digits and digits.group(1).startswith(c)), "")
        code = "+" + code if code else ""
    return code + re.sub(r"\d", "#", value[len(code):])


def pii_profile(kind: str, values: list[str]) -> tuple[str, list[str], list[float]]:
    """(locale, masks, their shares) learned from a column's first real `values` (see the module docstring)."""
    locale = DEFAULT_LOCALE
    if kind == "phone_number":
        codes = Counter(m[1:] for m in (mask(v, kind).split("#")[0].strip(" -.(") for v in values) if m.startswith("+"))
        known = [c for c, _ in codes.most_common() if c in CALLING]
        locale = CALLING[known[0]] if known else locale
    elif kind == "email":
        tlds = Counter(v.rsplit(".", 1)[-1].lower() for v in values if "." in v)
        known = [t for t, _ in tlds.most_common() if t in DOMAINS]
        locale = DOMAINS[known[0]] if known else locale
    if kind not in MASKED or not values:
        return locale, [], []
    shared = Counter(m for m in (mask(v, kind) for v in values) if len(m) <= MAX_MASK and _FORMAT.fullmatch(m))
    counts = [(m, n) for m, n in shared.most_common(MAX_MASKS) if n >= MIN_MASK_ROWS]
    if not counts:
        return locale, [], []
    total = sum(n for _, n in counts)
    return locale, [m for m, _ in counts], [n / total for _, n in counts]


def _faker(locale: str, rng: np.random.Generator):
    fake = _fakers(locale)
    fake.seed_instance(int(rng.integers(2**63)))  # reseeded at each use: the fakes depend on `rng` alone
    return fake


@lru_cache(maxsize=None)
def _fakers(locale: str):
    from faker import Faker

    return Faker(locale)


def fake_values(kind: str, locale: str, masks: list[str], shares: list[float], n: int, offset: int,
                rng: np.random.Generator) -> pd.Series:
    """`n` fakes of PII sdtype `kind` for rows numbered from `offset` (see the module docstring)."""
    fake = _faker(locale, rng)
    if kind in MASKED and masks:
        chosen = rng.choice(len(masks), size=n, p=np.asarray(shares) / np.sum(shares))
        digits = rng.integers(0, 10, size=(n, max(m.count("#") for m in masks)))
        return pd.Series([_fill(masks[c], row) for c, row in zip(chosen, digits)], dtype=object)
    make = {"email": lambda i: f"{fake.user_name()}.{i}@{fake.safe_domain_name()}",
            "phone_number": lambda i: fake.phone_number(), "name": lambda i: fake.name(),
            "first_name": lambda i: fake.first_name(), "last_name": lambda i: fake.last_name(),
            "address": lambda i: fake.address().replace("\n", ", "), "street_address": lambda i: fake.street_address(),
            "ssn": lambda i: fake.ssn(), "iban": lambda i: fake.iban(), "credit_card_number": lambda i: fake.credit_card_number(),
            "ipv4_address": lambda i: fake.ipv4(), "url": lambda i: f"{fake.url().rstrip('/')}/{i}"}[kind]
    return pd.Series([make(i) for i in range(offset, offset + n)], dtype=object)


def _fill(template: str, digits: np.ndarray) -> str:
    it = iter(digits)
    return re.sub("#", lambda _: str(next(it)), template)


def link_names(decoded: dict, kinds: dict[str, str], offset: int) -> None:
    """Make each fake e-mail address of `decoded` ({column: values}) the same row's fake person's, where the table
    has a name column (`kinds`: {column: PII sdtype}); still unique (numbered) and at a reserved domain."""
    names = [c for c, k in kinds.items() if k == "name"]
    firsts = [c for c, k in kinds.items() if k == "first_name"]
    lasts = [c for c, k in kinds.items() if k == "last_name"]
    for column in (c for c, k in kinds.items() if k == "email"):
        if names:
            people = _text(decoded[names[0]])
        elif firsts and lasts:
            people = _text(decoded[firsts[0]]) + " " + _text(decoded[lasts[0]])
        else:
            continue
        emails = pd.Series(decoded[column], dtype=object).reset_index(drop=True)
        domains = emails.astype(str).str.rsplit("@", n=1).str[-1]
        numbers = pd.Series(np.arange(offset, offset + len(people)).astype(str))
        linked = people.reset_index(drop=True).map(_local_part) + "." + numbers + "@" + domains
        decoded[column] = linked.where(emails.notna()).astype(object)  # a blank e-mail stays blank


def _text(values) -> pd.Series:
    """Values as text, a blank one as "" (its e-mail's local part is then "user")."""
    return pd.Series(values, dtype=object).reset_index(drop=True).fillna("").astype(str)


def _local_part(name: str) -> str:
    """An e-mail local part of a person's name: 'Zoë van Dijk' -> 'zoe.van.dijk' (accents dropped)."""
    import unicodedata

    plain = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().lower()
    return ".".join(re.findall(r"[a-z0-9]+", plain)) or "user"
