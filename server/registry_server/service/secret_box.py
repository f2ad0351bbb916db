"""Secrets stored encrypted under the server's key (`--secret-key-file`).

AES-256-GCM with a fresh 96-bit nonce per secret, bound to the row it belongs to
(the associated data), so a ciphertext copied to another row does not open. Stored
form: `v1:{key id}:{base64url(nonce + ciphertext)}`, the key id being the first 8
hex digits of the key's SHA-256, so an error can say which key a row needs.

The key file holds one or more keys, base64 of 32 bytes each, one a line (`#`
comments allowed): the first seals, every one opens. To rotate, put a new key first,
restart every replica, then run `registry-server db reseal-secrets`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

VERSION = "v1"
KEY_BYTES = 32
NONCE_BYTES = 12


class SecretUnavailable(Exception):
    """A stored secret this server cannot open (no key, another key, or tampered)."""


def key_id(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()[:8]


def read_keys(path: str) -> list[bytes]:
    """The keys of a key file; ValueError saying which line is wrong."""
    try:
        text = Path(path).read_text()
    except OSError as err:
        raise ValueError(f"cannot read the secret key file {path}: {err.strerror}") from None
    keys: list[bytes] = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            key = base64.b64decode(line, validate=True)
        except (binascii.Error, ValueError):
            key = b""
        if len(key) != KEY_BYTES:
            raise ValueError(
                f"{path} line {number}: not the base64 of a {KEY_BYTES}-byte key "
                "(make one with: openssl rand -base64 32)"
            )
        keys.append(key)
    if not keys:
        raise ValueError(f"{path} holds no key (make one with: openssl rand -base64 32)")
    return keys


class SecretBox:
    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys:
            raise ValueError("a SecretBox needs at least one key")
        self.keys = {key_id(k): AESGCM(k) for k in keys}
        self.sealing_id = key_id(keys[0])

    @classmethod
    def from_file(cls, path: str) -> SecretBox:
        return cls(read_keys(path))

    def seal(self, plaintext: str, context: str) -> str:
        nonce = os.urandom(NONCE_BYTES)
        sealed = self.keys[self.sealing_id].encrypt(nonce, plaintext.encode(), context.encode())
        payload = base64.urlsafe_b64encode(nonce + sealed).decode()
        return f"{VERSION}:{self.sealing_id}:{payload}"

    def sealed_with_current_key(self, stored: str) -> bool:
        return stored.startswith(f"{VERSION}:{self.sealing_id}:")

    def open(self, stored: str, context: str) -> str:
        version, _, rest = stored.partition(":")
        kid, _, payload = rest.partition(":")
        if version != VERSION or not payload:
            raise SecretUnavailable("the stored secret is not in a known encrypted form")
        aead = self.keys.get(kid)
        if aead is None:
            raise SecretUnavailable(
                f"the secret is encrypted with key {kid}, which is not in this server's "
                f"--secret-key-file (it has {', '.join(self.keys)})"
            )
        try:
            raw = base64.urlsafe_b64decode(payload)
            return aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], context.encode()).decode()
        except (InvalidTag, binascii.Error, ValueError):
            raise SecretUnavailable(
                f"the secret encrypted with key {kid} does not decrypt (altered or moved)"
            ) from None


def open_secret(stored: str, context: str, box: SecretBox | None) -> str:
    """A sealed secret's plaintext; SecretUnavailable when this server has no key."""
    if box is None:
        kid = stored.split(":")[1] if stored.count(":") >= 2 else "?"
        raise SecretUnavailable(
            f"the secret is stored encrypted (key {kid}) and this server was started "
            "without --secret-key-file"
        )
    return box.open(stored, context)
