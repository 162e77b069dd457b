"""An OpenAI-compatible chat-completions server on 127.0.0.1 that captions with a local VLM.

Run: python -m tests.servers.chat_server MODEL_DIR PORT_FILE
POST /v1/chat/completions with one image (data URL) and a text part; greedy decoding when
temperature is 0. /v1/fail-first/chat/completions answers 503 to each body's first request.
"""

from __future__ import annotations

import base64
import io
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from PIL import Image

from captioners.hf import TransformersCaptioner
from schemas.job import CaptionerConfig


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, model_dir: str):
        super().__init__(("127.0.0.1", 0), Handler)
        self.model_dir = model_dir
        self.lock = threading.Lock()
        self.models: dict[tuple, TransformersCaptioner] = {}
        self.seen: set[str] = set()

    def caption(self, prompt: str, image: Image.Image, max_tokens: int) -> str:
        with self.lock:  # one generate at a time: the model is shared
            key = (prompt, max_tokens)
            if key not in self.models:
                cfg = CaptionerConfig(name="served", model=self.model_dir, prompt=prompt, preset="greedy",
                                      generation={"max_new_tokens": max_tokens})
                self.models[key] = TransformersCaptioner(cfg)
            return self.models[key].caption([image], [{}])[0].text


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status: int, obj: dict) -> None:
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.path == "/v1/fail-first/chat/completions":
            with self.server.lock:
                first = raw not in self.server.seen
                self.server.seen.add(raw)
            if first:
                return self.reply(503, {"error": {"message": "warming up"}})
        elif self.path != "/v1/chat/completions":
            return self.reply(404, {"error": {"message": "no such route"}})
        req = json.loads(raw)
        parts = req["messages"][-1]["content"]
        text = next(p["text"] for p in parts if p["type"] == "text")
        url = next(p["image_url"]["url"] for p in parts if p["type"] == "image_url")
        image = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB")
        if req.get("temperature", 1.0) != 0:
            return self.reply(400, {"error": {"message": "this test server only decodes greedily"}})
        caption = self.server.caption(text, image, int(req.get("max_tokens", 16)))
        return self.reply(200, {"id": "cmpl-test", "object": "chat.completion", "model": req["model"],
                                "choices": [{"index": 0, "finish_reason": "stop",
                                             "message": {"role": "assistant", "content": caption}}]})


def main() -> None:
    server = Server(sys.argv[1])
    Path(sys.argv[2]).write_text(str(server.server_address[1]))
    server.serve_forever()


if __name__ == "__main__":
    main()
