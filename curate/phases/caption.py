"""Phase 3, caption: kept samples -> CPU tasks decode and shrink -> captioner actor pool(s)
-> post-processing and the choice of the training caption -> committed per unit.

CPU tasks do all JPEG decoding, so the (GPU) actors only run the model.
"""

from __future__ import annotations

import asyncio
import json
import math
import shutil
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
from curate import failpoint
from curate.engine import actor_resources, commit_by_unit, node_cpus, unit_dataset
from curate.imaging import decode_for_model
from curate.phases.rejects import rejects_from
from curate.phases.restage import restage_missing
from curate.sources import stored_bytes
from curate.staging import store_for
from curate.storage import RunDir, read_parquet_dir, staged_rows, write_parquet_atomic
from schemas.job import CaptionerConfig, Job
from schemas.reasons import Reason
from schemas.record import CAPTIONED, CAPTIONED_OK, DEDUP, PREPARED, rows_to_table


def kept_rows(run: RunDir, embeddings: bool = False) -> pa.Table:
    """The staged rows dedup kept (with ingest's image embedding when `embeddings`)."""
    staged = staged_rows(run, embeddings=embeddings)
    decisions = pq.read_table(run.dedup, schema=DEDUP)
    keep = decisions.filter(decisions["keep"])["key"]
    return staged.filter(pc.is_in(staged["key"], keep)).sort_by("key")


def prepared_row(unit: str, key: str, alt: str | None, image: Image.Image | None, error: str | None = None,
                 reason: Reason = Reason.READ_ERROR, embedding=None) -> dict:
    """One row of PREPARED: the RGB pixels of `image`, or the error (and reason) that stopped its
    decode; `embedding`: ingest's CLIP image embedding, for the scorer."""
    row = {"unit": unit, "key": key, "alt": alt, "prep_error": error, "prep_reason": reason.value if error else None,
           "embedding": embedding}
    if image is not None:
        row.update(pixels=image.tobytes(), pixels_shape=[image.height, image.width])
    return row


def reuses_embeddings(job: Job) -> bool:
    """Whether the hallucination CLIP check reads ingest's stored image embeddings (same model)."""
    aes = job.filters.aesthetics
    return job.hallucination.enabled and aes.enabled and aes.keep_embeddings


def prepare_block(batch: pa.Table, side: int, job_json: str, root: str, reuse: tuple[str, ...] = ()) -> pa.Table:
    """Decode and shrink each image to `side` (long side) in a CPU task, from one ranged read of
    its staged copy. Raw captions of the captioners in `reuse` (the previous caption run's, joined
    on the driver by `with_previous_raw`) pass through: their actors then skip those rows. Each
    row carries the image embedding ingest stored (joined on the driver by `kept_rows`) when the
    scorer reads it instead of embedding the image again."""
    job = Job.model_validate_json(job_json)
    raw_columns = [f"{kind}_{name}" for name in reuse for kind in ("raw", "err", "finish")]
    embedded = "embedding" in batch.column_names
    store = store_for(job, root)
    rows = []
    for row in batch.select(["unit", "key", "alt", "uri", "source", "blob", "changed", *raw_columns,
                             *(["embedding"] if embedded else [])]).to_pylist():
        image, error, reason = None, row["changed"], Reason.SOURCE_CHANGED
        if error is None:
            try:
                image = decode_for_model(stored_bytes(row, job, Path(root), store), side)
            except Exception as exc:
                error, reason = f"{type(exc).__name__}: {exc}", Reason.READ_ERROR
        out = prepared_row(row["unit"], row["key"], row["alt"], image, error, reason, row.get("embedding"))
        rows.append(out | {c: row[c] for c in raw_columns})
    return rows_to_table(rows, with_raw_columns(PREPARED, reuse))


def decode_tasks(next_pool: int, blocks: int):
    """The prepare step's compute: CPU tasks, at most one per CPU and per block, never as many as
    the actor pool after it (`next_pool` actors). Ray Data fuses a task step into the next actor
    pool when the step's size is unset or equal to the pool's and both reserve the same
    resources, as a CPU-only captioner does; fused, every decode would run inside the pool's few
    actors, one image at a time, with the model waiting on it, instead of on the free CPUs. With
    no more blocks than actors, fusing costs nothing (each actor decodes its own block): None."""
    import ray.data

    size = min(max(1, int(sum(node_cpus()))), blocks)
    if size == next_pool:
        return ray.data.TaskPoolStrategy(size=size + 1) if blocks > size else None
    return ray.data.TaskPoolStrategy(size=size)


def with_raw_columns(schema: pa.Schema, names) -> pa.Schema:
    for name in names:
        for column in (f"raw_{name}", f"err_{name}", f"finish_{name}"):
            schema = schema.append(pa.field(column, pa.string()))
    return schema


