"""Stream tokens (see `domain/stream_tokens.py`): issued to a key for one command it may read,
accepted only on that command's event stream, and only while the key that made it is live and
unchanged.

A refused token is an AuthFailure like a refused key: the client sees the generic 401, the
audit log a private reason (`token_malformed`, `token_forged`, `token_expired`,
`token_other_command`, or the key's own: `revoked`, `expired`, `unknown`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from rdev.domain import stream_tokens as tokens
from rdev.domain.models import ApiKey, Command
from rdev.services.keys import AuthFailure, KeyService


@dataclass(frozen=True, slots=True)
class IssuedStreamToken:
    token: str
    expires_at: datetime
    command_id: str


class StreamTokenService:
    def __init__(
        self,
        keys: KeyService,
        *,
        ttl_seconds: int,
        server_secret: bytes,
        clock: Callable[[], datetime],
    ) -> None:
        self._keys = keys
        self._ttl = ttl_seconds
        self._secret = server_secret
        self._clock = clock

    def issue(self, key: ApiKey, command: Command) -> IssuedStreamToken:
        """A token for `command`'s stream; the caller has checked that `key` may read it."""
        expires = int(self._clock().timestamp()) + self._ttl
        if key.expires_at is not None:  # never outlives the key
            expires = min(expires, int(key.expires_at.timestamp()))
        token = tokens.sign(
            key_id=key.id, secret_hash=key.secret_hash, command_id=command.id,
            expires=expires, server_secret=self._secret,
        )  # fmt: skip
        return IssuedStreamToken(token, datetime.fromtimestamp(expires, UTC), command.id)

    async def authenticate(self, token: str, command_id: str) -> ApiKey:
        """The key that made `token` for `command_id`'s stream, or AuthFailure."""
        claims = tokens.parse(token)
        if claims is None:
            raise AuthFailure("token_malformed")
        key = await self._keys.live(claims.key_id)
        if not tokens.signed_by(claims, secret_hash=key.secret_hash, server_secret=self._secret):
            raise AuthFailure("token_forged", claims.key_id)
        if claims.expires <= self._clock().timestamp():
            raise AuthFailure("token_expired", claims.key_id)
        if claims.command_id != command_id:
            raise AuthFailure("token_other_command", claims.key_id)
        return key
