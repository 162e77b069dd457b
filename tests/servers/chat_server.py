"""An OpenAI-compatible chat-completions server on 127.0.0.1 that captions with a local VLM.

Run: python -m tests.servers.chat_server MODEL_DIR PORT_FILE

Strict like OpenAI's API: a request parameter outside the standard set is answered 400
("Unrecognized request argument supplied: ..."). temperature 0 decodes greedily; a positive
temperature samples and needs a `seed` (same seed, same caption). Routes under /v1/:
- chat/completions: the endpoint;
- fail-first/chat/completions: 503 to each body's first request;
- retry-after/chat/completions: 429 with `Retry-After: 1` to each body's first request;
- slow/chat/completions: waits 0.3 s before captioning (so concurrent requests overlap);
- GET stats: {"requests", "max_in_flight", "connections" (client ports seen), "retry_gaps" (seconds
  between a failed first request and its retry)}; POST stats/reset zeroes them.
"""

from __future__ import annotations

import base64
import io
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from PIL import Image

from captioners.hf import TransformersCaptioner
from schemas.job import CaptionerConfig

ACCEPTED = {"model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "seed", "n", "stream",
            "frequency_penalty", "presence_penalty", "stop", "user"}


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, model_dir: str):
        super().__init__(("127.0.0.1", 0), Handler)
        self.model_dir = model_dir
        self.lock = threading.Lock()
        self.stats_lock = threading.Lock()
        self.models: dict[tuple, TransformersCaptioner] = {}
        self.seen: dict[tuple, float] = {}  # (route, body) -> when its first request was answered
        self.reset()

    def reset(self) -> None:
        with self.stats_lock:
            self.stats = {"requests": 0, "max_in_flight": 0, "connections": 0, "retry_gaps": []}
            self.in_flight, self.peers = 0, set()

    def count(self, key: str, delta: int = 1, peer: tuple | None = None) -> None:
        with self.stats_lock:
            if peer is not None:  # connections: the client ports chat requests came from
                self.peers.add(peer)
                self.stats["connections"] = len(self.peers)
            if key == "in_flight":
                self.in_flight += delta
                self.stats["max_in_flight"] = max(self.stats["max_in_flight"], self.in_flight)
            else:
                self.stats[key] += delta

    def caption(self, prompt: str, image: Image.Image, req: dict):
        temperature = float(req.get("temperature", 1.0))
        sampling = {"preset": "sample", "generation": {"temperature": temperature, "top_p": float(req.get("top_p", 1.0))}}
        settings = {"preset": "greedy", "generation": {}} if temperature == 0 else sampling
        max_tokens = int(req.get("max_tokens") or req.get("max_completion_tokens") or 16)
        settings["generation"]["max_new_tokens"] = max_tokens
        with self.lock:  # one generate at a time: the model is shared
            key = (prompt, json.dumps(settings, sort_keys=True), req.get("seed"))
            if key not in self.models:
                cfg = CaptionerConfig(name="served", model=self.model_dir, prompt=prompt, **settings)
                self.models[key] = TransformersCaptioner(cfg, seed=int(req.get("seed") or 0))
            return self.models[key].caption([image], [{"key": ""}])[0]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status: int, obj: dict, headers: dict | None = None) -> None:
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/v1/stats":
            return self.reply(200, self.server.stats)
        return self.reply(404, {"error": {"message": "no such route"}})

    def do_POST(self):
        raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.path == "/v1/stats/reset":
            self.server.reset()
            return self.reply(200, {})
        self.server.count("requests", peer=self.client_address)
        self.server.count("in_flight")
        try:
            self.complete(raw)
        finally:
            self.server.count("in_flight", -1)

    def complete(self, raw: bytes) -> None:
        route = self.path.removeprefix("/v1/").removesuffix("chat/completions")
        if not self.path.endswith("/chat/completions") or route not in ("", "fail-first/", "retry-after/", "slow/"):
            return self.reply(404, {"error": {"message": "no such route"}})
        if route in ("fail-first/", "retry-after/"):
            with self.server.stats_lock:
                first = (route, raw) not in self.server.seen
                if first:
                    self.server.seen[route, raw] = time.monotonic()
                else:
                    self.server.stats["retry_gaps"].append(time.monotonic() - self.server.seen[route, raw])
            if first and route == "fail-first/":
                return self.reply(503, {"error": {"message": "warming up"}})
            if first:
                return self.reply(429, {"error": {"message": "rate limited"}}, {"Retry-After": "1"})
        if route == "slow/":
            time.sleep(0.3)
        req = json.loads(raw)
        unknown = sorted(set(req) - ACCEPTED)
        if unknown:
            return self.reply(400, {"error": {"message": f"Unrecognized request argument supplied: {', '.join(unknown)}"}})
        if float(req.get("temperature", 1.0)) > 0 and req.get("seed") is None:
            return self.reply(400, {"error": {"message": "this test server samples only with a seed"}})
        parts = req["messages"][-1]["content"]
        text = next(p["text"] for p in parts if p["type"] == "text")
        url = next(p["image_url"]["url"] for p in parts if p["type"] == "image_url")
        image = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB")
        result = self.server.caption(text, image, req)
        return self.reply(200, {"id": "cmpl-test", "object": "chat.completion", "model": req["model"],
                                "choices": [{"index": 0, "finish_reason": result.finish,
                                             "message": {"role": "assistant", "content": result.text}}]})


def main() -> None:
    server = Server(sys.argv[1])
    Path(sys.argv[2]).write_text(str(server.server_address[1]))
    server.serve_forever()


if __name__ == "__main__":
    main()
