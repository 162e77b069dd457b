"""Phase 3, caption: kept samples -> CPU tasks decode and shrink -> captioner actor pool(s)
-> post-processing and the choice of the training caption -> committed per unit.

CPU tasks do all JPEG decoding, so the (GPU) actors only run the model.
"""

from __future__ import annotations

import asyncio
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from PIL import Image

from captioners import build_captioner, vllm_batch
from captioners.base import FINISH_LENGTH
from captioners.postprocess import clean, token_counter
from curate.engine import actor_resources, commit_by_unit, unit_dataset
from curate.imaging import decode_working
from curate.phases.dedup import staged_rows
from curate.phases.rejects import rejects_from
from curate.sources import stored_bytes
from curate.storage import RunDir, read_parquet_dir, write_parquet_atomic
from schemas.job import CaptionerConfig, Job
from schemas.reasons import Reason
from schemas.record import CAPTIONED, DEDUP, rows_to_table

CAPTIONED_OK = "captioned"


def kept_rows(run: RunDir) -> pa.Table:
    staged = staged_rows(run)
    decisions = pq.read_table(run.dedup, schema=DEDUP)
    keep = decisions.filter(decisions["keep"])["key"]
    return staged.filter(pc.is_in(staged["key"], keep)).sort_by("key")


def prepare_block(batch: pa.Table, side: int, job_json: str, root: str) -> dict:
    """Decode and shrink each image to `side` (long side) in a CPU task."""
    job = Job.model_validate_json(job_json)
    pixels, errors = [], []
    for row in batch.select(["key", "uri", "source", "blob"]).to_pylist():
        try:
            pixels.append(np.asarray(decode_working(stored_bytes(row, job, Path(root)), side)))
            errors.append("")
        except Exception as exc:
            pixels.append(np.zeros((1, 1, 3), np.uint8))
            errors.append(f"{type(exc).__name__}: {exc}")
    out = {name: np.array(batch[name].to_pylist(), dtype=object) for name in ("unit", "key", "alt")}
    out["pixels"] = object_array(pixels)
    out["prep_error"] = np.array(errors, dtype=object)
    return out


def object_array(items: list) -> np.ndarray:
    """A 1-D object array of arrays (np.array would stack equal shapes into one block)."""
    arr = np.empty(len(items), dtype=object)
    for i, item in enumerate(items):
        arr[i] = item
    return arr


class CaptionActor:
    """Ray actor: loads one captioner once, captions batches, keeps order. Adds the columns
    raw_<name> (text), err_<name> (error, "" when none) and finish_<name> (stop | length; "" when
    it failed)."""

    def __init__(self, cfg_json: str, drop_pixels: bool, seed: int = 0):
        self.cfg = CaptionerConfig.model_validate_json(cfg_json)
        self.captioner = build_captioner(self.cfg, seed)
        self.drop_pixels = drop_pixels

    def __call__(self, batch: dict) -> dict:
        n = len(batch["key"])
        texts, finishes = [""] * n, [""] * n
        errors = list(batch["prep_error"])
        ok = [i for i in range(n) if not errors[i]]
        if ok:
            images = [Image.fromarray(np.asarray(batch["pixels"][i], dtype=np.uint8)) for i in ok]
            metas = [{"key": batch["key"][i], "alt": batch["alt"][i]} for i in ok]
            for i, res in zip(ok, self.captioner.caption(images, metas)):
                texts[i] = res.text or ""
                finishes[i] = res.finish or ""
                errors[i] = f"caption: {res.error}" if res.error else ""
        out = dict(batch)
        out[f"raw_{self.cfg.name}"] = np.array(texts, dtype=object)
        out[f"err_{self.cfg.name}"] = np.array(errors, dtype=object)
        out[f"finish_{self.cfg.name}"] = np.array(finishes, dtype=object)
        if self.drop_pixels:
            out.pop("pixels")
        return out


class ApiCaptionActor(CaptionActor):
    """CaptionActor for the openai backend. Ray Data runs an async actor's batches concurrently
    (four per task by default), so requests from several batches queue in the captioner's one
    worker pool, which keeps `api.concurrency` in flight whatever the batch size."""

    async def __call__(self, batch: dict) -> dict:
        return await asyncio.to_thread(CaptionActor.__call__, self, batch)


def ray_batch_size(cfg: CaptionerConfig) -> int:
    """Rows per Ray batch: the job's batch size; for the openai backend at least half its request
    limit, so the four batches in flight queue twice as many requests as it sends at once."""
    return max(cfg.batch_size, math.ceil(cfg.api.concurrency / 2)) if cfg.backend == "openai" else cfg.batch_size


