"""Tests for provisioning.addresses: names to local parts, and validation of typed addresses."""

from __future__ import annotations

import itertools
import re
import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from provisioning.addresses import (
    DEFAULT_RESERVED,
    base_local_part,
    normalize_full_name,
    numbered_candidates,
    split_address,
    split_full_name,
    validate_domain,
    validate_local_part,
)
from provisioning.errors import InvalidInput


def nfd(text: str) -> str:
    return unicodedata.normalize("NFD", text)


# --- the design's examples ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Nguyễn Thị Lâm", "lamnt"),
        ("Trần Văn Đức", "ductv"),
        ("Lê Thị Ánh Tuyết", "tuyetlta"),
        ("Phạm Thị Trang", "trangpt"),
        ("Lâm", "lam"),  # one word: the given name alone
    ],
)
def test_given_initials(name: str, expected: str) -> None:
    assert base_local_part(name) == expected
    assert base_local_part(name, "given_initials") == expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Phạm Thị Trang", "phamthitrang"),
        ("Nguyễn Thị Lâm", "nguyenthilam"),
        ("Lê Thị Ánh Tuyết", "lethianhtuyet"),
        ("Trần Văn Đức", "tranvanduc"),
    ],
)
def test_full_name_style(name: str, expected: str) -> None:
    assert base_local_part(name, "full_name") == expected


def test_unknown_style_is_refused() -> None:
    with pytest.raises(InvalidInput) as exc:
        base_local_part("Nguyễn Thị Lâm", "surname")  # type: ignore[arg-type]
    assert exc.value.field == "address_style"


# --- đ, Đ and their look-alikes -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Đặng Đình Đạt", "datdd"),
        ("đặng đình đạt", "datdd"),
        ("ĐẶNG ĐÌNH ĐẠT", "datdd"),
        ("Ðặng Ðình Ðạt", "datdd"),  # U+00D0 Latin capital eth, typed for Đ on some keyboards
        ("Ɖặng Văn Ɖạt", "datdv"),  # U+0189 Latin capital African D, same shape
        ("Đỗ Văn Hùng", "hungdv"),
    ],
)
def test_d_with_stroke_and_eth_give_d(name: str, expected: str) -> None:
    assert base_local_part(name) == expected


def test_eth_is_stored_as_written() -> None:
    assert normalize_full_name("Ðặng Văn Ðạt") == "Ðặng Văn Ðạt"


# --- NFC / NFD, case, spaces, invisible characters ------------------------------------------------


@pytest.mark.parametrize("name", ["Nguyễn Thị Lâm", "Lê Thị Ánh Tuyết", "Đặng Thị Ngọc Ánh", "Trương Ưng Ẩn"])
def test_nfd_input_gives_nfc_name_and_same_address(name: str) -> None:
    decomposed = nfd(name)
    assert decomposed != name
    assert normalize_full_name(decomposed) == name
    assert base_local_part(decomposed) == base_local_part(name)
    assert base_local_part(decomposed, "full_name") == base_local_part(name, "full_name")


def test_case_does_not_change_the_address() -> None:
    assert base_local_part("NGUYỄN THỊ LÂM") == "lamnt"
    assert base_local_part("nguyễn thị lâm") == "lamnt"
    assert base_local_part("nGUYỄN tHỊ lÂM") == "lamnt"


def test_case_is_stored_as_written() -> None:
    assert normalize_full_name("NGUYỄN thị Lâm") == "NGUYỄN thị Lâm"


@pytest.mark.parametrize(
    "raw",
    [
        "  Nguyễn   Thị  Lâm ",
        "Nguyễn\u00a0Thị\u00a0Lâm",  # NBSP (Word, web pages)
        "Nguyễn\u202fThị\u3000Lâm",  # narrow NBSP, ideographic space
        "Nguyễn\tThị\nLâm\r\n",  # tab and line breaks from spreadsheet cells
        "\ufeffNguyễn Thị Lâm",  # BOM from a CSV export
        "Nguyễn Th\u200bị L\u00adâm\u200d",  # ZWSP, soft hyphen, ZWJ
        "Nguy\u200cễn \u2060Thị Lâm\u200e",  # ZWNJ, word joiner, LRM
        "Nguyễn \u200b Thị Lâm",  # a space made of a ZWSP and two spaces
    ],
)
def test_spaces_and_invisible_characters_are_cleaned(raw: str) -> None:
    assert normalize_full_name(raw) == "Nguyễn Thị Lâm"
    assert base_local_part(raw) == "lamnt"


