"""JWT auth: a key ring with key ids, access/refresh tokens, refresh rotation in Redis.

* Algorithms are fixed (``HS256``); ``alg=none`` and anything else are refused by PyJWT.
* Every token carries ``kid`` (header), ``iss``, ``aud``, ``exp``, ``iat``, ``sub``, ``jti``,
  ``typ`` (access|refresh) and ``fam`` (the refresh family).
* Key rotation: the key file holds several keys; new tokens use ``active``, all listed keys
  verify. Retire a key by removing it from the file.
* Refresh tokens rotate on use: the family's current ``jti`` lives in Redis; presenting an
  older one (a stolen copy replayed) revokes the whole family, access tokens included.
  Several server processes share that state, so they agree.

Key file (JSON, mode 0600)::

    {"issuer": "auren", "audience": "auren-ws", "active": "k1",
     "keys": {"k1": "<base64 secret>", "k0": "<older secret>"}}
"""

from __future__ import annotations

import json
import os
import secrets
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import jwt

from ..config import ConfigError

__all__ = [
    "ALGORITHMS",
    "AuthError",
    "KeyRing",
    "RefreshStore",
    "TokenPair",
    "family_key",
    "issue_pair",
    "revocation_channel",
    "verify",
]

ALGORITHMS: Final = ["HS256"]
ACCESS_TTL_S: Final = 900.0
REFRESH_TTL_S: Final = 30 * 86400.0
LEEWAY_S: Final = 5.0
AUTH_PREFIX: Final = "auren:auth"


class AuthError(Exception):
    """A token that must be refused; ``str()`` is safe to show the client."""


@dataclass(frozen=True)
class KeyRing:
    keys: dict[str, bytes]
    active: str
    issuer: str = "auren"
    audience: str = "auren-ws"

    @classmethod
    def load(cls, path: Path) -> KeyRing:
        try:
            doc = json.loads(path.read_text())
            keys = {str(k): str(v).encode() for k, v in doc["keys"].items()}
            ring = cls(
                keys,
                str(doc["active"]),
                str(doc.get("issuer", "auren")),
                str(doc.get("audience", "auren-ws")),
            )
        except FileNotFoundError:
            raise ConfigError(f"no JWT key file at {path}: run `auren token --init`") from None
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ConfigError(f"cannot read JWT key file {path}: {exc}") from None
        if ring.active not in ring.keys:
            raise ConfigError(f"JWT key file {path}: active key {ring.active!r} is not listed")
        if any(len(k) < 32 for k in ring.keys.values()):
            raise ConfigError(f"JWT key file {path}: every secret needs >= 32 bytes")
        return ring

    @classmethod
    def create(cls, path: Path, *, issuer: str = "auren", audience: str = "auren-ws") -> KeyRing:
        ring = cls({_new_kid(): _new_secret()}, "", issuer, audience)
        ring = KeyRing(ring.keys, next(iter(ring.keys)), issuer, audience)
        ring.save(path)
        return ring

    def rotate(self) -> KeyRing:
        """A new active key; older ones keep verifying until removed."""
        kid = _new_kid()
        return KeyRing({**self.keys, kid: _new_secret()}, kid, self.issuer, self.audience)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        doc = {
            "issuer": self.issuer,
            "audience": self.audience,
            "active": self.active,
            "keys": {k: v.decode() for k, v in self.keys.items()},
        }
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(doc, fh, indent=2)
        os.replace(tmp, path)


def _new_kid() -> str:
    return time.strftime("k%Y%m%d%H%M%S-") + secrets.token_hex(2)


def _new_secret() -> bytes:
    return secrets.token_urlsafe(48).encode()


@dataclass(frozen=True)
class TokenPair:
    access: str
    refresh: str
    family: str
    access_expires: float
    refresh_expires: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "access_token": self.access,
            "refresh_token": self.refresh,
            "token_type": "Bearer",
            "expires_in": int(self.access_expires - time.time()),
            "refresh_expires_in": int(self.refresh_expires - time.time()),
        }


def _encode(ring: KeyRing, claims: dict[str, Any]) -> str:
    return jwt.encode(
        claims, ring.keys[ring.active], algorithm=ALGORITHMS[0], headers={"kid": ring.active}
    )