def with_previous_raw(run: RunDir, kept: pa.Table, units: list[str], reuse: list[str]) -> pa.Table:
    """`kept` plus raw_/err_/finish_ columns of the captioners in `reuse`: their texts from the
    previous caption run of `units` (`_work/caption.prev/`), null where it has none."""
    previous: dict[str, dict[str, tuple[str, str]]] = {}
    for unit in units if reuse else ():
        previous |= previous_raw(run, unit)
    keys = kept["key"].to_pylist()
    for name in reuse:
        found = [previous.get(k, {}).get(name, (None, None)) for k in keys]
        kept = kept.append_column(f"raw_{name}", pa.array([t for t, _ in found], pa.string()))
        kept = kept.append_column(f"err_{name}", pa.array(["" if t is not None else None for t, _ in found], pa.string()))
        kept = kept.append_column(f"finish_{name}", pa.array([f for _, f in found], pa.string()))
    return kept


def previous_raw(run: RunDir, unit: str) -> dict[str, dict[str, tuple[str, str]]]:
    """key -> {captioner: (raw text, finish reason)} of a unit's previous caption run, when kept aside."""
    path = run.work / "caption.prev" / f"{unit}.parquet"
    if not path.exists():
        return {}
    table = pq.read_table(path, columns=["key", "raw", "finish_reasons"])
    return {k: {name: (text, dict(f or []).get(name, "")) for name, text in (r or [])}
            for k, r, f in zip(table["key"].to_pylist(), table["raw"].to_pylist(), table["finish_reasons"].to_pylist())}


def images_of(batch: pa.Table, rows: list[int]) -> list[Image.Image]:
    """The prepared RGB images of the given rows of a batch."""
    pixels, shapes = batch["pixels"], batch["pixels_shape"]
    return [Image.frombytes("RGB", (shapes[i][1].as_py(), shapes[i][0].as_py()), pixels[i].as_py()) for i in rows]


def with_columns(batch: pa.Table, columns: dict[str, list[str | None]]) -> pa.Table:
    """`batch` plus string columns (replacing any of the same name)."""
    for name, values in columns.items():
        array = pa.array(values, pa.string())
        if name in batch.column_names:
            batch = batch.set_column(batch.column_names.index(name), name, array)
        else:
            batch = batch.append_column(name, array)
    return batch


class CaptionActor:
    """Ray actor: loads one captioner once, captions batches, keeps order. Adds the columns
    raw_<name> (text), err_<name> (error, "" when none) and finish_<name> (stop | length; "" when
    it failed).

    `finish_json` (the job): this actor is the last stage and no scorer follows, so it also
    finalizes its batches (`finalize_rows`) here, where transformers is already loaded; as a
    separate task, each new worker process would import transformers (~2 s) only to count tokens."""

    def __init__(self, cfg_json: str, drop_pixels: bool, seed: int = 0, finish_json: str | None = None):
        self.cfg = CaptionerConfig.model_validate_json(cfg_json)
        self.captioner = build_captioner(self.cfg, seed)
        self.drop_pixels = drop_pixels
        self.finish = Job.model_validate_json(finish_json) if finish_json else None

    def __call__(self, batch: pa.Table) -> pa.Table:
        n = batch.num_rows
        raw, err, fin = f"raw_{self.cfg.name}", f"err_{self.cfg.name}", f"finish_{self.cfg.name}"
        texts: list[str | None] = batch[raw].to_pylist() if raw in batch.column_names else [None] * n
        finishes = [f or "" for f in batch[fin].to_pylist()] if fin in batch.column_names else [""] * n
        errors = [e or "" for e in batch["prep_error"].to_pylist()]
        ok = [i for i in range(n) if not errors[i] and texts[i] is None]   # rows with a reused caption are done
        failpoint.hit("caption.batch")
        if ok:
            keys, alts = batch["key"].to_pylist(), batch["alt"].to_pylist()
            metas = [{"key": keys[i], "alt": alts[i]} for i in ok]
            for i, res in zip(ok, self.captioner.caption(images_of(batch, ok), metas)):
                texts[i] = res.text or ""
                finishes[i] = res.finish or ""
                errors[i] = f"caption: {res.error}" if res.error else ""
        out = with_columns(batch, {raw: texts, err: errors, fin: finishes})
        if self.finish is not None:
            return rows_to_table(finalize_rows(out, self.finish), CAPTIONED)
        return out.drop_columns(["pixels"]) if self.drop_pixels else out


