"""The output's dataset card (README.md): what the run holds and how to load it, with a
Hugging Face `datasets` header naming the shards and their features, so
`load_dataset("<out>")` reads them as webdataset without glue code.

Declared features matter: without them `datasets` infers types from the first five samples,
which fails when a field is null there (a sample outside any duplicate cluster) or when image
formats differ between samples.
"""

from __future__ import annotations

from collections import Counter

import pyarrow as pa
import yaml

from schemas.job import Job
from schemas.record import INDEX


def hf_feature(dtype: pa.DataType, map_keys: list[str]) -> dict:
    """One Arrow type in the YAML form of `datasets.Features` (datasets >= 4)."""
    if pa.types.is_struct(dtype):
        return {"struct": [{"name": f.name, **hf_feature(f.type, map_keys)} for f in dtype]}
    if pa.types.is_map(dtype):   # captions: one field per captioner (and alt)
        return {"struct": [{"name": k, "dtype": "string"} for k in map_keys]}
    if pa.types.is_list(dtype):
        inner = hf_feature(dtype.value_type, map_keys)
        return {"list": inner.get("dtype", inner.get("struct"))}
    if pa.types.is_floating(dtype) or pa.types.is_integer(dtype):
        kind = "float" if pa.types.is_floating(dtype) else "uint" if pa.types.is_unsigned_integer(dtype) else "int"
        return {"dtype": f"{kind}{dtype.bit_width}"}
    return {"dtype": "bool" if pa.types.is_boolean(dtype) else str(dtype)}


def features(job: Job, image_exts: list[str]) -> list[dict]:
    captions = [c.name for c in job.caption.captioners] + ["alt"]
    record = [{"name": f.name, **hf_feature(f.type, captions)} for f in INDEX]
    return ([{"name": "__key__", "dtype": "string"}, {"name": "__url__", "dtype": "string"}]
            + [{"name": ext, "dtype": "image"} for ext in sorted(image_exts)]
            + [{"name": "txt", "dtype": "string"}, {"name": "json", "struct": record}])


def dataset_card(job: Job, index: pa.Table, shard_glob: str) -> str:
    image_exts = sorted({m.rsplit(".", 1)[1] for m in index["member"].to_pylist()})
    buckets = Counter(index["bucket"].to_pylist())
    header = {
        "configs": [{"config_name": "default", "data_files": [{"split": "train", "path": shard_glob}]}],
        "dataset_info": {"features": features(job, image_exts)},
    }
    bucket_lines = "\n".join(f"| {b} | {buckets[b]} |" for b in sorted(buckets, key=float))
    return f"""---
{yaml.safe_dump(header, sort_keys=False)}---

# {job.name}

Written by `curate`: {index.num_rows} image-caption samples in webdataset shards
(`{shard_glob}`), one folder per PixArt aspect-ratio bucket (height/width). Each sample holds the
image (`{'`, `'.join(sorted(image_exts))}`), the training caption (`txt`) and its index record (`json`).

- Index: `index/<bucket>/part-0.parquet` (DuckDB: `select * from read_parquet('index/*/*.parquet')`).
- Hugging Face: `datasets.load_dataset("<this folder>", split="train")`.
- webdataset: `webdataset.WebDataset(shards).decode("pil")`.

| bucket (h/w) | samples |
|---|---|
{bucket_lines}
"""
