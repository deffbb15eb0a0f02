"""The client address of a request: the TCP peer, or what a trusted proxy says it forwarded.

`X-Forwarded-For` is a claim anyone can send; it is believed only from the proxies listed in
`PHANTOM_TRUSTED_PROXIES` (comma-separated addresses or CIDRs; default none). Walking the header
from the right, the first address that is not a trusted proxy is the client (a client cannot
push itself further right than the proxy that appended its peer address).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from functools import lru_cache

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_proxies(text: str) -> tuple[Network, ...]:
    """`10.0.0.0/8, 127.0.0.1` -> networks; a bad entry names itself."""
    out = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            out.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise ValueError(f"PHANTOM_TRUSTED_PROXIES: {part!r} is not an address or CIDR") from None
    return tuple(out)


def proxies_from_env(env: Mapping[str, str]) -> tuple[Network, ...]:
    """The trusted proxies the environment lists."""
    return parse_proxies(env.get("PHANTOM_TRUSTED_PROXIES", ""))


class AddressResolver:
    """Resolves the client address of a request given its peer and X-Forwarded-For header."""

    def __init__(self, trusted: Sequence[Network] = ()) -> None:
        self.trusted = tuple(trusted)
        self._is_trusted = lru_cache(maxsize=4096)(self._check)

    def _check(self, addr: str) -> bool:
        try:
            ip = ipaddress.ip_address(addr)
        except ValueError:
            return False
        return any(ip in net for net in self.trusted)

    def client(self, peer: str | None, forwarded_for: str | None) -> str:
        """The address to attribute the request to ("unknown" when the peer is not known)."""
        peer = peer or "unknown"
        if not self.trusted or not forwarded_for or not self._is_trusted(peer):
            return peer
        hops = [h.strip() for h in forwarded_for.split(",")][-32:]
        for hop in reversed(hops):
            if not hop:
                continue
            if not self._is_trusted(hop):
                return _normal(hop)
        return peer


def _normal(hop: str) -> str:
    """A forwarded address in canonical text, or a marker for garbage (still one subject for the limits)."""
    try:
        return str(ipaddress.ip_address(hop))
    except ValueError:
        return "invalid-forwarded-address"
