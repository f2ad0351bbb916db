"""One webhook POST to an address checked at connect time (DNS rebinding).

`post` resolves the URL's host, checks every address it gets (`webhook_targets`),
and connects to a checked address itself: the connection is pinned to that IP while
the Host header and, for https, the TLS server name and certificate check keep the
URL's host. A second lookup by a library (which a rebinding DNS server would answer
differently) never happens. Redirects are not followed: a 3xx is a failed attempt.
"""

from __future__ import annotations

import http.client
import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass

from .webhook_targets import IPAddress, Target, TargetPolicy, TargetRefused, addresses, parse_target

RESPONSE_READ_MAX = 64 * 1024
ERROR_MAX = 1000
RETRYABLE_STATUS = frozenset({408, 429})


@dataclass(frozen=True)
class AttemptResult:
    status_code: int  # 0: no HTTP answer
    error: str
    # Refused before connecting (target policy, undecryptable secret): never retried.
    refused: bool = False

    @property
    def succeeded(self) -> bool:
        return 200 <= self.status_code < 300

    @property
    def retryable(self) -> bool:
        if self.succeeded or self.refused:
            return False
        return (
            self.status_code == 0 or self.status_code >= 500 or self.status_code in RETRYABLE_STATUS
        )


class PinnedHTTPConnection(http.client.HTTPConnection):
    """HTTP to `address`, whatever `host` resolves to now."""

    def __init__(self, host: str, port: int, address: IPAddress, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self.address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((str(self.address), self.port), self.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class PinnedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to `address`; SNI and the certificate check use `host`."""

    def __init__(
        self, host: str, port: int, address: IPAddress, timeout: float, context: ssl.SSLContext
    ) -> None:
        super().__init__(host, port, timeout=timeout, context=context)
        self.address = address
        self.tls_context = context

    def connect(self) -> None:
        sock = socket.create_connection((str(self.address), self.port), self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            self.sock = self.tls_context.wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            raise


def connection(
    target: Target, address: IPAddress, timeout: float, context: ssl.SSLContext | None
) -> http.client.HTTPConnection:
    if target.scheme == "https":
        return PinnedHTTPSConnection(
            target.host, target.port, address, timeout, context or ssl.create_default_context()
        )
    return PinnedHTTPConnection(target.host, target.port, address, timeout)


def _describe(err: BaseException) -> str:
    return (f"{type(err).__name__}: {err}")[:ERROR_MAX]


def post(
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    *,
    policy: TargetPolicy,
    timeout: float,
    context: ssl.SSLContext | None = None,
) -> AttemptResult:
    """One blocking POST (run it on a worker thread); never raises for network trouble."""
    try:
        target = parse_target(url, policy)
        found = addresses(target, policy)
    except TargetRefused as err:
        return AttemptResult(0, f"refused: {err}"[:ERROR_MAX], refused=True)
    except (OSError, UnicodeError) as err:
        return AttemptResult(0, f"cannot resolve the host: {_describe(err)}"[:ERROR_MAX])
    last_error = ""
    for address in found:
        conn = connection(target, address, timeout, context)
        try:
            try:
                conn.connect()
            except OSError as err:  # the next checked address may answer
                last_error = f"connecting to {address}: {_describe(err)}"
                continue
            conn.request("POST", target.path, body=body, headers=dict(headers))
            response = conn.getresponse()
            response.read(RESPONSE_READ_MAX)
            status = int(response.status)
        except (OSError, http.client.HTTPException, ValueError) as err:
            return AttemptResult(0, _describe(err))
        finally:
            conn.close()
        if 200 <= status < 300:
            return AttemptResult(status, "")
        if 300 <= status < 400:
            return AttemptResult(status, f"HTTP {status}: redirects are not followed")
        return AttemptResult(status, f"HTTP {status} {response.reason}"[:ERROR_MAX])
    return AttemptResult(0, last_error[:ERROR_MAX] or "connection failed")
