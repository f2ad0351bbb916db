"""Where webhooks may go (SPEC section 5): the URL rules, and the address check made
when an automation is created or updated and again before every delivery.

- `https://` only, unless the operator allows `http://` (`TargetPolicy.allow_http`).
- No userinfo (`user:pass@`): the URL is shown to every registry member, and the
  signing secret is what authenticates a delivery. Any port is allowed: with the
  address classes below refused, a port on a public host reaches nothing internal.
- A host must not be or resolve to a loopback, private (RFC 1918), shared (CGNAT,
  100.64/10), link-local, unique-local, multicast, unspecified, broadcast or otherwise
  reserved address, whatever its spelling: IPv4 literals are read as the WHATWG URL
  standard (and so browsers and `inet_aton`) read them (`2130706433`, `127.1`,
  `0x7f.1`, `0177.0.0.1`, a trailing dot), IPv6 literals with the IPv4 address they
  carry (`::ffff:127.0.0.1`, NAT64 `64:ff9b::/96`, 6to4 `2002::/16`), and `localhost`
  and `*.localhost` as loopback without asking DNS (RFC 6761).
- A host name is refused when any of its addresses is refused: a delivery connects
  to one of the addresses checked (`webhook_http`), never to a second lookup's.
- `TargetPolicy.allow_networks` (the operator's allow-list) opens chosen ranges;
  unspecified, multicast and broadcast addresses stay refused (0.0.0.0 reaches this
  host, and neither of the others is one receiver).
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

from ..domain.errors import InvalidArgument

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

URL_MAX = 2048
# Errors quote at most this much of the caller's input.
QUOTE_MAX = 200
DEFAULT_PORTS = {"http": 80, "https": 443}

_LABEL = re.compile(r"^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$")
_NUMERIC_LABEL = re.compile(r"^(?:[0-9]+|0x[0-9a-f]*)$")
_LOCALHOST = (ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1"))


def _networks(*pairs: tuple[str, str]) -> tuple[tuple[IPNetwork, str], ...]:
    return tuple((ipaddress.ip_network(cidr), label) for cidr, label in pairs)


# Refused unless allow-listed, first match names the class. Anything else that Python's
# `ipaddress` does not call global is refused as "reserved".
_REFUSED_V4 = _networks(
    ("127.0.0.0/8", "loopback"),
    ("10.0.0.0/8", "private"),
    ("172.16.0.0/12", "private"),
    ("192.168.0.0/16", "private"),
    ("100.64.0.0/10", "shared address space (CGNAT)"),
    ("169.254.0.0/16", "link-local"),
    ("0.0.0.0/8", "this-network"),
    ("192.0.0.0/24", "reserved (IETF protocol assignments)"),
    ("192.0.2.0/24", "reserved (documentation)"),
    ("198.51.100.0/24", "reserved (documentation)"),
    ("203.0.113.0/24", "reserved (documentation)"),
    ("198.18.0.0/15", "reserved (benchmarking)"),
    ("192.88.99.0/24", "reserved (6to4 relay)"),
    ("240.0.0.0/4", "reserved"),
)
_REFUSED_V6 = _networks(
    ("::1/128", "loopback"),
    ("::/96", "reserved (IPv4-compatible)"),
    ("fc00::/7", "unique-local"),
    ("fe80::/10", "link-local"),
    ("fec0::/10", "site-local (deprecated)"),
    ("64:ff9b:1::/48", "private (local NAT64)"),
    ("2001::/32", "reserved (Teredo)"),
    ("2001:db8::/32", "reserved (documentation)"),
    ("100::/64", "reserved (discard)"),
    ("::/8", "reserved"),
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_BROADCAST = ipaddress.ip_address("255.255.255.255")


@dataclass(frozen=True)
class TargetPolicy:
    """What this server may send webhooks to (`registry-server serve` flags)."""

    allow_http: bool = False
    allow_networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def of(cls, allow_http: bool, cidrs: Iterable[str]) -> TargetPolicy:
        """ValueError naming the bad entry when a CIDR does not parse."""
        networks: list[IPNetwork] = []
        for cidr in cidrs:
            text = cidr.strip()
            if not text:
                continue
            try:
                networks.append(ipaddress.ip_network(text, strict=False))
            except ValueError as err:
                raise ValueError(f"webhook allow-list entry {text!r}: {err}") from None
        return cls(allow_http, tuple(networks))

    def allows(self, address: IPAddress) -> bool:
        return any(address in network for network in self.allow_networks)


class TargetRefused(Exception):
    """The URL or one of its addresses is not a permitted webhook target."""


@dataclass(frozen=True)
class Target:
    """A syntactically valid webhook URL, split the way the delivery uses it."""

    scheme: str
    host: str  # for the Host header and TLS server name (IPv6 without brackets)
    port: int
    path: str  # path and query, as the request line carries them
    literal: IPAddress | None  # the host as an IP address, whatever its spelling

    @property
    def is_localhost(self) -> bool:
        name = self.host.rstrip(".")
        return name == "localhost" or name.endswith(".localhost")


def quote(value: str) -> str:
    """The caller's input as an error message may repeat it."""
    return repr(value if len(value) <= QUOTE_MAX else value[:QUOTE_MAX] + "...")


