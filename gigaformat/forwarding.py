"""The public origin of a request behind proxies: ``Forwarded`` (RFC 7239) and ``X-Forwarded-*``.

tile-proxy sets them (``forwarding_headers``); a render node reads them (``public_origin``) only when the
connection comes from an address it trusts (``--trusted-proxies``), so a client cannot choose the ``id``s
the node writes into IIIF documents. Values that are not a plain scheme, host[:port] or path prefix are
ignored, never copied into a document.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
LOOPBACK = "127.0.0.1/32,::1/128"
_HOST = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}"
                   r"[A-Za-z0-9])?)*|\[[0-9A-Fa-f:.]{2,45}\])(?::[0-9]{1,5})?$")
_PREFIX = re.compile(r"^(?:/[A-Za-z0-9._~-]+)*$")
_SCHEMES = ("http", "https")


@dataclass(frozen=True)
class Origin:
    """``scheme://host`` plus a path prefix under which the service is mounted ('' for none)."""

    scheme: str
    host: str
    prefix: str = ""

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://{self.host}{self.prefix}"


def parse_networks(text: str) -> tuple[Network, ...]:
    """Comma-separated addresses or CIDR networks; ValueError naming the bad one."""
    networks = []
    for part in (p.strip() for p in text.split(",")):
        if part:
            try:
                networks.append(ipaddress.ip_network(part, strict=False))
            except ValueError:
                raise ValueError(f"{part!r} is not an IP address or network") from None
    return tuple(networks)


_PUBLIC_URL = re.compile(r"^https?://[^/?#\s]+(/[^?#\s]*)?$")


def public_base_url(text: str) -> str:
    """A configured public base URL (``--public-url``), without its trailing slash ('' for none); ValueError
    when it is not ``http(s)://host[:port][/prefix]``."""
    url = text.strip().rstrip("/")
    if url and not _PUBLIC_URL.match(url):
        raise ValueError(f"{text!r}: use http(s)://host[:port][/prefix]")
    return url


def _ip(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(address.strip("[]"))
    except ValueError:
        return None


def is_trusted(address: str, trusted: tuple[Network, ...]) -> bool:
    ip = _ip(address)
    return ip is not None and any(ip in network for network in trusted)


def is_host(text: str) -> bool:
    return len(text) <= 255 and _HOST.match(text) is not None


def _forwarded_elements(value: str) -> list[dict[str, str]]:
    elements = []
    for element in value.split(","):
        pairs = {}
        for pair in element.split(";"):
            name, _, item = pair.strip().partition("=")
            pairs[name.strip().lower()] = item.strip().strip('"')
        elements.append(pairs)
    return elements


def public_origin(peer: str, origin: Origin, headers: Mapping[str, str], trusted: tuple[Network, ...]) -> Origin:
    """The origin the client used. ``origin`` is what this server saw (its scheme and the Host header);
    ``headers`` maps lower-case names to values. Forwarding headers count only when ``peer`` is trusted;
    along ``Forwarded`` the element of the first untrusted hop from the right is the one that counts."""
    if not is_trusted(peer, trusted):
        return origin
    scheme, host, prefix = origin.scheme, origin.host, origin.prefix
    if forwarded := headers.get("forwarded"):
        elements = _forwarded_elements(forwarded)
        chosen = elements[-1]
        for element in reversed(elements[:-1]):
            if not is_trusted(chosen.get("for", ""), trusted):
                break
            chosen = element
        scheme = chosen.get("proto", scheme).lower()
        host = chosen.get("host", host)
    else:
        scheme = headers.get("x-forwarded-proto", scheme).split(",")[-1].strip().lower()
        host = headers.get("x-forwarded-host", host).split(",")[-1].strip()
    forwarded_prefix = headers.get("x-forwarded-prefix", "").split(",")[-1].strip().rstrip("/")
    if _PREFIX.match(forwarded_prefix) and len(forwarded_prefix) <= 128:
        prefix = forwarded_prefix
    return Origin(scheme if scheme in _SCHEMES else origin.scheme, host if is_host(host) else origin.host, prefix)


def forwarding_headers(client: str, scheme: str, host: str) -> bytes:
    """The request headers a proxy adds (HTTP/1.1 lines, each ending in CRLF) for a client at ``client``
    that asked ``scheme://host``; nothing that is not a plain value is passed on."""
    lines = []
    element = []
    if _ip(client) is not None:
        element.append(f'for="[{client}]"' if ":" in client else f"for={client}")
        lines.append(f"X-Forwarded-For: {client}\r\n")
    if scheme in _SCHEMES:
        lines.append(f"X-Forwarded-Proto: {scheme}\r\n")
        element.append(f"proto={scheme}")
    if is_host(host):
        lines.append(f"X-Forwarded-Host: {host}\r\n")
        element.append(f'host="{host}"')
    if element:
        lines.append(f"Forwarded: {';'.join(element)}\r\n")
    return "".join(lines).encode()
