"""Who the client is: the TCP peer, or an ``X-Forwarded-For`` hop vouched for by a trusted proxy.

``X-Forwarded-For`` is read only when the peer is inside ``TRUSTED_PROXIES``. Reading the header
from the right, each hop that is itself a trusted proxy is skipped; the first hop that is not is
the client. A malformed hop stops the walk and the last address we could vouch for is the client,
so a forged or garbled header never yields a fresh identity. Only the last ``max_hops`` hops are
read, so an enormous header costs bounded work.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from functools import lru_cache

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_hop(hop: str) -> Address | None:
    """An address from one ``X-Forwarded-For`` entry (port and brackets allowed), or None."""
    hop = hop.strip()
    if hop.startswith("["):
        hop = hop[1 : hop.find("]")] if "]" in hop else ""
    elif hop.count(":") == 1:
        hop = hop.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(hop)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class ClientIdentity:
    """Resolves the client id used by the rate limiter."""

    def __init__(self, trusted_proxies: Sequence[Network] = (), max_hops: int = 20) -> None:
        self._trusted = tuple(trusted_proxies)
        self._max_hops = max_hops
        self._is_trusted = lru_cache(maxsize=4096)(self._check_trusted)

    def resolve(self, peer: str | None, forwarded_for: Iterable[str] = ()) -> str:
        """The client's id for a request from ``peer`` carrying these header values."""
        if peer is None:
            return "unknown"
        return self.forwarded_chain(peer, forwarded_for)[0]

    def forwarded_chain(self, peer: str | None, forwarded_for: Iterable[str] = ()) -> list[str]:
        """The hops we can vouch for, client first and ``peer`` last (empty without a peer).

        Without a trusted peer that is the peer alone: whatever it wrote in ``X-Forwarded-For``
        is dropped. Behind trusted proxies it is the client they name, then each of them, at
        most ``max_hops`` read from the header: what the gateway forwards as its own
        ``X-Forwarded-For``.
        """
        if peer is None:
            return []
        chain = [peer]
        if not self._trusted or not self._is_trusted(peer):
            return chain
        remaining = self._max_hops
        for value in reversed(list(forwarded_for)):
            for hop in reversed(value.rsplit(",", remaining)):
                if remaining == 0:
                    return chain[::-1]
                remaining -= 1
                address = parse_hop(hop)
                if address is None:
                    return chain[::-1]
                client = str(address)
                chain.append(client)
                if not self._is_trusted(client):
                    return chain[::-1]
        return chain[::-1]

    def _check_trusted(self, host: str) -> bool:
        address = parse_hop(host)
        return address is not None and any(address in network for network in self._trusted)
