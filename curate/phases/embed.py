"""The ingest phase's model stage: CLIP embedding + aesthetic score in a Ray actor.

It receives the working-size pixels the ingest task decoded (raw RGB bytes + shape), so
no image is decoded twice; it drops them before rows go back to the driver.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from PIL import Image

from filters.aesthetics import AestheticScorer
from filters.gates import Gate, apply
from schemas.job import AestheticsConfig
from schemas.record import INGESTED, STAGED


class EmbedActor:
    def __init__(self, cfg_json: str, gates: list[Gate] = ()):
        self.cfg = AestheticsConfig.model_validate_json(cfg_json)
        self.gates = gates   # the job's embedding-stage gates (filters.gates), applied once a row has its score
        self.scorer = AestheticScorer(self.cfg)

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows = batch.to_pylist()
        todo = [i for i, r in enumerate(rows) if r["pixels"] is not None]
        images = [Image.frombytes("RGB", (rows[i]["pixels_shape"][1], rows[i]["pixels_shape"][0]), rows[i]["pixels"]) for i in todo]
        embeddings = self.scorer.embed(images)
        scores = self.scorer.score(embeddings)
        for i, emb, score in zip(todo, embeddings, scores):
            row = rows[i]
            row["aesthetic"] = float(score)
            if self.cfg.keep_embeddings:
                row["embedding"] = emb.astype(np.float32).tolist()
            if row["status"] == STAGED and apply(self.gates, row):
                row["blob"] = None
        return pa.Table.from_pylist([{k: r.get(k) for k in INGESTED.names} for r in rows], schema=INGESTED)