def add_captioner(ds, cfg: CaptionerConfig, job: Job, drop_pixels: bool, pools: int):
    """The dataset with one captioner's raw_/err_/finish_ columns added."""
    import ray.data

    if cfg.backend == "vllm":
        return vllm_batch.apply(ds, cfg, job.seed, drop_pixels)
    num_cpus, num_gpus = actor_resources(f"captioner {cfg.name!r}", cfg.num_cpus, cfg.num_gpus, pools)
    return ds.map_batches(
        ApiCaptionActor if cfg.backend == "openai" else CaptionActor,
        fn_constructor_kwargs={"cfg_json": cfg.model_dump_json(), "drop_pixels": drop_pixels, "seed": job.seed},
        batch_size=ray_batch_size(cfg), batch_format="numpy", num_cpus=num_cpus, num_gpus=num_gpus,
        compute=ray.data.ActorPoolStrategy(min_size=1, max_size=cfg.concurrency),
    )


def finalize_block(batch: dict, job_json: str) -> pa.Table:
    return rows_to_table(finalize_rows(batch, Job.model_validate_json(job_json)), CAPTIONED)


def budget_counter(job: Job):
    """Token counter of the caption budget: the job's tokenizer, else the chosen captioner's."""
    cap = job.caption
    return token_counter(cap.tokenizer or next(c for c in cap.captioners if c.name == cap.chosen).model)


def finalize_rows(batch: dict, job: Job) -> list[dict]:
    """Clean every captioner's text, pick the training caption, count its tokens."""
    cap = job.caption
    names = [c.name for c in cap.captioners]
    count = budget_counter(job)
    rows = []
    for i in range(len(batch["key"])):
        row = {"unit": batch["unit"][i], "key": batch["key"][i]}
        prep_error = batch["prep_error"][i]
        errors = {name: batch[f"err_{name}"][i] for name in names}
        finish = {name: batch[f"finish_{name}"][i] for name in names if not errors[name]}
        captions = {name: clean(batch[f"raw_{name}"][i], count, cap.max_tokens, cut_by_limit=finish[name] == FINISH_LENGTH)
                    for name in finish}
        alt = batch["alt"][i]
        row["captions"] = [(n, c.text) for n, c in captions.items()] + ([("alt", alt)] if alt else [])
        row["finish_reasons"] = list(finish.items())
        chosen = captions.get(cap.chosen)
        if prep_error:
            row.update(status=Reason.READ_ERROR.value, detail=prep_error)
        elif errors[cap.chosen]:
            row.update(status=Reason.CAPTION_FAILED.value, detail=errors[cap.chosen])
        elif chosen.text:
            row.update(status=CAPTIONED_OK, caption=chosen.text, caption_tokens=chosen.tokens, caption_cut=chosen.cut)
        elif cap.fallback_to_alt and alt:
            fallback = clean(alt, count, cap.max_tokens)
            row.update(status=CAPTIONED_OK, caption=fallback.text, caption_tokens=fallback.tokens, caption_cut=fallback.cut,
                       detail=f"{cap.chosen} returned nothing; used alt text")
        else:
            row.update(status=Reason.EMPTY_CAPTION.value, detail=f"{cap.chosen} returned nothing and there is no alt text")
        row["captioner"] = cap.chosen if chosen and chosen.text else "alt"
        rows.append(row)
    return rows


class ScoreActor:
    """Ray actor: finishes the captions (finalize_rows), scores each training caption for
    hallucination, then applies the job's action (flag, drop, or fall back to another
    captioner's text when that one scores better)."""

    def __init__(self, job_json: str):
        from curate.devices import pick_device
        from curate.hallucination.scorer import CaptionScorer

        self.job = Job.model_validate_json(job_json)
        self.scorer = CaptionScorer(self.job, pick_device(self.job.hallucination.num_gpus, "hallucination scorer"))

    def __call__(self, batch: dict) -> pa.Table:
        rows = finalize_rows(batch, self.job)
        todo = [i for i, r in enumerate(rows) if r["status"] == CAPTIONED_OK]
        images = [Image.fromarray(np.asarray(batch["pixels"][i], dtype=np.uint8)) for i in todo]
        alts = [batch["alt"][i] for i in todo]
        scored = self.scorer.score(images, [rows[i]["caption"] for i in todo], alts)
        for i, ev in zip(todo, scored):
            rows[i]["evidence"] = {**ev, "captioner": rows[i]["captioner"]}
        h = self.job.hallucination
        over = [(k, i) for k, i in enumerate(todo) if rows[i]["evidence"]["score"] > h.threshold]
        if h.action == "fallback" and over:
            self._fall_back([rows[i] for _, i in over], [images[k] for k, _ in over], [alts[k] for k, _ in over])
        elif h.action == "drop":
            for _, i in over:
                ev = rows[i]["evidence"]
                rows[i].update(status=Reason.HALLUCINATION.value,
                               detail=f"hallucination score {ev['score']:.2f} > {h.threshold} ({', '.join(ev['flags'])})")
        for i in todo:
            ev = rows[i]["evidence"]
            rows[i]["hallucination"] = {"score": ev["score"], "flags": ev["flags"]}
        return rows_to_table(rows, CAPTIONED)

    def _fall_back(self, rows: list[dict], images: list[Image.Image], alts: list[str | None]) -> None:
        name = self.job.hallucination.fallback_captioner
        texts = [dict(r["captions"]).get(name) or "" for r in rows]
        scored = self.scorer.score(images, texts, alts)
        for row, text, ev in zip(rows, texts, scored):
            if text and ev["score"] < row["evidence"]["score"]:
                was = row["evidence"]["score"]
                fallback = clean(text, budget_counter(self.job), self.job.caption.max_tokens)
                row.update(caption=fallback.text, caption_tokens=fallback.tokens, caption_cut=fallback.cut,
                           evidence={**ev, "captioner": name},
                           detail=f"hallucination score {was:.2f} > {self.job.hallucination.threshold}: used {name}'s caption")