def test_normalize_is_idempotent_on_a_clean_name() -> None:
    assert normalize_full_name("Lê Thị Ánh Tuyết") == "Lê Thị Ánh Tuyết"


# --- names that are refused -----------------------------------------------------------------------


def refusal(raw: str) -> InvalidInput:
    with pytest.raises(InvalidInput) as exc:
        normalize_full_name(raw)
    assert exc.value.field == "full_name"
    return exc.value


def test_cyrillic_lookalike_message_names_character_code_point_and_remedy() -> None:
    err = refusal("Nguyễn Thị L\u0430m")
    assert str(err) == (
        "full_name 'Nguyễn Thị Lаm': contains 'а' (U+0430 CYRILLIC SMALL LETTER A), "
        "a non-Latin letter that looks like a Latin one (retype the name using Vietnamese letters only)"
    )


@pytest.mark.parametrize(
    ("raw", "code_point"),
    [
        ("Ng\u03bfc Lan", "U+03BF GREEK SMALL LETTER OMICRON"),
        ("\u0422rần Văn Đức", "U+0422 CYRILLIC CAPITAL LETTER TE"),
        ("Trần V\u0103n \u0110\u1ee9\u0441", "U+0441 CYRILLIC SMALL LETTER ES"),
        ("Ph\u0430\u0323m Thị Trang", "U+0430 CYRILLIC SMALL LETTER A"),  # а + dot below: still Cyrillic
        ("L\u03cc Văn Tú", "U+03CC GREEK SMALL LETTER OMICRON WITH TONOS"),  # looks like ó
        ("Nguy\u0435\u0303n Văn An", "U+0435 CYRILLIC SMALL LETTER IE"),
        ("Hoàng \u0555anh", "U+0555 ARMENIAN CAPITAL LETTER OH"),
    ],
)
def test_non_latin_lookalikes_are_refused(raw: str, code_point: str) -> None:
    message = str(refusal(raw))
    assert code_point in message
    assert "looks like a Latin one" in message
    assert "retype the name" in message


def test_phonetic_latin_lookalikes_are_refused() -> None:
    message = str(refusal("Nguyễn Văn \u0261iang"))
    assert "U+0261 LATIN SMALL LETTER SCRIPT G" in message
    assert "looks like an ordinary one" in message
    assert "U+1D00 LATIN LETTER SMALL CAPITAL A" in str(refusal("L\u1d00m"))


@pytest.mark.parametrize(
    ("raw", "code_point", "plain"),
    [
        ("Nguyễn Thị L\uff41m", "U+FF41 FULLWIDTH LATIN SMALL LETTER A", "'a'"),
        ("\uff2eguyễn Văn An", "U+FF2E FULLWIDTH LATIN CAPITAL LETTER N", "'N'"),
        ("\U0001d40bâm", "U+1D40B MATHEMATICAL BOLD CAPITAL L", "'L'"),
        ("Gia\ufb01n", "U+FB01 LATIN SMALL LIGATURE FI", "'fi'"),  # from PDFs
        ("\u01c4ung", "U+01C4 LATIN CAPITAL LETTER DZ WITH CARON", "'DŽ'"),
        ("\u24c1âm", "U+24C1 CIRCLED LATIN CAPITAL LETTER L", "'L'"),
    ],
)
def test_full_width_and_styled_letters_are_refused_not_folded(raw: str, code_point: str, plain: str) -> None:
    message = str(refusal(raw))
    assert code_point in message
    assert f"full-width, styled or ligature form of {plain}" in message


def test_unusual_latin_letters_are_refused() -> None:
    assert "U+01C0 LATIN LETTER DENTAL CLICK), a letter that names do not use" in str(refusal("\u01c0an"))
    assert "U+0294 LATIN LETTER GLOTTAL STOP" in str(refusal("H\u0294en"))


def test_other_scripts_are_refused_with_the_script_named() -> None:
    message = str(refusal("Иван Петров"))
    assert "U+0418 CYRILLIC CAPITAL LETTER I" in message
    assert "another script (Cyrillic)" in message
    assert "(Cjk)" in str(refusal("阮氏林"))