class ApiCaptionActor(CaptionActor):
    """CaptionActor for the openai backend. Ray Data runs an async actor's batches concurrently
    (four per task by default), so requests from several batches queue in the captioner's one
    worker pool, which keeps `api.concurrency` in flight whatever the batch size."""

    async def __call__(self, batch: pa.Table) -> pa.Table:
        return await asyncio.to_thread(CaptionActor.__call__, self, batch)


def ray_batch_size(cfg: CaptionerConfig) -> int:
    """Rows per Ray batch: the job's batch size; for the openai backend at least half its request
    limit, so the four batches in flight queue twice as many requests as it sends at once."""
    return max(cfg.batch_size, math.ceil(cfg.api.concurrency / 2)) if cfg.backend == "openai" else cfg.batch_size


def add_captioner(ds, cfg: CaptionerConfig, job: Job, drop_pixels: bool, pools: int, finish: bool = False):
    """The dataset with one captioner's raw_/err_/finish_ columns added (`finish`: and the rows
    finalized by its actor, the last stage; see CaptionActor)."""
    import ray.data

    if cfg.backend == "vllm":
        return vllm_batch.apply(ds, cfg, job.seed, drop_pixels)
    num_cpus, num_gpus = actor_resources(f"captioner {cfg.name!r}", cfg.num_cpus, cfg.num_gpus, pools)
    return ds.map_batches(
        ApiCaptionActor if cfg.backend == "openai" else CaptionActor,
        fn_constructor_kwargs={"cfg_json": cfg.model_dump_json(), "drop_pixels": drop_pixels, "seed": job.seed,
                               "finish_json": job.model_dump_json() if finish else None},
        batch_size=ray_batch_size(cfg), batch_format="pyarrow", num_cpus=num_cpus, num_gpus=num_gpus,
        compute=ray.data.ActorPoolStrategy(min_size=1, max_size=cfg.concurrency),
    )


def finalize_block(batch: pa.Table, job_json: str) -> pa.Table:
    return rows_to_table(finalize_rows(batch, Job.model_validate_json(job_json)), CAPTIONED)


def budget_counter(job: Job):
    """Token counter of the caption budget, in the text encoder's tokenizer (`caption.tokenizer`)."""
    return token_counter(job.caption.tokenizer)


def finalize_rows(table: pa.Table, job: Job) -> list[dict]:
    """Clean every captioner's text, pick the training caption, count its tokens."""
    batch = table.drop_columns([c for c in ("pixels", "pixels_shape") if c in table.column_names]).to_pydict()
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
        row["raw"] = [(n, batch[f"raw_{n}"][i]) for n in finish]
        row["finish_reasons"] = list(finish.items())
        chosen = captions.get(cap.chosen)
        if prep_error:
            row.update(status=batch["prep_reason"][i] or Reason.READ_ERROR.value, detail=prep_error)
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
        self.scorer = CaptionScorer(self.job, pick_device(self.job.hallucination.num_gpus, "hallucination scorer"),
                                    image_tower=not reuses_embeddings(self.job))

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows = finalize_rows(batch, self.job)
        todo = [i for i, r in enumerate(rows) if r["status"] == CAPTIONED_OK]
        images = images_of(batch, todo)
        alts = batch["alt"].take(todo).to_pylist()
        embeddings = self._embeddings(batch, todo)
        scored = self.scorer.score(images, [rows[i]["caption"] for i in todo], alts, embeddings)
        for i, ev in zip(todo, scored):
            rows[i]["evidence"] = {**ev, "captioner": rows[i]["captioner"]}
        h = self.job.hallucination
        over = [(k, i) for k, i in enumerate(todo) if rows[i]["evidence"]["score"] > h.threshold]
        if h.action == "fallback" and over:
            self._fall_back([rows[i] for _, i in over], [images[k] for k, _ in over], [alts[k] for k, _ in over],
                            None if embeddings is None else embeddings[[k for k, _ in over]])
        elif h.action == "drop":
            for _, i in over:
                ev = rows[i]["evidence"]
                rows[i].update(status=Reason.HALLUCINATION.value,
                               detail=f"hallucination score {ev['score']:.2f} > {h.threshold} ({', '.join(ev['flags'])})")
        for i in todo:
            ev = rows[i]["evidence"]
            rows[i]["hallucination"] = {"score": ev["score"], "flags": ev["flags"]}
        return rows_to_table(rows, CAPTIONED)

    def _embeddings(self, batch: pa.Table, rows: list[int]):
        """Ingest's stored image embeddings of these rows (float32), or None when any is missing
        (the scorer then embeds the images itself)."""
        if "embedding" not in batch.column_names or not rows:
            return None
        stored = batch["embedding"].take(rows).to_pylist()
        if any(e is None for e in stored):
            return None
        return np.asarray(stored, np.float32)

    def _fall_back(self, rows: list[dict], images: list[Image.Image], alts: list[str | None], embeddings) -> None:
        name = self.job.hallucination.fallback_captioner
        texts = [dict(r["captions"]).get(name) or "" for r in rows]
        scored = self.scorer.score(images, texts, alts, embeddings)
        for row, text, ev in zip(rows, texts, scored):
            if text and ev["score"] < row["evidence"]["score"]:
                was = row["evidence"]["score"]
                fallback = clean(text, budget_counter(self.job), self.job.caption.max_tokens)
                row.update(caption=fallback.text, caption_tokens=fallback.tokens, caption_cut=fallback.cut,
                           evidence={**ev, "captioner": name},
                           detail=f"hallucination score {was:.2f} > {self.job.hallucination.threshold}: used {name}'s caption")