def issue_pair(
    ring: KeyRing,
    subject: str,
    *,
    family: str | None = None,
    access_ttl: float = ACCESS_TTL_S,
    refresh_ttl: float = REFRESH_TTL_S,
    now: float | None = None,
) -> tuple[TokenPair, str]:
    """An access and a refresh token; returns (pair, refresh jti)."""
    now = time.time() if now is None else now
    fam = family or uuid.uuid4().hex
    base = {"iss": ring.issuer, "aud": ring.audience, "sub": subject, "iat": int(now), "fam": fam}
    access = _encode(
        ring, {**base, "typ": "access", "jti": uuid.uuid4().hex, "exp": int(now + access_ttl)}
    )
    rjti = uuid.uuid4().hex
    refresh = _encode(ring, {**base, "typ": "refresh", "jti": rjti, "exp": int(now + refresh_ttl)})
    return TokenPair(access, refresh, fam, now + access_ttl, now + refresh_ttl), rjti


def verify(ring: KeyRing, token: str, *, typ: str = "access") -> dict[str, Any]:
    """Claims of a valid token of type ``typ``; raises :class:`AuthError` otherwise."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise AuthError("malformed token") from None
    kid = header.get("kid")
    if header.get("alg") not in ALGORITHMS:
        raise AuthError(f"algorithm {str(header.get('alg'))[:20]!r} not allowed")
    if not isinstance(kid, str) or kid not in ring.keys:
        raise AuthError("unknown key id")
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            ring.keys[kid],
            algorithms=ALGORITHMS,
            audience=ring.audience,
            issuer=ring.issuer,
            leeway=LEEWAY_S,
            options={"require": ["exp", "iat", "iss", "aud", "sub", "jti", "typ"]},
        )
    except jwt.ExpiredSignatureError:
        raise AuthError("token expired") from None
    except jwt.InvalidSignatureError:
        raise AuthError("bad signature") from None
    except jwt.PyJWTError as exc:
        raise AuthError(f"invalid token: {str(exc)[:60]}") from None
    if claims.get("typ") != typ:
        raise AuthError(f"a {claims.get('typ')!s:.10} token cannot be used here")
    return claims


def family_key(fam: str, prefix: str = AUTH_PREFIX) -> str:
    """The Redis key holding a refresh family's state (current jti or "revoked")."""
    return f"{prefix}:fam:{fam}"


def revocation_channel(prefix: str = AUTH_PREFIX) -> str:
    """The pub/sub channel revocations are announced on (message: the family id)."""
    return f"{prefix}:revoked"


class RefreshStore:
    """Refresh-token families in Redis (``<prefix>:fam:<id>`` = current jti or "revoked").

    Every revocation (by hand or on reuse) is also published on ``<prefix>:revoked`` (the
    family id as the message), so serve-ws processes close that family's open sessions at
    once; they also poll the keys of open sessions, for a notification missed while
    their subscription was down.
    """

    # KEYS[1] family key; ARGV: presented jti, new jti, ttl seconds, channel, family id.
    _ROTATE = """
    local cur = redis.call('GET', KEYS[1])
    if not cur then return 'unknown' end
    if cur == 'revoked' then return 'revoked' end
    if cur ~= ARGV[1] then
      redis.call('SET', KEYS[1], 'revoked', 'EX', ARGV[3])
      redis.call('PUBLISH', ARGV[4], ARGV[5])
      return 'reused'
    end
    redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
    return 'ok'
    """

    def __init__(self, redis_client: Any, prefix: str = AUTH_PREFIX) -> None:
        self.r = redis_client  # a sync redis.Redis (decode_responses=True)
        self.prefix = prefix
        self._rotate = redis_client.register_script(self._ROTATE)

    @property
    def channel(self) -> str:
        return revocation_channel(self.prefix)

    def key(self, fam: str) -> str:
        return family_key(fam, self.prefix)

    def start(self, fam: str, jti: str, ttl: float = REFRESH_TTL_S) -> None:
        self.r.set(self.key(fam), jti, ex=int(ttl))

    def revoked(self, fam: str) -> bool:
        return bool(self.r.get(self.key(fam)) == "revoked")

    def revoke(self, fam: str) -> None:
        pipe = self.r.pipeline(transaction=True)
        pipe.set(self.key(fam), "revoked", ex=int(REFRESH_TTL_S))
        pipe.publish(self.channel, fam)
        pipe.execute()

    def refresh(self, ring: KeyRing, token: str) -> TokenPair:
        """Rotate: a new pair for a current refresh token; reuse revokes the family."""
        claims = verify(ring, token, typ="refresh")
        fam = str(claims.get("fam", ""))
        pair, new_jti = issue_pair(ring, str(claims["sub"]), family=fam)
        result = self._rotate(
            keys=[self.key(fam)],
            args=[claims["jti"], new_jti, int(REFRESH_TTL_S), self.channel, fam],
        )
        result = result.decode() if isinstance(result, bytes) else result
        if result == "reused":
            raise AuthError("refresh token reused: family revoked")
        if result != "ok":
            raise AuthError(f"refresh family {result}")
        return pair