@pytest.mark.parametrize(
    ("raw", "code_point"),
    [
        ("Nguyễn Thị Lâm 2", "U+0032 DIGIT TWO"),
        ("Nguyễn Thị Lâm\uff12", "U+FF12 FULLWIDTH DIGIT TWO"),
        ("Nguyễn Văn Ⅱ", "U+2161 ROMAN NUMERAL TWO"),
    ],
)
def test_digits_are_refused(raw: str, code_point: str) -> None:
    message = str(refusal(raw))
    assert code_point in message
    assert "digit" in message


@pytest.mark.parametrize(
    ("raw", "code_point"),
    [
        ("Nguyễn Thị Lâm 😀", "U+1F600 GRINNING FACE"),
        ("Lâm ❤\ufe0f", "U+2764 HEAVY BLACK HEART"),
        ("Nguyễn Thị Lâm.", "U+002E FULL STOP"),
        ("Nguyễn, Lâm", "U+002C COMMA"),
        ("Lâm (Bé)", "U+0028 LEFT PARENTHESIS"),
        ("lam@vinhphuc", "U+0040 COMMERCIAL AT"),
        ("Nguyễn*", "U+002A ASTERISK"),
        ("Lâm\x00", "U+0000"),
        ("Lâm\u202e", "U+202E RIGHT-TO-LEFT OVERRIDE"),
        ("Lâm – Hà", "U+2013 EN DASH"),
    ],
)
def test_punctuation_symbols_emoji_and_controls_are_refused(raw: str, code_point: str) -> None:
    assert code_point in str(refusal(raw))


def test_lone_variation_selector_after_a_letter_is_refused() -> None:
    assert "U+FE0F VARIATION SELECTOR-16" in str(refusal("Lâm\ufe0f"))


def test_accent_on_no_letter_is_refused() -> None:
    message = str(refusal("\u0301Lâm"))
    assert "U+0301 COMBINING ACUTE ACCENT" in message
    assert "accent mark on no letter" in message


def test_stacked_accents_are_refused() -> None:
    assert "stacked on one letter" in str(refusal("La\u0306\u0306\u0306\u0306m"))


@pytest.mark.parametrize("raw", ["", "   ", "\u00a0\u200b\ufeff", "\t\n"])
def test_empty_names_are_refused(raw: str) -> None:
    assert refusal(raw).problem == "is empty"


@pytest.mark.parametrize("raw", ["Lâm - Hà", "' Lâm", "Nguyễn -- Lâm"])
def test_words_without_letters_are_refused(raw: str) -> None:
    assert "has no letters" in refusal(raw).problem


def test_128_characters_are_accepted_129_refused() -> None:
    longest = "Nguyễn " + "a" * 121
    assert len(longest) == 128
    assert normalize_full_name(longest) == longest
    err = refusal(longest + "a")
    assert err.problem == "is 129 characters long; at most 128 are allowed"
    assert len(str(err)) < 200  # the message does not repeat the whole value


def test_length_is_counted_after_cleanup_and_composition() -> None:
    padded = "  " + nfd("Nguyễn Thị Lâm " * 8).strip() + "  "  # 119 characters in NFC, many more in NFD
    assert len(padded) > 128
    assert len(normalize_full_name(padded)) == 119


# --- unusual but real names -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "given_initials", "full_name"),
    [
        # Ê Đê names put the clan name last; without the ethnicity we keep Vietnamese order,
        # which still gives a usable address.
        ("H'Hen Niê", "nieh", "hhennie"),
        ("H\u2019Hen Niê", "nieh", "hhennie"),  # typographic apostrophe from Word
        ("H' Hen Niê", "niehh", "hhennie"),
        ("Y Moan Ênuôl", "enuolym", "ymoanenuol"),
        ("Ksor H'Vân", "hvank", "ksorhvan"),
        ("Rơ Châm Ơi", "oirc", "rochamoi"),
        ("Nguyễn-Trần Thị Mai", "maint", "nguyentranthimai"),
        ("Bùi Thị Bô\u0306", "bobt", "buithibo"),  # Bahnar ô̆: no precomposed form, mark kept
        ("Müller Hans", "hansm", "mullerhans"),
        ("Straße Anna", "annas", "strasseanna"),
        ("Søren", "soren", "soren"),
    ],
)
def test_unusual_real_names(name: str, given_initials: str, full_name: str) -> None:
    assert base_local_part(name) == given_initials
    assert base_local_part(name, "full_name") == full_name


def test_apostrophes_and_hyphens_are_stored_as_written() -> None:
    assert normalize_full_name("H\u2019Hen  Niê") == "H\u2019Hen Niê"
    assert normalize_full_name("Nguyễn-Trần Thị Mai") == "Nguyễn-Trần Thị Mai"


