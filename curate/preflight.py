"""Preflight: before any input is read, check that everything the job names can be used here,
and say what cannot, one line per problem (`curate run`, `curate validate --check`).

Models are probed as cheaply as their loading code allows: configs, processors, tokenizers and
small heads are loaded; large weights on a hub are not downloaded (when `HF_HUB_OFFLINE` is set
they must already be in the cache, and that is checked). Endpoints get one request, the output
one write, every source one listing.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import uuid
from collections.abc import Callable
from pathlib import Path

from schemas.job import CaptionerConfig, Job


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:240]}" if text else type(exc).__name__


def _check(problems: list[str], field: str, probe: Callable[[], str | None]) -> None:
    """Run one probe; a returned string or a raised exception is that field's problem."""
    try:
        found = probe()
    except Exception as exc:
        found = _first_line(exc)
    if found:
        problems.append(f"{field}: {found}")


def preflight(job: Job, job_path: str | Path) -> list[str]:
    """Every problem found, as '<job file>: <field>: <what is wrong>' lines ([] when none)."""
    problems: list[str] = []
    for i, cap in enumerate(job.caption.captioners):
        _check(problems, f"caption.captioners.{i}.model", lambda cap=cap: _captioner(cap))
    aes = job.filters.aesthetics
    if aes.enabled:
        _check(problems, "filters.aesthetics.head", lambda: _head(aes.head))
        _check(problems, "filters.aesthetics.clip_pretrained", lambda: _clip(aes))
    for name in ("nsfw_head", "watermark_head"):
        head = getattr(job.filters.safety, name)
        if head is not None:
            _check(problems, f"filters.safety.{name}.path", lambda head=head: _embedding_head(head))
    h = job.hallucination
    if h.enabled and h.detector:
        _check(problems, "hallucination.detector.model", lambda: _hf_config(h.detector.model))
    if h.enabled and h.ocr and importlib.util.find_spec("rapidocr") is None:
        problems.append("hallucination.ocr: the rapidocr package is not installed (pip install rapidocr onnxruntime)")
    _check(problems, "out", lambda: _output(job))
    if job.output.work_dir and job.output.work_dir.startswith("s3://"):
        _check(problems, "output.work_dir", lambda: _staging(job))
    for i, src in enumerate(job.sources):
        _check(problems, f"sources.{i}", lambda src=src: _source(src))
    return [f"{job_path}: {p}" for p in problems]


def _captioner(cap: CaptionerConfig) -> str | None:
    if cap.backend == "openai":
        return _endpoint(cap)
    from transformers import AutoConfig, AutoProcessor

    try:
        AutoConfig.from_pretrained(cap.model)
        AutoProcessor.from_pretrained(cap.model)
    except OSError as exc:
        return (f"cannot load {cap.model!r} ({_first_line(exc)}); give a local folder with config.json, weights and "
                "processor files, or a hub id reachable from every node (a shared HF_HOME on offline clusters)")
    folder = Path(cap.model)
    if folder.is_dir() and not any(folder.glob("*.safetensors")) and not any(folder.glob("*.bin")):
        return f"{cap.model}: no weights (*.safetensors or *.bin) in the model folder"
    return None


def _endpoint(cap: CaptionerConfig) -> str | None:
    import httpx

    if not cap.api.base_url:
        return "backend openai needs caption.captioners.N.api.base_url"
    headers = {}
    if cap.api.api_key_env and os.environ.get(cap.api.api_key_env):
        headers["Authorization"] = f"Bearer {os.environ[cap.api.api_key_env]}"
    url = cap.api.base_url.rstrip("/") + "/models"
    try:
        res = httpx.get(url, headers=headers, timeout=5)
    except httpx.HTTPError as exc:
        return f"endpoint {url} unreachable ({_first_line(exc)})"
    if res.status_code >= 400:
        return f"endpoint {url} answered HTTP {res.status_code}"
    served = [m.get("id") for m in (res.json().get("data") or []) if isinstance(m, dict)]
    if served and cap.model not in served:
        return f"endpoint {cap.api.base_url} does not serve model {cap.model!r} (it serves {', '.join(map(str, served[:5]))})"
    return None


