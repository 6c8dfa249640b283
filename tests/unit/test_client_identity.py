"""Who the client is, and that a forged X-Forwarded-For gives nobody a fresh limit."""

import ipaddress

import pytest

from adapters.http.client_identity import ClientIdentity, parse_hop

PROXIES = [ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("fd00::/8")]


def test_without_trusted_proxies_the_peer_is_the_client() -> None:
    identity = ClientIdentity()
    assert identity.resolve("203.0.113.9", ["1.2.3.4"]) == "203.0.113.9"


def test_header_from_an_untrusted_peer_is_ignored() -> None:
    identity = ClientIdentity(PROXIES)
    assert identity.resolve("203.0.113.9", ["1.2.3.4"]) == "203.0.113.9"


def test_trusted_peer_vouches_for_the_right_most_hop() -> None:
    identity = ClientIdentity(PROXIES)
    assert identity.resolve("10.0.0.2", ["198.51.100.7"]) == "198.51.100.7"


def test_trusted_hops_are_skipped_from_the_right() -> None:
    identity = ClientIdentity(PROXIES)
    header = "6.6.6.6, 198.51.100.7, 10.1.1.1, 10.2.2.2"
    assert identity.resolve("10.0.0.2", [header]) == "198.51.100.7"


def test_spoofed_left_most_entries_do_not_matter() -> None:
    identity = ClientIdentity(PROXIES)
    assert identity.resolve("10.0.0.2", ["1.1.1.1, 198.51.100.7"]) == "198.51.100.7"
    assert identity.resolve("10.0.0.2", ["2.2.2.2, 198.51.100.7"]) == "198.51.100.7"


def test_several_header_lines_read_as_one_list() -> None:
    identity = ClientIdentity(PROXIES)
    assert identity.resolve("10.0.0.2", ["198.51.100.7", "10.9.9.9"]) == "198.51.100.7"


def test_only_trusted_hops_falls_back_to_the_left_most() -> None:
    identity = ClientIdentity(PROXIES)
    assert identity.resolve("10.0.0.2", ["10.3.3.3, 10.4.4.4"]) == "10.3.3.3"


def test_missing_header_leaves_the_peer() -> None:
    assert ClientIdentity(PROXIES).resolve("10.0.0.2", []) == "10.0.0.2"


@pytest.mark.parametrize(
    "header", ["not-an-ip", "", ",,,", "999.1.1.1", "1.2.3.4.5", "\x00", "[::1", "unknown"]
)
def test_malformed_hop_stops_at_the_last_vouched_address(header: str) -> None:
    identity = ClientIdentity(PROXIES)
    assert identity.resolve("10.0.0.2", [header]) == "10.0.0.2"


def test_enormous_header_is_read_only_for_the_last_hops() -> None:
    identity = ClientIdentity(PROXIES, max_hops=5)
    header = ", ".join(["10.0.0.1"] * 100_000)
    assert identity.resolve("10.0.0.2", [header]) == "10.0.0.1"


def test_ipv6_and_ports_are_understood() -> None:
    identity = ClientIdentity(PROXIES)
    assert identity.resolve("fd00::1", ["[2001:db8::5]:4711"]) == "2001:db8::5"
    assert identity.resolve("10.0.0.2", ["198.51.100.7:8080"]) == "198.51.100.7"


def test_ipv4_mapped_peer_is_normalised() -> None:
    assert str(parse_hop("::ffff:10.0.0.2")) == "10.0.0.2"


def test_no_peer_is_unknown() -> None:
    assert ClientIdentity().resolve(None, []) == "unknown"


def test_the_forwarded_chain_of_an_untrusted_peer_is_the_peer_alone() -> None:
    identity = ClientIdentity(PROXIES)
    assert identity.forwarded_chain("203.0.113.5", ["1.2.3.4"]) == ["203.0.113.5"]


def test_the_forwarded_chain_keeps_the_trusted_part_client_first() -> None:
    identity = ClientIdentity(PROXIES)
    chain = identity.forwarded_chain("10.0.0.1", ["6.6.6.6, 198.51.100.2, 10.0.0.9"])
    assert chain == ["198.51.100.2", "10.0.0.9", "10.0.0.1"]


def test_the_forwarded_chain_is_capped_at_max_hops() -> None:
    identity = ClientIdentity(PROXIES, max_hops=5)
    header = ", ".join(f"10.1.0.{i}" for i in range(1, 200))
    chain = identity.forwarded_chain("10.0.0.1", [header])
    assert len(chain) == 6
    assert chain[-1] == "10.0.0.1"