def test_exotic_one_word_name() -> None:
    assert split_full_name("Ưng") == ("", (), "Ưng")
    assert base_local_part("Ưng") == "ung"
    assert base_local_part("Ưng", "full_name") == "ung"


def test_letters_that_give_no_ascii_are_refused() -> None:
    # LATIN LETTER TONE FIVE is a Latin letter, but transliterates to a digit only.
    with pytest.raises(InvalidInput) as exc:
        base_local_part("\u01bd")
    assert exc.value.field == "full_name"
    assert "no letters a-z" in exc.value.problem


def test_invalid_name_is_refused_by_base_local_part() -> None:
    with pytest.raises(InvalidInput):
        base_local_part("Nguyễn Thị L\u0430m")


def test_split_full_name() -> None:
    assert split_full_name("Lê Thị Ánh Tuyết") == ("Lê", ("Thị", "Ánh"), "Tuyết")
    assert split_full_name("Trần Đức") == ("Trần", (), "Đức")
    with pytest.raises(InvalidInput):
        split_full_name("  ")


# --- length caps --------------------------------------------------------------------------------


def test_long_given_name_is_cut_but_initials_kept() -> None:
    name = "Nguyễn Văn " + "a" * 100
    assert base_local_part(name) == "a" * 62 + "nv"


def test_long_full_name_style_shrinks_middle_names_first() -> None:
    name = "Nguyễn " + "Thượng " * 10 + "Lâm"  # nguyen + 10 x thuong + lam = 69 letters
    assert base_local_part(name, "full_name") == "nguyen" + "t" * 10 + "lam"


def test_full_name_style_is_cut_at_64_when_still_too_long() -> None:
    name = "Nguyễn " + "b" * 70
    assert base_local_part(name, "full_name") == "nguyen" + "b" * 58


def test_many_words_fit() -> None:
    name = " ".join(["Lê"] * 42) + " An"  # 42 initials + given
    assert base_local_part(name) == "an" + "l" * 42


# --- numbered candidates --------------------------------------------------------------------------


def test_numbered_candidates() -> None:
    assert list(itertools.islice(numbered_candidates("lamnt"), 4)) == ["lamnt", "lamnt2", "lamnt3", "lamnt4"]


def test_numbered_candidates_keep_64_characters() -> None:
    base = "a" * 64
    first = list(itertools.islice(numbered_candidates(base), 10))
    assert first[0] == base
    assert first[1] == "a" * 63 + "2"
    assert first[9] == "a" * 62 + "10"
    assert all(len(c) == 64 for c in first)
    assert len(next(itertools.islice(numbered_candidates(base), 99, None))) == 64  # "100"


def test_numbered_candidates_do_not_leave_a_separator_before_the_number() -> None:
    base = "a" * 62 + ".b"
    assert list(itertools.islice(numbered_candidates(base), 2)) == [base, "a" * 62 + "2"]


def test_numbered_candidates_refuse_an_invalid_base() -> None:
    with pytest.raises(InvalidInput) as exc:
        next(numbered_candidates("lam nt"))
    assert exc.value.field == "base"


# --- local parts, domains, addresses --------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("lamnt", "lamnt"),
        ("LamNT", "lamnt"),
        ("lam.nt", "lam.nt"),
        ("van-thu", "van-thu"),
        ("van_thu_2", "van_thu_2"),
        ("a", "a"),
        ("2024", "2024"),
        ("a" * 64, "a" * 64),
        ("skhdt", "skhdt"),
    ],
)
def test_validate_local_part_accepts(value: str, expected: str) -> None:
    assert validate_local_part(value) == expected


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("", "is empty"),
        ("a" * 65, "is 65 characters long; at most 64 are allowed"),
        ("a,b", "contains ',', which is not allowed"),
        ("a*", "contains '*', which is not allowed"),
        ("a)(uid=*", "contains ')', which is not allowed"),
        ("admin\\00", "contains '\\\\', which is not allowed"),
        ("admin\x00", "contains '\\x00' (U+0000), which is not allowed"),
        ("lamnt\n", "contains '\\n' (U+000A), which is not allowed"),
        ("lam nt", "contains ' ', which is not allowed"),
        ("lam+tag", "contains '+', which is not allowed"),
        ("lam@x", "contains '@', which is not allowed"),
        ("cn=admin", "contains '=', which is not allowed"),
        ("lâm", "contains 'â' (U+00E2 LATIN SMALL LETTER A WITH CIRCUMFLEX), which is not allowed"),
        ("\u212aa", "contains '\u212a' (U+212A KELVIN SIGN), which is not allowed"),  # lower() would give 'k'
        ("l\u0430m", "contains 'а' (U+0430 CYRILLIC SMALL LETTER A), which is not allowed"),
        (".lam", "starts or ends with '.', '-' or '_'"),
        ("lam.", "starts or ends with '.', '-' or '_'"),
        ("-lam", "starts or ends with '.', '-' or '_'"),
        ("_", "starts or ends with '.', '-' or '_'"),
        ("lam..nt", "has two of '.', '-' or '_' in a row"),
        ("lam.-nt", "has two of '.', '-' or '_' in a row"),
    ],
)
def test_validate_local_part_refuses(value: str, problem: str) -> None:
    with pytest.raises(InvalidInput) as exc:
        validate_local_part(value, field="alias")
    assert exc.value.field == "alias"
    assert exc.value.value == value
    assert exc.value.problem == problem
    assert str(exc.value).startswith("alias ")
    assert "single '.', '-' or '_'" in exc.value.hint


