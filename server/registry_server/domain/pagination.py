"""Page sizes and opaque keyset page tokens (AIP-158): one codec for every list."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from .errors import InvalidArgument

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000


@dataclass(frozen=True)
class ListParams:
    """What a list request asks for: its page, and its filter and order when it has them."""

    page_size: int = 0
    page_token: str = ""
    filter: str = ""
    order_by: str = ""

    @classmethod
    def of(cls, request: Any) -> ListParams:
        """From any List*Request message."""
        return cls(
            request.page_size,
            request.page_token,
            getattr(request, "filter", ""),
            getattr(request, "order_by", ""),
        )


def page_size(value: int, field: str = "page_size") -> int:
    if value < 0:
        raise InvalidArgument(field, "must not be negative")
    if value == 0:
        return DEFAULT_PAGE_SIZE
    return min(value, MAX_PAGE_SIZE)


def _fingerprint(query: tuple[Any, ...]) -> str:
    return hashlib.sha256(json.dumps(query, default=str).encode()).hexdigest()[:16]


def encode_token(key: tuple[Any, ...], query: tuple[Any, ...]) -> str:
    raw = json.dumps({"k": list(key), "q": _fingerprint(query)}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_token(
    token: str, query: tuple[Any, ...], key_len: int, field: str = "page_token"
) -> tuple[Any, ...] | None:
    """None for an empty token; INVALID_ARGUMENT for garbage or a token of another query."""
    if not token:
        return None
    try:
        padded = token + "=" * (-len(token) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (ValueError, binascii.Error, UnicodeError):
        raise InvalidArgument(field, "is not a page token returned by this method") from None
    if not isinstance(data, dict) or not isinstance(data.get("k"), list):
        raise InvalidArgument(field, "is not a page token returned by this method")
    if data.get("q") != _fingerprint(query):
        raise InvalidArgument(field, "was issued for a different parent, filter or order_by")
    if len(data["k"]) != key_len or not all(
        isinstance(v, (int, str, float)) and not isinstance(v, bool) for v in data["k"]
    ):
        raise InvalidArgument(field, "is not a page token returned by this method")
    return tuple(data["k"])
