"""Where webhooks may go, the rules' pure parts (service/webhook_targets.py): IPv4
hosts read as browsers read them, addresses embedded in IPv6 and the allow-list, and
refusals that quote little of the input. Through the server:
tests/api/test_webhook_safety.py."""

from __future__ import annotations

import ipaddress

import pytest

from registry_server.service import webhook_targets
from registry_server.service.webhook_targets import TargetPolicy, TargetRefused


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("10.1", "10.0.0.1"),
        ("192.168.257", "192.168.1.1"),
        ("0x08080808", "8.8.8.8"),
        ("1.2.3.4.", "1.2.3.4"),
        ("example.com", None),
        ("1.2.3.example", None),
    ],
)
def test_ipv4_hosts_read_as_browsers_read_them(host: str, address: str | None) -> None:
    got = webhook_targets.parse_ipv4(host)
    assert (str(got) if got else None) == address


def test_policy_refuses_embedded_addresses_and_reads_the_allow_list() -> None:
    strict = TargetPolicy()
    assert webhook_targets.refusal(ipaddress.ip_address("::ffff:8.8.8.8"), strict) is None
    assert webhook_targets.refusal(ipaddress.ip_address("64:ff9b::808:808"), strict) is None
    assert webhook_targets.refusal(ipaddress.ip_address("64:ff9b::a00:1"), strict)
    assert webhook_targets.refusal(ipaddress.ip_address("2001::1"), strict)  # Teredo
    opened = TargetPolicy.of(False, ["10.20.0.0/16", " ", "fd00::/8"])
    assert webhook_targets.refusal(ipaddress.ip_address("10.20.1.1"), opened) is None
    assert webhook_targets.refusal(ipaddress.ip_address("::ffff:10.20.1.1"), opened) is None
    assert webhook_targets.refusal(ipaddress.ip_address("10.21.1.1"), opened) == "private"
    assert webhook_targets.refusal(ipaddress.ip_address("fd00::1"), opened) is None
    with pytest.raises(ValueError, match="not-a-cidr"):
        TargetPolicy.of(False, ["not-a-cidr"])


def test_refusal_messages_quote_little_of_the_input() -> None:
    with pytest.raises(TargetRefused) as caught:
        webhook_targets.parse_target("https://" + "9" * 500 + "/", TargetPolicy())
    assert len(str(caught.value)) < 300