def test_validate_local_part_does_not_refuse_reserved_names() -> None:
    # Whether a reserved name may be chosen is the caller's decision (an admin may create postmaster).
    assert validate_local_part("Postmaster") == "postmaster"


def test_default_reserved() -> None:
    for name in ("postmaster", "abuse", "admin", "administrator", "hostmaster", "webmaster", "root",
                 "noreply", "no-reply", "mailer-daemon", "security", "support", "info", "contact", "sysadmin"):
        assert name in DEFAULT_RESERVED
    assert "lamnt" not in DEFAULT_RESERVED
    assert all(validate_local_part(name) == name for name in DEFAULT_RESERVED)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("vinhphuc.gov.vn", "vinhphuc.gov.vn"),
        ("VinhPhuc.GOV.vn", "vinhphuc.gov.vn"),
        ("so-noi-vu.hanoi.gov.vn", "so-noi-vu.hanoi.gov.vn"),
        ("xn--vnhphc-jua2e.vn", "xn--vnhphc-jua2e.vn"),
        ("a.b", "a.b"),
    ],
)
def test_validate_domain_accepts(value: str, expected: str) -> None:
    assert validate_domain(value) == expected


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("", "is empty"),
        ("localhost", "needs at least one dot"),
        ("vinhphuc.gov.vn.", "has an empty label (a leading, trailing or doubled dot)"),
        (".gov.vn", "has an empty label (a leading, trailing or doubled dot)"),
        ("gov..vn", "has an empty label (a leading, trailing or doubled dot)"),
        ("-vp.gov.vn", "has the label '-vp', which starts or ends with '-'"),
        ("vp-.gov.vn", "has the label 'vp-', which starts or ends with '-'"),
        ("vinh_phuc.gov.vn", "contains '_', which is not allowed in a domain"),
        ("vĩnhphúc.vn", "contains 'ĩ' (U+0129 LATIN SMALL LETTER I WITH TILDE), which is not allowed in a domain"),
        ("10.0.0.1", "ends in an all-digit label (an IP address is not a mail domain)"),
        ("a" * 64 + ".vn", "has a label of 64 characters; at most 63 are allowed"),
        (".".join(["a" * 63] * 4), "is 255 characters long; at most 253 are allowed"),
    ],
)
def test_validate_domain_refuses(value: str, problem: str) -> None:
    with pytest.raises(InvalidInput) as exc:
        validate_domain(value)
    assert exc.value.field == "domain"
    assert exc.value.problem == problem


def test_split_address() -> None:
    assert split_address("lamnt@vinhphuc.gov.vn") == ("lamnt", "vinhphuc.gov.vn")
    assert split_address("LamNT@VinhPhuc.Gov.VN") == ("lamnt", "vinhphuc.gov.vn")
    assert split_address("van.thu@so-noi-vu.hanoi.gov.vn") == ("van.thu", "so-noi-vu.hanoi.gov.vn")


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("lamnt", "must contain exactly one '@'"),
        ("lamnt@@vinhphuc.gov.vn", "must contain exactly one '@'"),
        ("a@b@vinhphuc.gov.vn", "must contain exactly one '@'"),
        ("@vinhphuc.gov.vn", "the part before '@' is empty"),
        ("lamnt@", "the domain is empty"),
        ("lamnt@vinhphuc", "the domain needs at least one dot"),
        ("lam nt@vinhphuc.gov.vn", "the part before '@' contains ' ', which is not allowed"),
        ("lamnt@vinhphuc.gov.vn ", "the domain contains ' ', which is not allowed in a domain"),
        ("*@vinhphuc.gov.vn", "the part before '@' contains '*', which is not allowed"),
        ('"lam nt"@vinhphuc.gov.vn', "the part before '@' contains '\"', which is not allowed"),
    ],
)
def test_split_address_refuses(value: str, problem: str) -> None:
    with pytest.raises(InvalidInput) as exc:
        split_address(value, field="forward_to")
    assert exc.value.field == "forward_to"
    assert exc.value.value == value
    assert exc.value.problem == problem