def run_caption(job: Job, run: RunDir, progress) -> dict:
    import ray.data

    kept = kept_rows(run)
    all_units = sorted(p.name.removesuffix(".done") for p in run.ingest.glob("*.done"))
    pending = [u for u in all_units if not run.is_done(run.done(run.caption, u))]
    counts = dict(zip(*[c.to_pylist() for c in pc.value_counts(kept["unit"]).flatten()])) if kept.num_rows else {}
    for unit in pending:
        if not counts.get(unit):  # nothing kept: commit an empty unit right away
            _commit(run, unit, CAPTIONED.empty_table(), kept)
    pending = [u for u in pending if counts.get(u)]
    if not pending:
        return {"units": 0, "samples": 0}
    expected = {u: counts[u] for u in pending}
    side = max(c.image_side for c in job.caption.captioners)
    if job.hallucination.enabled and job.hallucination.ocr:   # OCR needs legible text: decode larger once
        side = max(side, job.hallucination.ocr_side)
    ds = unit_dataset(kept, pending).map_batches(
        prepare_block, batch_size=None, batch_format="pyarrow", fn_kwargs={"side": side, "job_json": job.model_dump_json(), "root": str(run.root)}
    )
    captioners, scoring = job.caption.captioners, job.hallucination.enabled
    n = sum(c.backend != "vllm" for c in captioners) + scoring  # CPU-sharing actor pools (vLLM's stages size themselves)
    for i, cfg in enumerate(captioners):
        ds = add_captioner(ds, cfg, job, drop_pixels=i == len(captioners) - 1 and not scoring, pools=n)
    if scoring:
        h = job.hallucination
        num_cpus, num_gpus = actor_resources("hallucination scorer", h.num_cpus, h.num_gpus, n)
        ds = ds.map_batches(
            ScoreActor, fn_constructor_kwargs={"job_json": job.model_dump_json()}, batch_size=h.batch_size,
            batch_format="numpy", num_cpus=num_cpus, num_gpus=num_gpus,
            compute=ray.data.ActorPoolStrategy(min_size=1, max_size=h.concurrency),
        )
    else:
        ds = ds.map_batches(finalize_block, batch_size=None, batch_format="numpy", fn_kwargs={"job_json": job.model_dump_json()})
    task = progress.add_task("caption", total=sum(expected.values()))
    commit_by_unit(ds, expected, lambda u, rows: _commit(run, u, rows, kept), on_rows=lambda k: progress.advance(task, k))
    return {"units": len(pending), "samples": sum(expected.values())}


def captioner_summary(job: Job, run: RunDir) -> dict:
    """Per captioner, for the manifest: its effective decoding settings and how its captions ended."""
    from captioners.presets import describe

    finishes = read_parquet_dir(run.caption, CAPTIONED, ["finish_reasons"])["finish_reasons"]
    ended = Counter(pair for row in finishes.to_pylist() if row for pair in row)
    return {c.name: {**describe(c, job.seed), "finish": {reason: n for (name, reason), n in sorted(ended.items()) if name == c.name}}
            for c in job.caption.captioners}


def _commit(run: RunDir, unit: str, rows: pa.Table, kept: pa.Table) -> None:
    write_parquet_atomic(run.caption / f"{unit}.parquet", rows)
    failed = rows.filter(pc.not_equal(rows["status"], CAPTIONED_OK)).select(["key", "status", "detail"])
    if failed.num_rows:
        failed = failed.join(kept.select(["key", "unit", "source", "uri"]), "key")
    write_parquet_atomic(run.rejects / "caption" / f"{unit}.parquet", rejects_from(failed, "caption"))
    run.mark(run.done(run.caption, unit))
