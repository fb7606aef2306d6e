"""Which URLs may receive webhooks, and the address an attempt connects to.

A subscription URL is chosen by whoever holds an admin token, and the
worker runs inside the network: without these checks a webhook could be
pointed at a database, a metadata service or anything else on the inside
(SSRF). So:

- only ``https`` URLs, unless the operator allows ``http``;
- no user info in the URL (credentials would show in every listing);
- every address the host name resolves to must be public (no private,
  loopback, link-local, shared, multicast or reserved ranges) unless the
  operator allows private targets; a name that resolves to one such address
  is refused whole;
- the check runs again at every attempt, and the attempt connects to the
  address that passed it (app/webhooks/transport.py), so a name re-pointed
  after registration (DNS rebinding) cannot slip through between the check
  and the connection.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

MAX_URL_LENGTH = 2048
_DEFAULT_PORTS = {"https": 443, "http": 80}


class TargetRefused(ValueError):
    """The URL, or an address its host resolves to, may not receive webhooks."""


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str  # as written in the URL (lower case, no brackets)
    port: int
    path: str  # path and query, what goes on the request line

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == _DEFAULT_PORTS[self.scheme] else f"{host}:{self.port}"


def parse(url: str, *, allow_http: bool) -> Target:
    """The target a URL names; :class:`TargetRefused` saying why it may not be one."""
    if len(url) > MAX_URL_LENGTH:
        raise TargetRefused(f"the URL is longer than {MAX_URL_LENGTH} characters")
    if any(ord(ch) <= 0x20 or ord(ch) == 0x7f for ch in url):
        raise TargetRefused("the URL contains spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as ex:
        raise TargetRefused(f"the URL is malformed: {ex}") from None
    scheme = parts.scheme.lower()
    allowed = ("https", "http") if allow_http else ("https",)
    if scheme not in allowed:
        raise TargetRefused("only https URLs may receive webhooks" if not allow_http
                            else "only http and https URLs may receive webhooks")
    if parts.username is not None or parts.password is not None:
        raise TargetRefused("the URL must not contain user info")
    if not parts.hostname:
        raise TargetRefused("the URL names no host")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(scheme, parts.hostname, port or _DEFAULT_PORTS[scheme], path)


def refusal(address: str) -> str | None:
    """Why ``address`` may not receive webhooks, or None when it is public."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_loopback:
        return f"{ip} is a loopback address"
    if ip.is_link_local:
        return f"{ip} is a link-local address"
    if ip.is_multicast:
        return f"{ip} is a multicast address"
    if not ip.is_global:
        return f"{ip} is a private or reserved address"
    return None


def resolve(target: Target, *, allow_private: bool) -> str:
    """The address to connect to; :class:`TargetRefused` if any is not allowed.

    Raises ``OSError`` (``socket.gaierror``) when the name does not resolve.
    """
    infos = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
    # An AF_INET/AF_INET6 sockaddr starts with the address as text.
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addresses:
        raise socket.gaierror(f"{target.host} has no address")
    if not allow_private:
        for address in addresses:
            reason = refusal(address)
            if reason is not None:
                raise TargetRefused(f"{target.host} resolves to {reason}")
    return addresses[0]
