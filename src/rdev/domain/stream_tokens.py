"""Stream tokens: a short-lived credential for one command's event stream, made for browsers,
whose native `EventSource` cannot send headers and so presents it as `?token=`.

The form is `rdev_st.<key id>.<command id>.<expiry, unix seconds>.<MAC>`, where the MAC is an
HMAC-SHA256 over the other fields under a key derived from the issuing API key's stored secret
hash and the server's optional secret (RDEV_STREAM_TOKEN_SECRET). So:
- rotating the key changes its hash and so invalidates every token it made; revoking or
  expiring the key is caught because the key is looked up on every use;
- replicas on one database verify each other's tokens with no secret to share or store
  (a migration would otherwise be needed); the server secret, when set (the same on every
  replica), keeps someone who has read a copy of the database from forging tokens;
- nothing is stored per token, and a token says which key and command it is for.

Nothing here decides a key is valid: that is the caller's, with the key it looks up."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass

PREFIX = "rdev_st"
MAX_LENGTH = 200
_FORMAT = re.compile(
    r"rdev_st\.([a-z0-9]{12})\.(cmd_[0-9a-f]{1,40})\.([0-9]{1,12})\.([A-Za-z0-9_-]{43})"
)


@dataclass(frozen=True, slots=True)
class TokenClaims:
    key_id: str
    command_id: str
    expires: int  # unix seconds
    mac: str


def _mac(claims: tuple[str, str, int], *, secret_hash: str, server_secret: bytes) -> str:
    signing_key = hmac.digest(
        server_secret, b"rdev stream token\n" + secret_hash.encode(), "sha256"
    )
    key_id, command_id, expires = claims
    message = f"v1\n{key_id}\n{command_id}\n{expires}".encode()
    digest = hmac.digest(signing_key, message, hashlib.sha256)
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def sign(
    *, key_id: str, secret_hash: str, command_id: str, expires: int, server_secret: bytes
) -> str:
    mac = _mac((key_id, command_id, expires), secret_hash=secret_hash, server_secret=server_secret)
    return f"{PREFIX}.{key_id}.{command_id}.{expires}.{mac}"


def parse(token: str) -> TokenClaims | None:
    """The claims a token makes (not yet verified), or None when it is not well formed."""
    if len(token) > MAX_LENGTH:
        return None
    match = _FORMAT.fullmatch(token)
    if match is None:
        return None
    return TokenClaims(match[1], match[2], int(match[3]), match[4])


def signed_by(claims: TokenClaims, *, secret_hash: str, server_secret: bytes) -> bool:
    """Whether the key with `secret_hash` made these claims (compared in constant time)."""
    expected = _mac(
        (claims.key_id, claims.command_id, claims.expires),
        secret_hash=secret_hash,
        server_secret=server_secret,
    )
    return hmac.compare_digest(expected, claims.mac)