def _head(path: str) -> None:
    from filters.aesthetics import load_head

    load_head(path)


def _embedding_head(head) -> None:
    from filters.heads import load_embedding_head

    load_embedding_head(head)


def _clip(aes) -> str | None:
    import open_clip

    if aes.clip_config:
        open_clip.add_model_config(aes.clip_config)
    if aes.clip_model not in open_clip.list_models():
        return f"open_clip has no model {aes.clip_model!r} (give filters.aesthetics.clip_config for other architectures)"
    tag = aes.clip_pretrained
    if not tag or Path(tag).is_file():
        return None
    if "/" in tag or tag.endswith((".pt", ".pth", ".bin", ".safetensors")):
        return f"{tag}: no such checkpoint file"
    cfg = open_clip.get_pretrained_cfg(aes.clip_model, tag)
    if not cfg:
        return f"open_clip has no pretrained tag {tag!r} for {aes.clip_model!r}"
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0"):   # offline: the weights must be in the cache already
        from open_clip.pretrained import download_pretrained

        try:
            download_pretrained(cfg)
        except Exception as exc:
            return f"{aes.clip_model}/{tag} weights are not in the local cache and HF_HUB_OFFLINE is set ({_first_line(exc)})"
    return None


def _hf_config(model: str) -> None:
    from transformers import AutoConfig

    AutoConfig.from_pretrained(model)


def _staging(job: Job) -> str | None:
    """One ranged read back of a small staged file, as caption and write will do it, then removed."""
    from curate.staging import staged_file, store_for

    store = store_for(job, ".")
    writer = store.writer(f".curate-preflight-{uuid.uuid4().hex[:8]}")
    locator = writer.put("probe", b"curate")
    writer.close()
    try:
        store.read(locator)
    finally:
        store.place.delete([staged_file(locator)])
    return None


def _output(job: Job) -> str | None:
    """One write (and delete) where the output goes."""
    if job.out.startswith("s3://"):
        from curate.outputs import output_for

        output = output_for(job)
        probe = output.key(f".curate-preflight-{uuid.uuid4().hex[:8]}")
        output.client.put_object(Bucket=output.bucket, Key=probe, Body=b"")
        output.client.delete_object(Bucket=output.bucket, Key=probe)
        return None
    out = Path(job.out)
    base = next((p for p in (out, *out.parents) if p.exists()), None)
    if base is None or not base.is_dir():
        return f"{job.out}: cannot be created ({base} is not a folder)"
    if not os.access(base, os.W_OK | os.X_OK):
        return f"{job.out}: not writable ({base} does not allow it)"
    return None


def _source(src) -> str | None:
    """The source can be listed (one entry is enough)."""
    if src.type == "folder":
        root = Path(src.path)
        if not root.is_dir():
            return f"path: {src.path}: not a folder"
        with os.scandir(root) as entries:
            next(entries, None)
        return None
    if src.type == "s3":
        from curate.sources.s3 import client, split_s3

        bucket, prefix = split_s3(src.prefix)
        client(src.s3).list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=1)
        return None
    if src.type == "url_list":
        if src.path.startswith("s3://"):
            from curate.sources.s3 import client, split_s3

            bucket, key = split_s3(src.path)
            client(src.s3).head_object(Bucket=bucket, Key=key)
        elif not os.access(src.path, os.R_OK):
            return f"path: {src.path}: not readable"
        return None
    for j, p in enumerate(src.paths):
        if p.startswith("s3://"):
            from curate.sources.s3 import client, split_s3

            bucket, key = split_s3(p)
            c = client(src.s3)
            c.list_objects_v2(Bucket=bucket, Prefix=key, MaxKeys=1) if p.endswith("/") else c.head_object(Bucket=bucket, Key=key)
        elif not glob.glob(p):
            return f"paths.{j}: {p}: no tar shard matches"
    return None
