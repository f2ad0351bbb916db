"""The Standard Webhooks scheme (https://www.standardwebhooks.com/) that signs the
registry's webhook deliveries, for the server and for receivers written in Python.

A delivery carries three headers:

    webhook-id         the same on every attempt of one event (dedupe on it)
    webhook-timestamp  Unix seconds when this attempt was signed
    webhook-signature  `v1,` and the base64 HMAC-SHA256 of "{id}.{timestamp}.{body}"

A secret is `whsec_` and the base64 of the key bytes; the HMAC key is those bytes.

    from registry_client.webhooks import verify

    verify(secret, request.headers, request.body)  # raises WebhookVerificationError
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping

SECRET_PREFIX = "whsec_"
# Standard Webhooks asks for 24 to 64 bytes of key.
KEY_BYTES_MIN = 24
KEY_BYTES_MAX = 64
KEY_BYTES_NEW = 32
# How old (or how far in the future) a timestamp may be, in seconds.
DEFAULT_TOLERANCE = 300


class WebhookVerificationError(Exception):
    """The delivery is not signed with the secret, or its timestamp is out of tolerance."""


def new_secret() -> str:
    """A fresh random secret, `whsec_` + base64 of 32 bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(KEY_BYTES_NEW)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key of a `whsec_` secret; ValueError (saying why) when it is not one."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError(f"must start with {SECRET_PREFIX!r}")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"must be {SECRET_PREFIX!r} followed by standard base64") from None
    if not KEY_BYTES_MIN <= len(key) <= KEY_BYTES_MAX:
        raise ValueError(
            f"must encode {KEY_BYTES_MIN} to {KEY_BYTES_MAX} bytes of key (got {len(key)})"
        )
    return key


def signature(key: bytes, webhook_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value (one `v1,` signature)."""
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def verify(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    now: float | None = None,
) -> None:
    """Checks a delivery's headers (any letter case) against `secret` and `body`."""
    lower = {k.lower(): v for k, v in headers.items()}
    webhook_id = lower.get("webhook-id", "")
    stamp = lower.get("webhook-timestamp", "")
    if not webhook_id or not stamp.isdigit():
        raise WebhookVerificationError("missing webhook-id or webhook-timestamp")
    current = time.time() if now is None else now
    if abs(current - int(stamp)) > tolerance:
        raise WebhookVerificationError("webhook-timestamp is out of tolerance")
    expected = signature(secret_key(secret), webhook_id, int(stamp), body)
    # The header may list several space-separated signatures (during a key rotation).
    if not any(
        hmac.compare_digest(expected, given) for given in lower.get("webhook-signature", "").split()
    ):
        raise WebhookVerificationError("no matching v1 signature")


__all__ = [
    "SECRET_PREFIX",
    "WebhookVerificationError",
    "new_secret",
    "secret_key",
    "signature",
    "verify",
]
