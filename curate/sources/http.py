"""Fetching images over HTTP(S): header first (ranged GET), then the rest only for images that
pass the gate; bounded concurrency per host, retries with backoff (Retry-After honoured),
manual redirects re-checked against the address rules at every hop, a byte cap.

Each connection goes to the address the rules judged (the URL's host is replaced by it; Host
and TLS SNI keep the name), so DNS is asked once per hop. Bodies are taken as sent (no content
decoding: a gzip body is not an image, and its bytes count against max_bytes as received), and
the second read of a URL is tied to the first (If-Range with its validator, or the first bytes
fetched again and compared).
"""

from __future__ import annotations

import asyncio
import email.utils
import re
import time
from collections import defaultdict
from contextlib import asynccontextmanager
from urllib.parse import urljoin, urlsplit

import httpx

from curate.sources.netsafety import check_url, redact
from schemas.job import FetchConfig
from schemas.reasons import InputError, Reason

REDIRECTS = {301, 302, 303, 307, 308}
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")


class HttpSession:
    """One per worker task: a connection pool, the concurrency limits and the fetch policy."""

    def __init__(self, cfg: FetchConfig, max_bytes: int):
        self.cfg, self.max_bytes = cfg, max_bytes
        timeout = httpx.Timeout(connect=cfg.connect_timeout_s, read=cfg.read_timeout_s, write=cfg.read_timeout_s, pool=None)
        # trust_env=False: no proxies from the environment, so the address checks mean what they say
        self.client = httpx.AsyncClient(follow_redirects=False, timeout=timeout, trust_env=False,
                                        headers={"User-Agent": cfg.user_agent, "Accept-Encoding": "identity"}, limits=httpx.Limits(max_connections=cfg.concurrency))
        self._hosts: dict[str, asyncio.Semaphore] = defaultdict(lambda: asyncio.Semaphore(cfg.per_host))

    @asynccontextmanager
    async def host_slot(self, url: str):
        try:
            host = urlsplit(url).hostname or ""
        except ValueError:   # malformed: open() refuses it as bad_url
            host = ""
        async with self._hosts[host]:
            yield

    async def aclose(self) -> None:
        await self.client.aclose()

    async def open(self, url: str, start: int = 0, end: int | None = None, if_range: str | None = None) -> tuple[httpx.Response, str]:
        """GET `url` (bytes start..end), following redirects safely and retrying transient failures.

        Returns the streaming response (status 200 or 206) and the final URL.
        """
        cfg = self.cfg
        current, visited, hops, attempt = url, {url}, 0, 0
        unreachable: set[str] = set()   # addresses of `current` that refused the connection
        headers = {"Range": f"bytes={start}-{'' if end is None else end}"} if (start or end is not None) else {}
        if if_range and headers:
            headers["If-Range"] = if_range
        while True:
            try:
                addresses = await check_url(current, cfg.allow_private_networks)
                address = next((a for a in addresses if a not in unreachable), addresses[0])
                request = pinned_request(self.client, current, address, headers)
            except InputError as exc:
                raise InputError(exc.reason, exc.detail if hops == 0 else f"after redirect to {redact(current)}: {exc.detail}") from None
            except (httpx.InvalidURL, ValueError, UnicodeError) as exc:
                raise InputError(Reason.BAD_URL, f"malformed URL: {type(exc).__name__}: {str(exc)[:200]}") from None
            try:
                resp = await self.client.send(request, stream=True)
            except httpx.TimeoutException as exc:
                attempt = await self._retry_or_raise(attempt, Reason.TIMEOUT, f"{type(exc).__name__} from {redact(current)}", None)
                continue
            except httpx.TransportError as exc:
                if isinstance(exc, httpx.ConnectError) and set(addresses) - unreachable - {address}:
                    unreachable.add(address)   # the name's next checked address
                    continue
                unreachable.clear()
                attempt = await self._retry_or_raise(attempt, Reason.FETCH_ERROR, f"{type(exc).__name__}: {exc}", None)
                continue
            status = resp.status_code
            if status in REDIRECTS:
                await resp.aclose()
                location = resp.headers.get("location")
                if not location:
                    raise InputError(Reason.HTTP_ERROR, f"HTTP {status} without Location")
                nxt = urljoin(current, location)
                hops += 1
                if nxt in visited:
                    raise InputError(Reason.REDIRECT_LOOP, f"redirect loop back to {redact(nxt)} after {hops} hops")
                if hops > cfg.max_redirects:
                    raise InputError(Reason.TOO_MANY_REDIRECTS, f"more than {cfg.max_redirects} redirects")
                visited.add(nxt)
                current = nxt
                unreachable.clear()
                continue
            if status == 416 and headers:  # empty or shorter body than the range: ask for all of it
                await resp.aclose()
                headers = {}
                continue
            if status == 429 or status >= 500:
                await resp.aclose()
                attempt = await self._retry_or_raise(attempt, Reason.RATE_LIMITED if status == 429 else Reason.HTTP_ERROR,
                                                     f"HTTP {status}", resp.headers.get("retry-after"))
                continue
            if status in (200, 206):
                return resp, current
            await resp.aclose()
            raise InputError(Reason.HTTP_ERROR, f"HTTP {status}")

    async def _retry_or_raise(self, attempt: int, reason: Reason, detail: str, retry_after: str | None) -> int:
        cfg = self.cfg
        if attempt >= cfg.retries:
            raise InputError(reason, f"{detail} (gave up after {attempt + 1} attempts)")
        delay = cfg.backoff_s * (2 ** attempt)
        wait = parse_retry_after(retry_after)
        if wait is not None:
            if wait > cfg.max_retry_after_s:
                raise InputError(Reason.RATE_LIMITED, f"{detail}: Retry-After {wait:.0f}s > max_retry_after_s {cfg.max_retry_after_s}")
            delay = max(delay, wait)
        await asyncio.sleep(delay)
        return attempt + 1