# --- parsing ------------------------------------------------------------------------


def _ipv4_part(part: str) -> int | None:
    """One part of a WHATWG IPv4 host: decimal, 0x hex or 0-prefixed octal."""
    if part.startswith("0x"):
        digits, base = part[2:], 16
    elif len(part) > 1 and part.startswith("0"):
        digits, base = part[1:], 8
    else:
        digits, base = part, 10
    if not digits:
        return 0 if base == 16 else None
    try:
        return int(digits, base)
    except ValueError:
        return None


def parse_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """The WHATWG URL IPv4 parser: None when `host` is a name; TargetRefused when it
    ends in a number but is no valid address (browsers reject those too)."""
    parts = host.split(".")
    if len(parts) > 1 and parts[-1] == "":
        parts.pop()
    if not parts or not _NUMERIC_LABEL.match(parts[-1]):
        return None
    numbers = [_ipv4_part(p) for p in parts]
    if len(parts) > 4 or any(n is None for n in numbers):
        raise TargetRefused(f"host {quote(host)} is not a valid IPv4 address")
    values = [n for n in numbers if n is not None]
    last_limit = 256 ** (5 - len(values))
    if any(n > 255 for n in values[:-1]) or values[-1] >= last_limit:
        raise TargetRefused(f"host {quote(host)} is not a valid IPv4 address")
    value = values[-1] + sum(n << (8 * (3 - i)) for i, n in enumerate(values[:-1]))
    return ipaddress.IPv4Address(value)


def _literal(host: str) -> IPAddress | None:
    if ":" in host:  # urlsplit only gives colons for a bracketed IPv6 literal
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            raise TargetRefused(f"host {quote(host)} is not a valid IPv6 address") from None
        # A zone (`%eth0`) only exists on link-local addresses; judge the address.
        return ipaddress.ip_address(str(address).split("%", 1)[0])
    return parse_ipv4(host)


def _check_name(host: str) -> None:
    name = host[:-1] if host.endswith(".") else host
    labels = name.split(".")
    if len(name) > 253 or not all(_LABEL.match(label) for label in labels):
        raise TargetRefused(
            f"host {quote(host)} is not a valid host name (letters, digits, '-', '_' and "
            "'.'; punycode for other scripts)"
        )


