"""Which addresses a crawler may connect to, and how URLs appear in logs and outputs.

One allow-list: globally routable addresses (`ipaddress.is_global`), plus loopback, private and
shared (100.64.0.0/10) addresses when the job allows private networks. Refused always, whatever
the setting: cloud metadata endpoints (METADATA, IPv4 and IPv6), link-local, multicast and
reserved ranges. IPv6 forms that embed an IPv4 address (mapped, 6to4, NAT64, Teredo) are judged
by that address. `check_url` returns the addresses it judged, and the client connects to one
of them (no second DNS lookup a rebinding host could answer differently).
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from urllib.parse import urlsplit, urlunsplit

from schemas.reasons import InputError, Reason

ALLOWED_SCHEMES = ("http", "https")
MAX_URL_CHARS = 8192   # longer is not an image URL (browsers and CDNs stop well before)

METADATA = [ipaddress.ip_network(n) for n in (
    "169.254.169.254/32",   # AWS, GCP, Azure, OpenStack, DigitalOcean, Oracle, Hetzner, IBM, Huawei
    "169.254.170.2/32",     # AWS ECS task metadata and credentials
    "169.254.169.253/32",   # AWS VPC DNS
    "169.254.0.23/32",      # Tencent Cloud
    "100.100.100.200/32",   # Alibaba Cloud (in the shared 100.64.0.0/10 range)
    "192.0.0.192/32",       # Oracle Cloud Infrastructure Classic
    "168.63.129.16/32",     # Azure WireServer (a public address that answers only inside Azure)
    "fd00:ec2::254/128",    # AWS instance metadata over IPv6
    "fd00:ec2::23/128",     # AWS VPC DNS over IPv6
    "fd20:ce::254/128",     # Google Cloud metadata over IPv6
)]
SHARED = ipaddress.ip_network("100.64.0.0/10")
NAT64 = ipaddress.ip_network("64:ff9b::/96")
THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")   # 0.x connects to this host on Linux


def embedded_ipv4(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if isinstance(addr, ipaddress.IPv4Address):
        return None
    if addr.ipv4_mapped or addr.sixtofour:
        return addr.ipv4_mapped or addr.sixtofour
    if addr.teredo:
        return addr.teredo[1]
    if addr in NAT64:
        return ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)
    return None


def address_verdict(ip: str, allow_private: bool) -> str | None:
    """None when `ip` may be contacted, else why not."""
    addr = ipaddress.ip_address(ip.split("%", 1)[0])
    a = embedded_ipv4(addr) or addr
    if any(x in net for x in (addr, a) for net in METADATA):
        return "cloud metadata address"
    if a.is_link_local:
        return "link-local (cloud metadata) address"
    if not a.is_loopback and (a.is_multicast or a.is_unspecified or a.is_reserved or (a.version == 4 and a in THIS_NETWORK)):
        return "reserved address"
    if a.is_global:
        return None
    if a.is_loopback or a.is_private or a in SHARED:
        return None if allow_private else "loopback or private address"
    return "not a globally routable address"


async def check_url(url: str, allow_private: bool) -> list[str]:
    """The addresses to connect to for `url` (in resolver order); raises InputError by scheme, shape, or
    when its host resolves to any refused address."""
    if len(url) > MAX_URL_CHARS:
        raise InputError(Reason.BAD_URL, f"URL of {len(url)} characters > {MAX_URL_CHARS}")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InputError(Reason.BAD_URL, f"malformed URL: {exc}") from None
    if parts.scheme not in ALLOWED_SCHEMES:
        raise InputError(Reason.BAD_SCHEME, f"scheme {parts.scheme or '(none)'!r} is not http or https")
    host = parts.hostname
    if not host:
        raise InputError(Reason.BAD_SCHEME, "URL has no host")
    port = port or (443 if parts.scheme == "https" else 80)
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise InputError(Reason.FETCH_ERROR, f"cannot resolve {host}: {exc}") from None
    except (UnicodeError, ValueError) as exc:   # an over-long label, bad IDNA
        raise InputError(Reason.BAD_URL, f"host {host[:100]!r} is not a valid name: {exc}") from None
    for info in infos:
        why = address_verdict(info[4][0], allow_private)
        if why:
            raise InputError(Reason.BLOCKED_ADDRESS, f"{host} resolves to {info[4][0]}: {why}")
    return list(dict.fromkeys(info[4][0] for info in infos))


_USERINFO = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s@]+@")


def scrub(text: str | None) -> str | None:
    """Any URL credentials inside free text (error messages) replaced by ***."""
    return _USERINFO.sub(r"\1***@", text) if text else text


def redact(url: str) -> str:
    """The URL without user:password (for logs, rows and reports)."""
    try:
        parts = urlsplit(url)
    except ValueError:   # malformed (e.g. an unclosed [): scrub what looks like credentials
        return scrub(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, f"***@{host}", parts.path, parts.query, parts.fragment))
