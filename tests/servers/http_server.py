"""A real HTTP server on 127.0.0.1 that serves a folder of images and misbehaves on purpose.

Run: python -m tests.servers.http_server ROOT PORT_FILE LOG_FILE
Writes its port to PORT_FILE, and one JSON line per finished request to LOG_FILE:
{"path", "status", "range", "sent"} where `sent` counts body bytes actually written.

Routes (NAME is a file in ROOT):
  /img/NAME            the file; honours Range and If-Range (strong ETag)
  /norange/NAME        the file; ignores Range (200 with the whole body)
  /missing             404
  /flaky/NAME          500 on the first request for NAME, then the file
  /ratelimit/NAME      429 with Retry-After: 1 on the first request, then the file
  /slow/NAME           headers, 100 bytes, then silence past the client's read timeout
  /wrongtype/NAME      the file served as text/plain
  /html                an HTML page
  /huge                Content-Length: 10 GiB (sends a few bytes only)
  /redirect/N/NAME     N redirects, then the file
  /loop/a, /loop/b     redirect to each other forever
  /metadata            redirect to http://169.254.169.254/latest/meta-data/
  /noai/NAME           the file with X-Robots-Tag: noai
  /gzip/NAME           the file plus 30 MB of zeros, gzip-compressed, sent with Content-Encoding: gzip
                       whatever the request asked (Content-Length counts the compressed bytes)
  /changing/A/B        file A on the first request, file B after (ETag follows the file)
  /changing-plain/A/B  the same without ETag or Last-Modified
  /to?URL              a redirect to URL (percent-decoded)
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, root: Path, log_path: Path):
        super().__init__(("127.0.0.1", 0), Handler)
        self.root = root
        self.log = open(log_path, "a")  # noqa: SIM115 - lives as long as the server
        self.lock = threading.Lock()
        self.seen: set[str] = set()

    def first_time(self, path: str) -> bool:
        with self.lock:
            if path in self.seen:
                return False
            self.seen.add(path)
            return True


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # quiet stderr; we keep our own log
        pass

    def record(self, status: int, sent: int) -> None:
        with self.server.lock:
            self.server.log.write(json.dumps({"path": self.path, "status": status, "range": self.headers.get("Range"), "sent": sent,
                                            "host": self.headers.get("Host"), "if_range": self.headers.get("If-Range")}) + "\n")
            self.server.log.flush()

    def send_body(self, status: int, body: bytes, ctype: str = "application/octet-stream", extra: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        sent = 0
        try:
            for i in range(0, len(body), 16384):  # chunked writes, so an early close shows in `sent`
                self.wfile.write(body[i:i + 16384])
                sent += len(body[i:i + 16384])
        except (BrokenPipeError, ConnectionResetError):
            pass
        self.record(status, sent)

    def redirect(self, where: str, status: int = 302) -> None:
        self.send_response(status)
        self.send_header("Location", where)
        self.send_header("Content-Length", "0")
        self.end_headers()
        self.record(status, 0)

    def file(self, name: str, ranged: bool = True, ctype: str = "image/jpeg", extra: dict | None = None, etag: bool = True) -> None:
        path = self.server.root / name
        if "/" in name or not path.is_file():
            return self.send_body(404, b"not found", "text/plain")
        data = path.read_bytes()
        tag = f'"{hashlib.sha256(data).hexdigest()[:16]}"'
        extra = {**(extra or {}), **({"ETag": tag} if etag else {})}
        m = re.match(r"bytes=(\d+)-(\d*)$", self.headers.get("Range") or "")
        if_range = self.headers.get("If-Range")
        if ranged and m and (if_range is None or if_range == tag):
            start = int(m.group(1))
            end = min(int(m.group(2)) if m.group(2) else len(data) - 1, len(data) - 1)
            if start >= len(data):
                return self.send_body(416, b"", "text/plain", {"Content-Range": f"bytes */{len(data)}"})
            return self.send_body(206, data[start:end + 1], ctype, {**extra, "Content-Range": f"bytes {start}-{end}/{len(data)}"})
        return self.send_body(200, data, ctype, extra)

    def do_GET(self):
        p = self.path
        if p.startswith("/img/"):
            return self.file(p[5:])
        if p.startswith("/norange/"):
            return self.file(p[9:], ranged=False)
        if p == "/missing":
            return self.send_body(404, b"not found", "text/plain")
        if p.startswith("/flaky/"):
            if self.server.first_time(p):
                return self.send_body(500, b"oops", "text/plain")
            return self.file(p[7:])
        if p.startswith("/ratelimit/"):
            if self.server.first_time(p):
                return self.send_body(429, b"slow down", "text/plain", {"Retry-After": "1"})
            return self.file(p[11:])
        if p.startswith("/slow/"):
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", "1000000")
            self.end_headers()
            self.wfile.write(b"\xff\xd8\xff" + b"\x00" * 97)
            self.wfile.flush()
            time.sleep(6)
            self.record(200, 100)
            return None
        if p.startswith("/wrongtype/"):
            return self.file(p[11:], ctype="text/plain")
        if p == "/html":
            return self.send_body(200, b"<!doctype html><html><body><img src=x.jpg></body></html>", "text/html")
        if p == "/huge":
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(10 << 30))
            self.end_headers()
            try:
                self.wfile.write(b"\xff\xd8\xff" + b"\x00" * 1021)
            except (BrokenPipeError, ConnectionResetError):
                pass
            self.record(200, 1024)
            self.close_connection = True
            return None
        m = re.match(r"/redirect/(\d+)/(.+)$", p)
        if m:
            n = int(m.group(1))
            return self.redirect(f"/redirect/{n - 1}/{m.group(2)}" if n > 1 else f"/img/{m.group(2)}")
        if p == "/loop/a":
            return self.redirect("/loop/b")
        if p == "/loop/b":
            return self.redirect("/loop/a")
        if p == "/metadata":
            return self.redirect("http://169.254.169.254/latest/meta-data/")
        if p.startswith("/gzip/"):
            body = gzip.compress((self.server.root / p[6:]).read_bytes() + bytes(30 << 20), 1)
            return self.send_body(200, body, "image/jpeg", {"Content-Encoding": "gzip"})
        m = re.match(r"/changing(-plain)?/([^/]+)/([^/]+)$", p)
        if m:
            first = self.server.first_time(p)
            return self.file(m.group(2) if first else m.group(3), etag=not m.group(1))
        if p.startswith("/to?"):
            return self.redirect(unquote(p[4:]))
        if p.startswith("/noai/"):
            return self.file(p[6:], extra={"X-Robots-Tag": "noai"})
        return self.send_body(404, b"no such route", "text/plain")


class Web:
    """A running server process: its base URL and its request log."""

    def __init__(self, root: Path, base: str, log: Path):
        self.root, self.base, self.log = root, base, log

    def requests(self) -> list[dict]:
        return [json.loads(line) for line in self.log.read_text().splitlines()]


@contextmanager
def serve(root: Path):
    """Run the server on `root` in its own process for the duration of the block."""
    port_file, log = root / "port", root / "requests.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "tests.servers.http_server", str(root), str(port_file), str(log)],
                            cwd=Path(__file__).parents[2])
    try:
        deadline = time.time() + 20
        while not port_file.exists() and time.time() < deadline:
            time.sleep(0.05)
        yield Web(root, f"http://127.0.0.1:{port_file.read_text()}", log)
    finally:
        proc.terminate()
        proc.wait()


def main() -> None:
    server = Server(Path(sys.argv[1]), Path(sys.argv[3]))
    Path(sys.argv[2]).write_text(str(server.server_address[1]))
    server.serve_forever()


if __name__ == "__main__":
    main()
