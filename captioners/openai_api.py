"""OpenAI-compatible chat-completions backend (a vLLM or SGLang server, or a hosted API).

One HTTP client and one worker pool per actor: requests in flight are `api.concurrency`, shared
by every batch the actor is working on (the caption phase gives the actor enough concurrent
batches), so the batch size does not bound them. Images travel as JPEG data URLs (quality 95,
~10x smaller than PNG) unless the job asks for PNG. Only standard OpenAI parameters are sent
(model, messages, max_tokens, temperature, top_p, seed); settings the API has no parameter for
are refused when the job is validated. Retries on timeouts, connection errors, 429 and 5xx wait
for `Retry-After` when the server sends it, else a jittered doubling backoff. The API key comes
from the environment variable the job names, never from the job file.
"""

from __future__ import annotations

import base64
import email.utils
import io
import os
import random
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
from PIL import Image

from captioners.base import FINISH_LENGTH, FINISH_STOP, CaptionResult
from captioners.presets import effective, row_seed
from schemas.job import CaptionerConfig


def data_url(img: Image.Image, fmt: str, quality: int = 95) -> str:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, fmt.upper(), **({"quality": quality} if fmt == "jpeg" else {}))
    return f"data:image/{fmt};base64,{base64.b64encode(buf.getvalue()).decode()}"


def request_body(cfg: CaptionerConfig, img: Image.Image, key: str, seed: int) -> dict:
    """The chat-completions request for one image: the preset mapped to OpenAI's parameters."""
    gen = effective(cfg.preset, cfg.generation.model_dump())
    body = {
        "model": cfg.model,
        "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": data_url(img, cfg.api.image_format, cfg.api.jpeg_quality)}},
            {"type": "text", "text": cfg.prompt}]}],
        "max_tokens": int(gen["max_new_tokens"]),
    }
    if gen["do_sample"]:
        body.update(temperature=float(gen["temperature"]), top_p=float(gen["top_p"]), seed=row_seed(seed, key))
    else:
        body["temperature"] = 0.0  # greedy
    return body


def retry_after(headers: httpx.Headers) -> float | None:
    """Seconds a `Retry-After` header asks for (delta-seconds or an HTTP date)."""
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        return max(email.utils.parsedate_to_datetime(value).timestamp() - time.time(), 0.0)
    except (TypeError, ValueError):
        return None


def backoff(attempt: int, base: float, cap: float, asked: float | None) -> float:
    """Wait before retry `attempt` (0-based): the server's Retry-After, else base * 2**attempt with
    +-50% jitter (so many actors do not retry in step); both capped."""
    if asked is not None:
        return min(asked, cap)
    return min(base * 2 ** attempt * random.uniform(0.5, 1.5), cap)


class OpenAICaptioner:
    def __init__(self, cfg: CaptionerConfig, seed: int = 0):
        self.name, self.cfg, self.seed = cfg.name, cfg, seed
        if not cfg.api.base_url:
            raise ValueError(f"captioner {cfg.name!r}: backend openai needs api.base_url")
        self.url = cfg.api.base_url.rstrip("/") + "/chat/completions"
        key = os.environ.get(cfg.api.api_key_env) if cfg.api.api_key_env else None
        n = cfg.api.concurrency
        self.client = httpx.Client(timeout=httpx.Timeout(cfg.api.timeout_s), trust_env=False,
                                   headers={"Authorization": f"Bearer {key}"} if key else {},
                                   limits=httpx.Limits(max_connections=n, max_keepalive_connections=n))
        self.pool = ThreadPoolExecutor(max_workers=n, thread_name_prefix=f"captioner-{cfg.name}")

    def caption(self, images: list[Image.Image], metas: list[dict]) -> list[CaptionResult]:
        futures = [self.pool.submit(self._request, img, str(meta.get("key", ""))) for img, meta in zip(images, metas)]
        return [f.result() for f in futures]

    def _request(self, img: Image.Image, key: str) -> CaptionResult:
        api = self.cfg.api
        body = request_body(self.cfg, img, key, self.seed)
        last = ""
        for attempt in range(api.retries + 1):
            asked = None
            try:
                resp = self.client.post(self.url, json=body)
                if resp.status_code == 200:
                    choice = resp.json()["choices"][0]
                    finish = FINISH_LENGTH if choice.get("finish_reason") == "length" else FINISH_STOP
                    return CaptionResult(choice["message"]["content"] or "", finish=finish)
                if resp.status_code != 429 and resp.status_code < 500:
                    return CaptionResult(None, f"HTTP {resp.status_code}: {resp.text[:300]}")
                last, asked = f"HTTP {resp.status_code}: {resp.text[:200]}", retry_after(resp.headers)
            except httpx.TimeoutException:
                last = f"timeout after {api.timeout_s}s"
            except (httpx.TransportError, KeyError, IndexError, ValueError) as exc:
                last = f"{type(exc).__name__}: {exc}"
            if attempt < api.retries:
                time.sleep(backoff(attempt, api.backoff_s, api.max_backoff_s, asked))
        return CaptionResult(None, f"{last} (gave up after {api.retries + 1} attempts)")
