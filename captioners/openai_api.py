"""OpenAI-compatible chat-completions backend (a vLLM or SGLang server, or a hosted API).

Images travel as data URLs (PNG by default: lossless, so a server sees the same pixels a
local backend would). Requests run with bounded concurrency, a per-request timeout and
retries with backoff on timeouts, 429 and 5xx. The API key comes from the environment
variable the job names, never from the job file.
"""

from __future__ import annotations

import asyncio
import base64
import io
import os

import httpx
from PIL import Image

from captioners.base import CaptionResult
from captioners.presets import generation_kwargs
from schemas.job import CaptionerConfig


def data_url(img: Image.Image, fmt: str) -> str:
    buf = io.BytesIO()
    img.save(buf, fmt.upper(), **({"quality": 95} if fmt.lower() == "jpeg" else {}))
    return f"data:image/{fmt.lower()};base64,{base64.b64encode(buf.getvalue()).decode()}"


def request_body(cfg: CaptionerConfig, img: Image.Image) -> dict:
    gen = generation_kwargs(cfg.preset, cfg.generation)
    body = {
        "model": cfg.model,
        "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": data_url(img, cfg.api.image_format)}},
            {"type": "text", "text": cfg.prompt}]}],
        "max_tokens": int(gen.get("max_new_tokens", 300)),
        "temperature": float(gen.get("temperature", 1.0)) if gen.get("do_sample") else 0.0,
    }
    if "top_p" in gen:
        body["top_p"] = float(gen["top_p"])
    if gen.get("repetition_penalty", 1.0) != 1.0:
        body["repetition_penalty"] = float(gen["repetition_penalty"])  # vLLM/SGLang extension
    return body


class OpenAICaptioner:
    def __init__(self, cfg: CaptionerConfig):
        self.name, self.cfg = cfg.name, cfg
        if not cfg.api.base_url:
            raise ValueError(f"captioner {cfg.name!r}: backend openai needs api.base_url")
        self.url = cfg.api.base_url.rstrip("/") + "/chat/completions"
        key = os.environ.get(cfg.api.api_key_env) if cfg.api.api_key_env else None
        self.headers = {"Authorization": f"Bearer {key}"} if key else {}

    def caption(self, images: list[Image.Image], metas: list[dict]) -> list[CaptionResult]:
        return asyncio.run(self._all(images))

    async def _all(self, images: list[Image.Image]) -> list[CaptionResult]:
        api = self.cfg.api
        gate = asyncio.Semaphore(api.concurrency)
        timeout = httpx.Timeout(api.timeout_s)
        async with httpx.AsyncClient(timeout=timeout, headers=self.headers, trust_env=False) as client:
            async def one(img: Image.Image) -> CaptionResult:
                async with gate:
                    return await self._request(client, request_body(self.cfg, img))
            return list(await asyncio.gather(*(one(im) for im in images)))

    async def _request(self, client: httpx.AsyncClient, body: dict) -> CaptionResult:
        api = self.cfg.api
        last = ""
        for attempt in range(api.retries + 1):
            try:
                resp = await client.post(self.url, json=body)
                if resp.status_code == 429 or resp.status_code >= 500:
                    last = f"HTTP {resp.status_code}: {resp.text[:200]}"
                elif resp.status_code != 200:
                    return CaptionResult(None, f"HTTP {resp.status_code}: {resp.text[:300]}")
                else:
                    choice = resp.json()["choices"][0]
                    return CaptionResult(choice["message"]["content"] or "")
            except httpx.TimeoutException:
                last = f"timeout after {api.timeout_s}s"
            except (httpx.TransportError, KeyError, IndexError, ValueError) as exc:
                last = f"{type(exc).__name__}: {exc}"
            if attempt < api.retries:
                await asyncio.sleep(api.backoff_s * 2 ** attempt)
        return CaptionResult(None, f"{last} (gave up after {api.retries + 1} attempts)")
