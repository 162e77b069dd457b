"""A real HTTP server on 127.0.0.1 that serves a folder of images and misbehaves on purpose.

Run: python -m tests.servers.http_server ROOT PORT_FILE LOG_FILE
Writes its port to PORT_FILE, and one JSON line per finished request to LOG_FILE:
{"path", "status", "range", "sent"} where `sent` counts body bytes actually written.

Routes (NAME is a file in ROOT):
  /img/NAME            the file; honours Range
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
"""

from __future__ import annotations

import json
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


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
            self.server.log.write(json.dumps({"path": self.path, "status": status, "range": self.headers.get("Range"), "sent": sent}) + "\n")
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

    def file(self, name: str, ranged: bool = True, ctype: str = "image/jpeg", extra: dict | None = None) -> None:
        path = self.server.root / name
        if "/" in name or not path.is_file():
            return self.send_body(404, b"not found", "text/plain")
        data = path.read_bytes()
        m = re.match(r"bytes=(\d+)-(\d*)$", self.headers.get("Range") or "")
        if ranged and m:
            start = int(m.group(1))
            end = min(int(m.group(2)) if m.group(2) else len(data) - 1, len(data) - 1)
            if start >= len(data):
                return self.send_body(416, b"", "text/plain", {"Content-Range": f"bytes */{len(data)}"})
            return self.send_body(206, data[start:end + 1], ctype, {**(extra or {}), "Content-Range": f"bytes {start}-{end}/{len(data)}"})
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
        if p.startswith("/noai/"):
            return self.file(p[6:], extra={"X-Robots-Tag": "noai"})
        return self.send_body(404, b"no such route", "text/plain")


def main() -> None:
    server = Server(Path(sys.argv[1]), Path(sys.argv[3]))
    Path(sys.argv[2]).write_text(str(server.server_address[1]))
    server.serve_forever()


if __name__ == "__main__":
    main()
