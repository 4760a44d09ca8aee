"""Mail addresses from Vietnamese full names, and validation of addresses people type.

Pure functions, no database. The allocator that checks which candidates are taken, retired or
reserved lives elsewhere; this module only says what a name *should* become.

Rules (design, "Domain rules"): given name + initials of the family and middle names, lower-case
ASCII, diacritics removed, đ -> d (Nguyễn Thị Lâm -> lamnt, the next one lamnt2); the per-province
full-name style writes every word out (Phạm Thị Trang -> phamthitrang).
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterator
from typing import Literal, NoReturn

from anyascii import anyascii

from provisioning.errors import InvalidInput

AddressStyle = Literal["given_initials", "full_name"]

MAX_LOCAL_PART = 64  # RFC 5321 4.5.3.1.1
MAX_DOMAIN = 253
MAX_LABEL = 63
MAX_FULL_NAME = 128

# RFC 2142 mailbox names, plus those mail software, CAs and people commonly treat as official.
DEFAULT_RESERVED: frozenset[str] = frozenset(
    {
        # RFC 2142
        "postmaster", "abuse", "hostmaster", "webmaster", "www", "uucp", "ftp", "news", "usenet",
        "noc", "security", "info", "marketing", "sales", "support",
        # Accounts and roles of mail systems
        "root", "admin", "administrator", "sysadmin", "system", "sys", "daemon", "nobody", "operator",
        "mailer-daemon", "mailerdaemon", "mail", "email", "smtp", "imap", "pop", "pop3", "mx",
        "ldap", "dns", "vmail", "dovecot", "postfix", "list", "lists", "listmaster", "majordomo",
        "bounce", "bounces", "noreply", "no-reply", "donotreply", "do-not-reply",
        # Certificate authorities validate domains through these (CA/B Forum BR 3.2.2.4.4)
        "ssladmin", "ssladministrator", "sslwebmaster", "it", "helpdesk",
        # Public-facing roles a citizen could mistake for an official channel
        "contact", "feedback", "office", "billing", "legal", "privacy", "compliance", "test",
        "guest", "anonymous", "all", "everyone", "staff",
    }
)

_APOSTROPHES = frozenset("'\u2019")  # ' and ’
_HYPHENS = frozenset("-\u2010\u2011")  # hyphen-minus, hyphen, non-breaking hyphen
# Invisible characters that ride along with copy and paste (Word, web pages, Excel exports).
_INVISIBLE = frozenset("\u200b\u200c\u200d\u2060\ufeff\u00ad\u200e\u200f")
# Combining diacritics are Latin "with any diacritics" when NFC cannot compose them (e.g. Bahnar ô̆).
_COMBINING_RANGES = ((0x0300, 0x036F), (0x1AB0, 0x1AFF), (0x1DC0, 0x1DFF), (0xFE20, 0xFE2F))
_MAX_MARKS_PER_LETTER = 2
# Letters of other scripts (and odd Latin ones) that pass for ordinary Latin letters on screen.
# Accented variants (Greek ό, Cyrillic ё) are caught through their decomposed base letter.
_LOOKALIKES = frozenset(
    "АВЕЅІЈКМНОРСТХУҮӀаеѕіјорсхуүһӏԁԛԝԜ"  # Cyrillic
    "ΑΒΕΖΗΙΚΜΝΟΡΤΥΧαικνορυχ"  # Greek
    "օսհոԱՕՍ"  # Armenian
    "ɑɡɩ"  # Latin alpha, script g, iota
)

_LOCAL_PART_RE = re.compile(r"[a-z0-9]+(?:[._-][a-z0-9]+)*")
_LABEL_RE = re.compile(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?")
_NAME_HINT = "retype the name using Vietnamese letters only"


# --- full names -------------------------------------------------------------------------------


def normalize_full_name(raw: str) -> str:
    """Return ``raw`` as it should be stored.

    NFC; every Unicode space (NBSP, ideographic space, tab, ...) becomes a plain space; invisible
    characters (ZWSP, ZWNJ, ZWJ, word joiner, BOM, soft hyphen, LRM/RLM) are removed; runs of spaces
    are collapsed and the ends stripped. Letters are otherwise kept exactly as written.

    Raises :class:`InvalidInput` (field ``full_name``) when the result is empty, longer than 128
    characters, has a word without letters, or contains anything but Latin letters (with any
    diacritics), spaces, apostrophes (' ’) and hyphens. Look-alike letters of other scripts
    (Cyrillic 'а', Greek 'ο'), full-width or styled letters, digits, punctuation and emoji are
    refused with a message naming the character and its code point.
    """
    name = _clean(raw)
    if not name:
        raise InvalidInput("full_name", raw, "is empty", "enter the person's full name")
    if len(name) > MAX_FULL_NAME:
        raise InvalidInput(
            "full_name", _abbreviate(name),
            f"is {len(name)} characters long; at most {MAX_FULL_NAME} are allowed",
        )
    _check_characters(name)
    for word in name.split(" "):
        if not any(unicodedata.category(ch).startswith("L") for ch in word):
            raise InvalidInput("full_name", name, f"the word {word!r} has no letters")
    return name


def split_full_name(name: str) -> tuple[str, tuple[str, ...], str]:
    """``(family, middles, given)`` of a normalized name in Vietnamese order (family name first).

    A one-word name is ``("", (), word)``. Raises :class:`InvalidInput` for an empty name.
    """
    words = name.split()
    if not words:
        raise InvalidInput("full_name", name, "is empty", "enter the person's full name")
    if len(words) == 1:
        return "", (), words[0]
    return words[0], tuple(words[1:-1]), words[-1]


def base_local_part(full_name: str, style: AddressStyle = "given_initials") -> str:
    """The base local part (before any collision number) for ``full_name``.

    The name is normalized first (see :func:`normalize_full_name`), so NFC and NFD input, any
    letter case and stray spaces give the same result. The result matches ``[a-z]{1,64}``;
    apostrophes and hyphens are dropped. ``given_initials``: given name + initials of family and
    middle names (lamnt). ``full_name``: every word (phamthitrang); when that exceeds 64 characters
    the middle names shrink to initials, then the end is cut.

    Raises :class:`InvalidInput` for an invalid name, an unknown style, or when no ASCII letter
    remains.
    """
    name = normalize_full_name(full_name)
    family, middles, given = split_full_name(name)
    family_a, given_a = _ascii_word(family), _ascii_word(given)
    middles_a = [_ascii_word(w) for w in middles]
    initials = "".join(w[:1] for w in (family_a, *middles_a))
    if style == "given_initials":
        # Cut the given name, not the initials: they tell namesakes apart.
        local = given_a[: max(MAX_LOCAL_PART - len(initials), 0)] + initials
    elif style == "full_name":
        local = family_a + "".join(middles_a) + given_a
        if len(local) > MAX_LOCAL_PART:
            local = family_a + "".join(w[:1] for w in middles_a) + given_a
    else:
        raise InvalidInput("address_style", style, "is not a known style", "use 'given_initials' or 'full_name'")
    local = local[:MAX_LOCAL_PART]
    if not local:
        raise InvalidInput(
            "full_name", name, "gives no letters a-z for an address",
            "choose the address explicitly",
        )
    return local


def numbered_candidates(base: str) -> Iterator[str]:
    """``base``, ``base2``, ``base3``, ... without end (the second Nguyễn Thị Lâm gets lamnt2).

    Each candidate is at most 64 characters: the base is cut before the number when needed.
    Raises :class:`InvalidInput` (field ``base``) when ``base`` is not a valid local part.
    """
    base = validate_local_part(base, field="base")
    yield base
    n = 2
    while True:
        suffix = str(n)
        yield _trim_separators(base[: MAX_LOCAL_PART - len(suffix)]) + suffix
        n += 1


# --- addresses people type ----------------------------------------------------------------------


def validate_local_part(value: str, field: str = "address") -> str:
    """Return ``value`` lower-cased if it is an acceptable local part (explicit choices, aliases).

    Accepted: 1 to 64 characters, ASCII letters and digits with single '.', '-' or '_' between them
    (not at the ends, never two in a row). Everything else, including whitespace, '@', LDAP filter
    and DN specials and control characters, raises :class:`InvalidInput` naming ``field``, the
    value and the rule broken. Reserved names are *not* refused here (see ``DEFAULT_RESERVED``).
    """
    problem = _local_part_problem(value)
    if problem:
        raise InvalidInput(field, value, problem, _LOCAL_HINT)
    return value.lower()


def validate_domain(value: str, field: str = "domain") -> str:
    """Return ``value`` lower-cased if it is a valid mail domain.

    Accepted: ASCII letters, digits and hyphens (LDH) in labels of 1 to 63 characters that do not
    start or end with a hyphen, at least two labels, at most 253 characters, a top-level label that
    is not all digits, no trailing dot. IDNs must be given in their ``xn--`` form. Raises
    :class:`InvalidInput` naming ``field``, the value and the rule broken.
    """
    problem = _domain_problem(value)
    if problem:
        raise InvalidInput(field, value, problem, _DOMAIN_HINT)
    return value.lower()


def split_address(address: str, field: str = "address") -> tuple[str, str]:
    """``'lamnt@vinhphuc.gov.vn'`` -> ``('lamnt', 'vinhphuc.gov.vn')``, both lower-cased and validated.

    Raises :class:`InvalidInput` naming ``field`` and the whole address unless it has exactly one
    '@' between a valid local part (:func:`validate_local_part`) and a valid domain
    (:func:`validate_domain`).
    """
    if address.count("@") != 1:
        raise InvalidInput(field, address, "must contain exactly one '@'", "write it as name@domain")
    local, domain = address.split("@")
    problem = _local_part_problem(local)
    if problem:
        raise InvalidInput(field, address, f"the part before '@' {problem}", _LOCAL_HINT)
    problem = _domain_problem(domain)
    if problem:
        raise InvalidInput(field, address, f"the domain {problem}", _DOMAIN_HINT)
    return local.lower(), domain.lower()


# --- helpers ------------------------------------------------------------------------------------

_LOCAL_HINT = "use letters a-z, digits 0-9 and single '.', '-' or '_' between them, at most 64 characters"
_DOMAIN_HINT = "write it like vinhphuc.gov.vn"


def _clean(raw: str) -> str:
    """NFC, invisible characters removed, every space turned into one plain space, ends stripped."""
    visible = "".join(" " if ch.isspace() else ch for ch in raw if ch not in _INVISIBLE)
    return " ".join(unicodedata.normalize("NFC", visible).split())


def _check_characters(name: str) -> None:
    """Raise :class:`InvalidInput` at the first character a name may not contain."""
    marks = 0
    previous_is_letter = False
    for ch in name:
        if _is_combining_diacritic(ch):
            marks += 1
            if not previous_is_letter or marks > _MAX_MARKS_PER_LETTER:
                where = "on no letter" if not previous_is_letter else "stacked on one letter"
                _refuse(name, ch, f"an accent mark {where}", _NAME_HINT)
            continue
        marks = 0
        previous_is_letter = _is_latin_letter(ch)
        if not (previous_is_letter or ch == " " or ch in _APOSTROPHES or ch in _HYPHENS):
            _refuse_character(name, ch)


@functools.lru_cache(maxsize=4096)  # names repeat the same few hundred characters
def _is_latin_letter(ch: str) -> bool:
    # Python has no Unicode script property; the character name carries it ("LATIN SMALL LETTER A").
    return (
        unicodedata.category(ch) in ("Lu", "Ll", "Lt")
        and unicodedata.name(ch, "").startswith("LATIN ")
        and "SMALL CAPITAL" not in unicodedata.name(ch)
        and ch not in _LOOKALIKES
        # Compatibility forms (ligatures ﬁ ĳ, digraphs ǅ, long s) are not folded: retyped instead.
        and unicodedata.normalize("NFKC", ch) == ch
    )


@functools.lru_cache(maxsize=1024)
def _is_combining_diacritic(ch: str) -> bool:
    return unicodedata.category(ch) == "Mn" and any(lo <= ord(ch) <= hi for lo, hi in _COMBINING_RANGES)


def _refuse_character(name: str, ch: str) -> NoReturn:
    """Raise the most helpful :class:`InvalidInput` for a character a name may not contain."""
    category = unicodedata.category(ch)
    folded = unicodedata.normalize("NFKC", ch)
    base = unicodedata.normalize("NFD", ch)[:1]
    if category.startswith("N"):
        _refuse(name, ch, "a digit or number", "a name has letters only")
    if folded != ch and any(c.isalpha() for c in folded):
        _refuse(name, ch, f"a full-width, styled or ligature form of {folded!r}", "retype it as plain letters")
    if base in _LOOKALIKES or "SMALL CAPITAL" in unicodedata.name(ch, ""):
        if unicodedata.name(ch, "").startswith("LATIN "):
            _refuse(name, ch, "a phonetic letter that looks like an ordinary one", _NAME_HINT)
        _refuse(name, ch, "a non-Latin letter that looks like a Latin one", _NAME_HINT)
    if category.startswith("L"):
        script = unicodedata.name(ch, "UNKNOWN").split(" ")[0].capitalize()
        if script == "Latin":  # clicks, glottal stop, modifier letters
            _refuse(name, ch, "a letter that names do not use", _NAME_HINT)
        _refuse(name, ch, f"a letter of another script ({script})", _NAME_HINT)
    _refuse(name, ch, "which a name may not contain", "use letters, spaces, apostrophes and hyphens only")


def _refuse(name: str, ch: str, problem: str, hint: str) -> NoReturn:
    label = unicodedata.name(ch, "unnamed character")
    raise InvalidInput("full_name", name, f"contains {ch!r} (U+{ord(ch):04X} {label}), {problem}", hint)


def _abbreviate(text: str, keep: int = 40) -> str:
    return text if len(text) <= keep else text[:keep] + "…"


def _ascii_word(word: str) -> str:
    """Lower-case a-z transliteration of one name word; đ/Đ and the look-alike Ð become d."""
    word = word.replace("đ", "d").replace("Đ", "D")
    return re.sub(r"[^a-z]", "", anyascii(word).lower())


def _trim_separators(text: str) -> str:
    return text.rstrip("._-")


def _local_part_problem(value: str) -> str | None:
    """What is wrong with ``value`` as a local part, or None."""
    if not value:
        return "is empty"
    if len(value) > MAX_LOCAL_PART:
        return f"is {len(value)} characters long; at most {MAX_LOCAL_PART} are allowed"
    for ch in value:
        # Check before lower(): 'K' (U+212A KELVIN SIGN).lower() is an ASCII 'k'.
        if not (ch.isascii() and (ch.isalnum() or ch in "._-")):
            return f"contains {ch!r}{_code_point(ch)}, which is not allowed"
    if value[0] in "._-" or value[-1] in "._-":
        return "starts or ends with '.', '-' or '_'"
    if not _LOCAL_PART_RE.fullmatch(value.lower()):
        return "has two of '.', '-' or '_' in a row"
    return None


def _domain_problem(value: str) -> str | None:
    """What is wrong with ``value`` as a mail domain, or None."""
    if not value:
        return "is empty"
    if len(value) > MAX_DOMAIN:
        return f"is {len(value)} characters long; at most {MAX_DOMAIN} are allowed"
    for ch in value:
        if not (ch.isascii() and (ch.isalnum() or ch in ".-")):
            return f"contains {ch!r}{_code_point(ch)}, which is not allowed in a domain"
    labels = value.lower().split(".")
    if len(labels) < 2:
        return "needs at least one dot"
    for label in labels:
        if not label:
            return "has an empty label (a leading, trailing or doubled dot)"
        if len(label) > MAX_LABEL:
            return f"has a label of {len(label)} characters; at most {MAX_LABEL} are allowed"
        if not _LABEL_RE.fullmatch(label):
            return f"has the label {label!r}, which starts or ends with '-'"
    if labels[-1].isdigit():
        return "ends in an all-digit label (an IP address is not a mail domain)"
    return None


def _code_point(ch: str) -> str:
    """Nothing for a visible ASCII character, else its code point and name (a look-alike is not obvious)."""
    if ch.isprintable() and ch.isascii():
        return ""
    label = unicodedata.name(ch, "")
    return f" (U+{ord(ch):04X} {label})" if label else f" (U+{ord(ch):04X})"