def run_caption(job: Job, run: RunDir, progress) -> dict:
    import ray.data

    kept = kept_rows(run, embeddings=reuses_embeddings(job))
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
    reuse, complete = reusable_captions(run, kept.filter(pc.is_in(kept["unit"], pa.array(pending, pa.string()))))
    changed = restage_missing(job, run, staged_rows(run))   # staged copies removed by an earlier, complete run
    kept = kept.append_column("changed", pa.array([changed.get(k) for k in kept["key"].to_pylist()], pa.string()))
    kept = with_previous_raw(run, kept, pending, reuse)
    # a captioner whose earlier raw text covers every pending sample is not run at all
    captioners = [c for c in job.caption.captioners if c.name not in complete]
    scoring = job.hallucination.enabled
    first_pool = (captioners[0].concurrency if captioners and captioners[0].backend != "vllm"
                  else job.hallucination.concurrency if scoring and not captioners else 0)
    ds = unit_dataset(kept, pending).map_batches(
        prepare_block, batch_size=None, batch_format="pyarrow", compute=decode_tasks(first_pool, len(pending)),
        fn_kwargs={"side": side, "job_json": job.model_dump_json(), "root": str(run.root), "reuse": tuple(reuse)})
    n = sum(c.backend != "vllm" for c in captioners) + scoring  # CPU-sharing actor pools (vLLM's stages size themselves)
    # the last captioner's actor finalizes the rows itself when nothing follows it (not vLLM's stages)
    finished = bool(captioners) and not scoring and captioners[-1].backend != "vllm"
    for i, cfg in enumerate(captioners):
        last = i == len(captioners) - 1
        ds = add_captioner(ds, cfg, job, drop_pixels=last and not scoring, pools=n, finish=last and finished)
    if scoring:
        h = job.hallucination
        num_cpus, num_gpus = actor_resources("hallucination scorer", h.num_cpus, h.num_gpus, n)
        ds = ds.map_batches(
            ScoreActor, fn_constructor_kwargs={"job_json": job.model_dump_json()}, batch_size=h.batch_size,
            batch_format="pyarrow", num_cpus=num_cpus, num_gpus=num_gpus,
            compute=ray.data.ActorPoolStrategy(min_size=1, max_size=h.concurrency),
        )
    elif not finished:
        ds = ds.map_batches(finalize_block, batch_size=None, batch_format="pyarrow", fn_kwargs={"job_json": job.model_dump_json()})
    task = progress.add_task("caption", total=sum(expected.values()))
    commit_by_unit(ds, expected, lambda u, rows: _commit(run, u, rows, kept), on_rows=lambda k: progress.advance(task, k))
    shutil.rmtree(run.work / "caption.prev", ignore_errors=True)   # every unit is committed: nothing left to reuse
    return {"units": len(pending), "samples": sum(expected.values()), "reused": sorted(reuse), "not_run": sorted(complete)}


def reusable_captions(run: RunDir, pending: pa.Table) -> tuple[list[str], set[str]]:
    """(captioners whose previous raw texts can be reused, those of them that cover every pending
    sample). The run's re-configuration wrote which captioners kept their settings."""
    prev = run.work / "caption.prev"
    if not (prev / "reuse.json").exists():
        return [], set()
    reuse = json.loads((prev / "reuse.json").read_text())
    files = sorted(prev.glob("*.parquet"))
    have: dict[str, set[str]] = {name: set() for name in reuse}
    for f in files:
        table = pq.read_table(f, columns=["key", "raw"])
        for key, raw in zip(table["key"].to_pylist(), table["raw"].to_pylist()):
            for name, _ in raw or []:
                if name in have:
                    have[name].add(key)
    keys = set(pending["key"].to_pylist())
    return reuse, {name for name in reuse if keys <= have[name]}


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
    failpoint.hit("caption.commit")
    run.mark(run.done(run.caption, unit))