def pinned_request(client: httpx.AsyncClient, url: str, address: str, headers: dict) -> httpx.Request:
    """A GET of `url` sent to `address` (the one checked): the host name stays in the Host
    header and, for https, in SNI and certificate verification."""
    parsed = httpx.URL(url)
    extensions = {"sni_hostname": parsed.host} if parsed.scheme == "https" else {}
    return client.build_request("GET", parsed.copy_with(host=address), extensions=extensions,
                                headers={**headers, "Host": parsed.netloc.decode("ascii")})


def parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def opted_out(headers: httpx.Headers) -> bool:
    """X-Robots-Tag carrying noai / noimageai (optionally scoped to a user agent: 'bot: noai')."""
    for value in headers.get_list("x-robots-tag"):
        tokens = set(re.split(r"[,\s:]+", value.lower()))
        if tokens & {"noai", "noimageai"}:
            return True
    return False


async def body_chunks(resp: httpx.Response):
    """The body's chunks; a stall or a dropped connection becomes the input's reason code."""
    try:
        async for chunk in resp.aiter_raw():   # as sent: never decoded (Content-Encoding ignored)
            yield chunk
    except httpx.TimeoutException as exc:
        raise InputError(Reason.TIMEOUT, f"body stalled: {type(exc).__name__}") from None
    except httpx.TransportError as exc:
        raise InputError(Reason.FETCH_ERROR, f"body interrupted: {type(exc).__name__}: {exc}") from None


class HttpReader:
    """Reads one URL: `head(n)` fetches the first n bytes (ranged GET), `rest()` the whole body.

    When the server ignores the range (200), the same response keeps streaming for `rest()`;
    otherwise `rest()` asks for the remaining range only.
    """

    rereadable = False

    def __init__(self, session: HttpSession, url: str):
        self.session, self.url = session, url
        self.size: int | None = None
        self.received = 0
        self._data = b""
        self._resp: httpx.Response | None = None
        self._chunks = None
        self._complete = False
        self._validator: str | None = None   # If-Range value from the first response


    async def head(self, n: int) -> bytes:
        resp, self.url = await self.session.open(self.url, 0, n - 1)
        self._resp, self._chunks = resp, body_chunks(resp)
        etag = resp.headers.get("etag", "")
        self._validator = etag if etag.startswith('"') else resp.headers.get("last-modified")  # If-Range takes no weak ETag
        if self.session.cfg.respect_opt_out and opted_out(resp.headers):
            raise InputError(Reason.OPTED_OUT, "X-Robots-Tag: noai/noimageai")
        if resp.status_code == 206:
            m = _CONTENT_RANGE.match(resp.headers.get("content-range", ""))
            self.size = int(m.group(3)) if m and m.group(3) != "*" else None
        else:
            length = resp.headers.get("content-length", "")
            self.size = int(length) if length.isdigit() else None
        if self.size is not None and self.size > self.session.max_bytes:
            raise InputError(Reason.TOO_MANY_BYTES, f"{self.size} bytes > max_bytes {self.session.max_bytes}")
        self._data = await self._read(until=n)
        if resp.status_code == 206:  # a range ended; the content is complete only if it was all of it
            self._complete = self.size is not None and len(self._data) >= self.size
            await self.close()
        elif self._complete:
            await self.close()
        return self._data

    async def rest(self) -> bytes:
        if self._complete:
            return self._data
        if self._resp is None:  # the head came from a ranged response: fetch the rest, tied to it
            await self._reopen()
        try:
            self._data += await self._read(until=None)
        finally:
            await self.close()
        self._complete = True
        return self._data

    async def _reopen(self) -> None:
        """The remaining range, sent with If-Range (the first response's strong ETag or
        Last-Modified): a changed file comes back whole (200) instead of spliced. Without a
        validator the whole body is fetched again (a few kB more), never two halves of two files."""
        start = len(self._data) if self._validator else 0
        resp, _ = await self.session.open(self.url, start, if_range=self._validator)
        self._resp, self._chunks = resp, body_chunks(resp)
        if resp.status_code == 200:   # everything again (changed, or the range was ignored)
            self._data = b""
            return
        m = _CONTENT_RANGE.match(resp.headers.get("content-range", ""))
        total = int(m.group(3)) if m and m.group(3) != "*" else None
        if not m or int(m.group(1)) != start or total != self.size:
            await self.close()
            raise InputError(Reason.FETCH_ERROR, f"second read does not continue the first (Content-Range {resp.headers.get('content-range')!r})")

    async def _read(self, until: int | None) -> bytes:
        """Read up to `until` bytes (None: to the end), enforcing the byte cap."""
        got, have = [], len(self._data)
        async for chunk in self._chunks:
            got.append(chunk)
            self.received += len(chunk)
            have += len(chunk)
            if have > self.session.max_bytes:
                raise InputError(Reason.TOO_MANY_BYTES, f"body passed max_bytes {self.session.max_bytes}")
            if until is not None and have >= until:
                return b"".join(got)
        self._complete = True
        return b"".join(got)

    async def close(self) -> None:
        if self._resp is not None:
            await self._resp.aclose()
            self._resp, self._chunks = None, None
