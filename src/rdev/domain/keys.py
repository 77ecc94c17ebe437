"""API key format `rdev_sk_<id>_<secret>`, hashing and constant-time verification."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

PREFIX = "rdev_sk_"
ID_LENGTH = 12
_ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
_FORMAT = re.compile(r"rdev_sk_([a-z0-9]{12})_([A-Za-z0-9_-]{43})")
MAX_KEY_LENGTH = 8 + ID_LENGTH + 1 + 43


def new_key_id() -> str:
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(ID_LENGTH))


def new_secret() -> str:
    return secrets.token_urlsafe(32)  # 32 random bytes -> 43 characters


def format_key(key_id: str, secret: str) -> str:
    return f"{PREFIX}{key_id}_{secret}"


def parse_key(raw: str) -> tuple[str, str] | None:
    """Split a presented key into (id, secret); None when it is not well formed.

    The length check comes first so an oversized header costs nothing."""
    if len(raw) != MAX_KEY_LENGTH:
        return None
    match = _FORMAT.fullmatch(raw)
    if match is None:
        return None
    return match.group(1), match.group(2)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def secret_matches(secret: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_secret(secret), stored_hash)
