"""The ingest phase's model stage: one CLIP image embedding per image, and everything read
from it in a Ray actor: the aesthetic score, the NSFW and watermark heads, the alt-text
agreement (CLIP cosine with the alt text's embedding), and their gates.

It receives the working-size pixels the ingest task decoded (raw RGB bytes + shape), so
no image is decoded twice; it drops them before rows go back to the driver. The embedding is
kept (float16) for semantic dedup and the caption phase's CLIP check, so no later phase
embeds the image again.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from PIL import Image

from filters.aesthetics import AestheticScorer
from filters.gates import Gate, apply
from filters.heads import load_embedding_head
from schemas.job import FiltersConfig
from schemas.record import INGESTED, STAGED


class EmbedActor:
    def __init__(self, filters_json: str, gates: list[Gate] = ()):
        self.filters = FiltersConfig.model_validate_json(filters_json)
        self.gates = gates   # the job's embedding-stage gates (filters.gates), applied once a row has its scores
        self.scorer = AestheticScorer(self.filters.aesthetics)
        safety = self.filters.safety
        self.heads = {name: load_embedding_head(cfg).to(self.scorer.device)
                      for name, cfg in (("nsfw", safety.nsfw_head), ("watermark", safety.watermark_head)) if cfg is not None}
        dim = getattr(self.scorer.model.visual, "output_dim", None)
        for name, head in self.heads.items():
            if dim is not None and head.dim != dim:
                raise ValueError(f"filters.safety.{name}_head: the head takes {head.dim}-d embeddings but "
                                 f"{self.filters.aesthetics.clip_model} gives {dim}-d ones")

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows = batch.to_pylist()
        todo = [i for i, r in enumerate(rows) if r["pixels"] is not None]
        images = [Image.frombytes("RGB", (rows[i]["pixels_shape"][1], rows[i]["pixels_shape"][0]), rows[i]["pixels"]) for i in todo]
        embeddings = self.scorer.embed(images)
        scores = {"aesthetic": self.scorer.score(embeddings), **{name: head(embeddings) for name, head in self.heads.items()}}
        if self.filters.alt_text.enabled:
            scores["clip_alt"] = self._alt_agreement([rows[i] for i in todo], embeddings)
        for n, i in enumerate(todo):
            row = rows[i]
            row.update({name: None if np.isnan(values[n]) else float(values[n]) for name, values in scores.items()})
            if self.filters.aesthetics.keep_embeddings:
                row["embedding"] = embeddings[n].astype(np.float16)
            if row["status"] == STAGED and apply(self.gates, row):
                row["blob"] = None
        return pa.Table.from_pylist([{k: r.get(k) for k in INGESTED.names} for r in rows], schema=INGESTED)

    def _alt_agreement(self, rows: list[dict], embeddings: np.ndarray) -> np.ndarray:
        """Cosine of each image with its alt text; NaN where there is none (never rejected)."""
        out = np.full(len(rows), np.nan, np.float32)
        with_alt = [n for n, r in enumerate(rows) if r.get("alt") and r["alt"].strip()]
        if with_alt:
            texts = self.scorer.embed_texts([rows[n]["alt"] for n in with_alt])
            out[with_alt] = np.sum(texts * embeddings[with_alt], axis=1)
        return out
