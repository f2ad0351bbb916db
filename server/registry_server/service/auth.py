"""API keys: creation, verification and a small verified-key cache.

A key is `rk_{key_id}_{secret}`: 32 random bytes of secret, stored only as a
sha256 hash (the secret's entropy makes a slow hash unnecessary) and compared in
constant time. Verified keys are cached for `ttl` seconds: a key revoked on this
replica stops working at once (the cache entry is dropped in the same call); on
other replicas within `ttl` (REGISTRY_AUTH_CACHE_TTL, default 5 s). A call that asks
for commit N (`x-registry-after-commit`, `storage.commits`) is only answered from an
entry verified after this replica knew every commit up to N to be visible; otherwise
the key is checked in the database again.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass

from sqlalchemy import select

from ..domain.errors import Unauthenticated
from ..domain.roles import OrgRole
from ..storage import models as m
from ..storage.db import Database, now_us
from .context import Principal

PREFIX = "rk_"
KEY_ID_BYTES = 8
SECRET_BYTES = 32


def new_key() -> tuple[str, str, bytes]:
    """Returns (key_id, full secret, hash of the secret)."""
    key_id = secrets.token_hex(KEY_ID_BYTES)
    secret = f"{PREFIX}{key_id}_{secrets.token_urlsafe(SECRET_BYTES)}"
    return key_id, secret, hash_secret(secret)


def hash_secret(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def key_id_of(secret: str) -> str | None:
    if not secret.startswith(PREFIX):
        return None
    key_id, sep, rest = secret[len(PREFIX) :].partition("_")
    if not sep or not rest or len(key_id) != KEY_ID_BYTES * 2:
        return None
    return key_id


@dataclass
class _Entry:
    hash: bytes
    principal: Principal
    expires: float
    seen: int  # every commit numbered up to here was visible to the verifying read


class Authenticator:
    def __init__(self, db: Database, ttl: float = 5.0) -> None:
        self.db = db
        self.ttl = ttl
        self._cache: dict[str, _Entry] = {}
        self._lock = threading.Lock()

    def cached(self, secret: str, after_commit: int = 0) -> Principal | None:
        """The principal if the key is in the cache, still fresh, and verified with
        commit `after_commit` visible (no I/O)."""
        key_id = key_id_of(secret)
        if key_id is None:
            raise Unauthenticated("malformed API key", reason="INVALID_API_KEY")
        entry = self._cache.get(key_id)
        if entry is None or entry.expires < time.monotonic() or entry.seen < after_commit:
            return None
        if not hmac.compare_digest(entry.hash, hash_secret(secret)):
            raise Unauthenticated("invalid API key", reason="INVALID_API_KEY")
        return entry.principal

    def authenticate(self, secret: str, after_commit: int = 0) -> Principal:
        principal = self.cached(secret, after_commit)
        if principal is not None:
            return principal
        key_id = key_id_of(secret)
        assert key_id is not None
        seen = self.db.commits.seen if self.db.commits is not None else 0  # before the read
        with self.db.read() as s:
            row = s.execute(
                select(
                    m.ApiKey.secret_hash,
                    m.ApiKey.revoke_time,
                    m.User.id,
                    m.User.name,
                    m.User.org_role,
                    m.User.service_account,
                    m.User.service_admin,
                    m.Organization.id,
                    m.Organization.name,
                )
                .join(m.User, m.User.id == m.ApiKey.user_id)
                .join(m.Organization, m.Organization.id == m.User.org_id)
                .where(m.ApiKey.key_id == key_id)
            ).first()
        # Compare even when the key is unknown, so timing does not tell which.
        stored = row[0] if row is not None else b"\0" * 32
        ok = hmac.compare_digest(stored, hash_secret(secret))
        if row is None or not ok or row[1] is not None:
            raise Unauthenticated("invalid or revoked API key", reason="INVALID_API_KEY")
        principal = Principal(
            user_id=row[2],
            user=row[3],
            org_id=row[7],
            org=row[8],
            org_role=OrgRole(row[4]),
            service_account=bool(row[5]),
            key_id=key_id,
            service_admin=bool(row[6]),
        )
        with self._lock:
            self._cache[key_id] = _Entry(row[0], principal, time.monotonic() + self.ttl, seen)
        return principal

    def forget_key(self, key_id: str) -> None:
        with self._lock:
            self._cache.pop(key_id, None)

    def forget_user(self, user: str) -> None:
        """Drops cached keys of `user` (their role or flags changed)."""
        with self._lock:
            for k in [k for k, e in self._cache.items() if e.principal.user == user]:
                del self._cache[k]


def store_key(session: object, user_id: int, description: str) -> tuple[m.ApiKey, str]:
    from sqlalchemy.orm import Session

    assert isinstance(session, Session)
    key_id, secret, digest = new_key()
    row = m.ApiKey(
        key_id=key_id,
        user_id=user_id,
        secret_hash=digest,
        description=description,
        create_time=now_us(),
    )
    session.add(row)
    session.flush()
    return row, secret