def parse_target(url: str, policy: TargetPolicy) -> Target:
    """The URL's parts; TargetRefused saying why it is not a permitted webhook URL.
    Literal addresses are checked here too; host names are left to `addresses`."""
    if not url:
        raise TargetRefused("is required")
    if len(url) > URL_MAX:
        raise TargetRefused(f"must be at most {URL_MAX} characters")
    if not url.isascii() or any(ch.isspace() or not ch.isprintable() for ch in url):
        raise TargetRefused(
            "must be ASCII without spaces (percent-encode others; punycode for hosts)"
        )
    try:
        parts: SplitResult = urlsplit(url)
        port = parts.port
    except ValueError as err:
        raise TargetRefused(f"is not a valid URL: {str(err)[:QUOTE_MAX]}") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        raise TargetRefused("must be an https:// URL with a host")
    if scheme == "http" and not policy.allow_http:
        raise TargetRefused(
            "must be https:// (this server sends plain http:// only when started with "
            "--webhook-allow-http)"
        )
    if parts.username is not None or parts.password is not None:
        raise TargetRefused(
            "must not carry user information (user:password@); deliveries are "
            "authenticated by their signature"
        )
    if port == 0:
        raise TargetRefused("port 0 is not a port")
    host = parts.hostname
    literal = _literal(host)
    if literal is None:
        _check_name(host)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    target = Target(scheme, host, port or DEFAULT_PORTS[scheme], path, literal)
    if literal is not None:
        check_addresses(target, [literal], policy)
    return target


# --- addresses ---------------------------------------------------------------------------


def embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries to (mapped, NAT64, 6to4)."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address.sixtofour


_NEVER = ("unspecified", "multicast", "broadcast")


def _never(address: IPAddress) -> str | None:
    """Classes no allow-list opens."""
    if address.is_unspecified:
        return "unspecified"
    if address.is_multicast:
        return "multicast"
    if address == _BROADCAST:
        return "broadcast"
    return None


def _class(address: IPAddress) -> str | None:
    table = _REFUSED_V4 if isinstance(address, ipaddress.IPv4Address) else _REFUSED_V6
    for network, label in table:
        if address in network:
            return label
    return None if address.is_global else "reserved"


def refusal(address: IPAddress, policy: TargetPolicy) -> str | None:
    """Why `address` may not receive webhooks (an address class), or None. An IPv6
    address that carries an IPv4 one is judged by where it leads: that IPv4 address."""
    inner = embedded_ipv4(address)
    judged = inner or address
    never = _never(judged) or _never(address)
    if never:
        return never
    if policy.allows(address) or policy.allows(judged):
        return None
    label = _class(judged)
    if label and inner is not None:
        return f"{label} (as {inner})"
    return label


def connect_address(address: IPAddress) -> IPAddress:
    """The address to connect to: an IPv4-mapped IPv6 address as the IPv4 it maps."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def check_addresses(target: Target, found: Sequence[IPAddress], policy: TargetPolicy) -> None:
    for address in found:
        why = refusal(address, policy)
        if not why:
            continue
        article = "an" if why[0] in "aeiou" else "a"
        what = f"{article} {why} address"
        # A host name's addresses are not repeated: callers need not learn internal DNS.
        said = (
            f"{address} is {what}"
            if target.literal is not None
            else f"{quote(target.host)} resolves to {what}"
        )
        hint = "" if why in _NEVER else " (an operator may open a range with --webhook-allow-cidr)"
        raise TargetRefused(f"{said}: webhooks may not go there{hint}")


def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address of `host` (blocking: run it off the event loop). Tests replace
    this function to play DNS."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    found: list[IPAddress] = []
    for _family, _type, _proto, _canon, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in found:
            found.append(address)
    return found


def addresses(target: Target, policy: TargetPolicy) -> list[IPAddress]:
    """The addresses to connect to, each checked; TargetRefused when any is refused,
    OSError (socket.gaierror) when the name does not resolve."""
    if target.literal is not None:
        found = [target.literal]
    elif target.is_localhost:
        found = list(_LOCALHOST)
    else:
        found = resolve(target.host, target.port)
        if not found:
            raise socket.gaierror(f"{target.host} has no address")
    check_addresses(target, found, policy)
    return [connect_address(a) for a in found]


def check_url(url: str, field: str, policy: TargetPolicy) -> str:
    """`url` when it is a permitted target now (resolving its host: blocking);
    INVALID_ARGUMENT naming `field` otherwise."""
    try:
        addresses(parse_target(url, policy), policy)
    except TargetRefused as err:
        raise InvalidArgument(field, str(err)) from None
    except (OSError, UnicodeError) as err:
        raise InvalidArgument(field, f"its host does not resolve: {err}") from None
    return url
