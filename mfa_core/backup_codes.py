"""Backup codes: generation, the forms a person may type them in, and their hashes."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

COUNT = 10
GROUPS = 4
GROUP_LEN = 4
# Crockford-like lower-case base32 without i, l, o, u: 5 bits a character, so
# 16 characters carry 80 bits (the rule asks for at least 64).
ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
LENGTH = GROUPS * GROUP_LEN
_SEPARATORS = re.compile(r"[\s\-_.]+")
# What people misread, mapped to the character the code really has.
_CONFUSABLE = str.maketrans({"i": "1", "l": "1", "o": "0", "u": "v"})


def generate(count: int = COUNT) -> list[str]:
    """``count`` new codes in their display form ``xxxx-xxxx-xxxx-xxxx``."""
    return [display(
        "".join(secrets.choice(ALPHABET) for _ in range(LENGTH))
    ) for _ in range(count)]


def display(normalized: str) -> str:
    return "-".join(normalized[i:i + GROUP_LEN] for i in range(0, LENGTH, GROUP_LEN))


def normalize(typed: str) -> str | None:
    """The canonical form of a typed code, or None when it cannot be one.

    Case-insensitive, with or without separators (dashes, spaces).
    """
    compact = _SEPARATORS.sub("", typed.strip().lower()).translate(_CONFUSABLE)
    if len(compact) != LENGTH or any(ch not in ALPHABET for ch in compact):
        return None
    return compact


def same_code(typed: str, shown: str) -> bool:
    """True when ``typed`` is ``shown`` in any accepted spelling (nothing consumed)."""
    a, b = normalize(typed), normalize(shown)
    return a is not None and b is not None and hmac.compare_digest(a, b)


def digest(pepper: bytes, salt: bytes, normalized: str) -> str:
    """HMAC-SHA256 of a code under the server's pepper and the user's salt.

    The pepper lives outside the data file, so a stolen data file alone does
    not allow an offline search of the 80-bit code space either.
    """
    return hmac.new(pepper, salt + normalized.encode("ascii"), hashlib.sha256).hexdigest()