# --- properties -----------------------------------------------------------------------------------

_ONSETS = ["", "b", "c", "ch", "d", "đ", "g", "gh", "gi", "h", "k", "kh", "l", "m", "n", "ng", "ngh",
           "nh", "ph", "qu", "r", "s", "t", "th", "tr", "v", "x"]
_TONES = ["", "\u0300", "\u0301", "\u0303", "\u0309", "\u0323"]  # ngang, huyền, sắc, ngã, hỏi, nặng
_VOWELS = ["a", "ă", "â", "e", "ê", "i", "o", "ô", "ơ", "u", "ư", "y", "ia", "uô", "ươ", "oa", "uy"]
_CODAS = ["", "c", "ch", "m", "n", "ng", "nh", "p", "t", "i", "o", "u", "y"]


@st.composite
def syllables(draw: st.DrawFn) -> str:
    vowel = draw(st.sampled_from(_VOWELS))
    tone = draw(st.sampled_from(_TONES))
    # The tone mark goes on the first vowel letter; NFC composes it with any hat or horn.
    syllable = draw(st.sampled_from(_ONSETS)) + vowel[0] + tone + vowel[1:] + draw(st.sampled_from(_CODAS))
    syllable = unicodedata.normalize("NFC", syllable)
    return draw(st.sampled_from([syllable, syllable.capitalize(), syllable.upper()]))


vietnamese_names = st.lists(syllables(), min_size=1, max_size=6).map(" ".join)
separators = st.sampled_from([" ", "  ", "\u00a0", "\t", " \u200b"])


@given(vietnamese_names, st.sampled_from(["given_initials", "full_name"]))
def test_property_output_is_ascii_local_part(name: str, style: str) -> None:
    assert re.fullmatch(r"[a-z]{1,64}", base_local_part(name, style))  # type: ignore[arg-type]


@given(vietnamese_names, st.sampled_from(["given_initials", "full_name"]))
def test_property_nfc_nfd_and_case_give_same_output(name: str, style: str) -> None:
    expected = base_local_part(name, style)  # type: ignore[arg-type]
    assert base_local_part(nfd(name), style) == expected  # type: ignore[arg-type]
    assert base_local_part(name.upper(), style) == expected  # type: ignore[arg-type]
    assert base_local_part(nfd(name.lower()), style) == expected  # type: ignore[arg-type]


@given(st.lists(syllables(), min_size=1, max_size=6), st.data())
def test_property_messy_spacing_normalizes_to_the_clean_name(words: list[str], data: st.DataObject) -> None:
    messy = "".join(word + data.draw(separators) for word in words)
    assert normalize_full_name(nfd(messy)) == " ".join(words)


@given(vietnamese_names)
def test_property_normalize_is_idempotent(name: str) -> None:
    once = normalize_full_name(name)
    assert normalize_full_name(once) == once


@given(st.from_regex(r"[a-z]{1,64}", fullmatch=True), st.integers(min_value=1, max_value=200))
def test_property_numbered_candidates_are_valid_and_distinct(base: str, count: int) -> None:
    # Bases from names are letters only; with digits in the base, 'ab1'+'2' could equal 'ab'+'12'.
    candidates = list(itertools.islice(numbered_candidates(base), count))
    assert all(validate_local_part(c) == c and len(c) <= 64 for c in candidates)
    assert len(set(candidates)) == count


@given(st.text(max_size=40))
def test_property_any_text_is_refused_cleanly_or_gives_a_local_part(raw: str) -> None:
    try:
        local = base_local_part(raw)
    except InvalidInput as exc:
        assert exc.field == "full_name"
    else:
        assert re.fullmatch(r"[a-z]{1,64}", local)
