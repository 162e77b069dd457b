"""Which addresses a crawler may connect to, and how URLs appear in logs and outputs.

Loopback and private networks are refused unless the job allows them; link-local addresses
(which include cloud metadata endpoints such as 169.254.169.254) and other special ranges are
always refused: no image host lives there.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from urllib.parse import urlsplit, urlunsplit

ALLOWED_SCHEMES = ("http", "https")


class Refused(Exception):
    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason, self.detail = reason, detail


def address_verdict(ip: str, allow_private: bool) -> str | None:
    """None when `ip` may be contacted, else why not."""
    addr = ipaddress.ip_address(ip)
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
        addr = addr.ipv4_mapped
    if addr.is_link_local:
        return "link-local (cloud metadata) address"
    if addr.is_multicast or addr.is_unspecified or (addr.is_reserved and not addr.is_private):
        return "reserved address"
    if addr.is_loopback or addr.is_private:
        return None if allow_private else "loopback or private address"
    return None


async def check_url(url: str, allow_private: bool) -> None:
    """Refuse a URL by scheme, or when its host resolves to any refused address."""
    parts = urlsplit(url)
    if parts.scheme not in ALLOWED_SCHEMES:
        raise Refused("bad_scheme", f"scheme {parts.scheme or '(none)'!r} is not http or https")
    host = parts.hostname
    if not host:
        raise Refused("bad_scheme", "URL has no host")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise Refused("fetch_error", f"cannot resolve {host}: {exc}") from None
    for info in infos:
        why = address_verdict(info[4][0], allow_private)
        if why:
            raise Refused("blocked_address", f"{host} resolves to {info[4][0]}: {why}")


_USERINFO = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s@]+@")


def scrub(text: str | None) -> str | None:
    """Any URL credentials inside free text (error messages) replaced by ***."""
    return _USERINFO.sub(r"\1***@", text) if text else text


def redact(url: str) -> str:
    """The URL without user:password (for logs, rows and reports)."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, f"***@{host}", parts.path, parts.query, parts.fragment))
