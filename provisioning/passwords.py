"""Passwords: generation, policy and hashing in schemes OpenLDAP and Dovecot verify.

* Generated initial passwords carry ~94 bits of entropy; brute force is hopeless whatever the hash,
  so they are stored as ``{SSHA512}`` (fast: bulk runs create thousands) and the account is marked
  ``must_change_password``.
* Passwords people choose are low-entropy and get ``{ARGON2}`` argon2id (OpenLDAP's argon2 module).

No function here logs or includes a password in an exception message.
"""

from __future__ import annotations

import secrets
import unicodedata

from anyascii import anyascii
from passlib.hash import argon2, ldap_salted_sha512

from provisioning.config import PasswordSettings
from provisioning.errors import InvalidInput

# No look-alikes (0/O, 1/l/I) so a password read from a handover sheet is typed right the first time.
_ALPHABET = "abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"
_SYMBOLS = "-_.+"


def generate_initial(length: int = 16) -> str:
    """A random initial password of ``length`` characters with lower, upper, digit and one symbol
    (never first). 16 characters carry about 93 bits.

    One draw of random bytes per password, read as a big number in base len(_ALPHABET): bulk runs
    make thousands, and one ``secrets.choice`` per character costs a system call each.
    """
    if length < 12:
        raise ValueError("initial passwords must be at least 12 characters")
    while True:
        number = int.from_bytes(secrets.token_bytes(2 * length + 16), "big")
        chars = []
        for _ in range(length - 1):
            number, digit = divmod(number, len(_ALPHABET))
            chars.append(_ALPHABET[digit])
        number, symbol = divmod(number, len(_SYMBOLS))
        # Never first: a leading '-', '+' or '=' reads as a formula in a spreadsheet.
        chars.insert(1 + number % (length - 1), _SYMBOLS[symbol])
        pw = "".join(chars)
        if any(c.islower() for c in pw) and any(c.isupper() for c in pw) and any(c.isdigit() for c in pw):
            return pw


def hash_initial(password: str) -> str:
    """``{SSHA512}`` hash for a generated (high-entropy) password."""
    return ldap_salted_sha512.hash(password)


def hash_chosen(password: str, policy: PasswordSettings) -> str:
    """``{ARGON2}`` argon2id hash for a password a person chose."""
    hasher = argon2.using(
        type="ID", memory_cost=policy.argon2_memory_kib, rounds=policy.argon2_time_cost,
        parallelism=policy.argon2_parallelism,
    )
    return "{ARGON2}" + hasher.hash(password)


def verify(password: str, stored: str) -> bool:
    """True when ``password`` matches a hash made by this module."""
    if stored.startswith("{ARGON2}"):
        return argon2.verify(password, stored[len("{ARGON2}"):])
    if stored.startswith("{SSHA512}"):
        return ldap_salted_sha512.verify(password, stored)
    return False


def _fold(text: str) -> str:
    """Lower-case ASCII letters and digits only: 'Nguyễn Đức' -> 'nguyenduc'."""
    text = unicodedata.normalize("NFC", text).replace("đ", "d").replace("Đ", "D")
    return "".join(c for c in anyascii(text).lower() if c.isalnum())


def check_policy(password: str, policy: PasswordSettings, *, full_name: str = "", local_part: str = "") -> None:
    """Refuse a chosen password that breaks the policy.

    Rules: at least ``min_length`` characters, at most ``max_bytes`` bytes in UTF-8, no control
    characters, and it must not contain the account's local part or its family or given name (4+ letters).

    :raises InvalidInput: field ``password``; the message never repeats the password.
    """
    def refuse(problem: str, hint: str) -> InvalidInput:
        return InvalidInput("password", None, problem, hint)

    password = unicodedata.normalize("NFC", password)
    if len(password) < policy.min_length:
        raise refuse(f"is shorter than {policy.min_length} characters", "choose a longer passphrase")
    if len(password.encode("utf-8")) > policy.max_bytes:
        raise refuse(f"is longer than {policy.max_bytes} bytes", "choose a shorter one")
    if any(unicodedata.category(c) in ("Cc", "Cf") for c in password):
        raise refuse("contains control characters", "use letters, digits, spaces and punctuation")
    folded = _fold(password)
    parts = full_name.split()
    # Family and given names of 4+ letters: shorter ones ("thi", "an") occur in ordinary words.
    words = [_fold(p) for p in (parts[:1] + parts[-1:]) if len(_fold(p)) >= 4]
    if local_part and len(local_part) >= 3:
        words.append(_fold(local_part))
    if any(word in folded for word in words):
        raise refuse("contains the account's name or address", "choose one that does not")
