"""The PixArt-sigma export, read back the way PixArt's multi-scale loader and batch sampler do."""

import json
from collections import defaultdict

import pyarrow.parquet as pq
from PIL import Image

from schemas.buckets import ASPECT_RATIO_1024
from tests.conftest import cli


def pixart_closest_ratio(height: float, width: float, ratios: dict) -> str:
    """PixArt's get_closest_ratio: the key with the least |key - h/w|."""
    aspect = height / width
    return min(ratios.keys(), key=lambda r: abs(float(r) - aspect))


def aspect_ratio_batches(infos: list[dict], batch_size: int) -> list[list[int]]:
    """A PixArt-style AspectRatioBatchSampler: full batches of one bucket, by data_info h/w."""
    buckets, batches = defaultdict(list), []
    for i, info in enumerate(infos):
        bucket = buckets[pixart_closest_ratio(info["height"], info["width"], ASPECT_RATIO_1024)]
        bucket.append(i)
        if len(bucket) == batch_size:
            batches.append(list(bucket))
            bucket.clear()
    return batches


def test_export_pixart_feeds_an_aspect_ratio_sampler(demo_run, tmp_path):
    out = tmp_path / "pixart"
    res = cli("export", "pixart", str(demo_run.run_dir), str(out), "--dense", "dense", "--prompt-fallback", "short")
    assert res.returncode == 0, res.stderr
    infos = json.loads((out / "InternData/data_info.json").read_text())
    index = {r["member"]: r for r in pq.read_table(demo_run.run_dir / "index").to_pylist()}
    assert {i["path"] for i in infos} == set(index)
    for info in infos:
        row = index[info["path"]]
        with Image.open(out / "InternImgs" / info["path"]) as img:  # as PixArt opens it: no EXIF transpose
            assert (img.width, img.height) == (info["width"], info["height"]) == (row["width"], row["height"])
        assert info["ratio"] == row["height"] / row["width"] <= 4.5
        assert info["sharegpt4v"] == (dict(row["captions"])["dense"] or row["caption"]) and info["sharegpt4v"]
        captions = dict(row["captions"])   # never an empty prompt: alt text, else the `short` captioner's
        assert info["prompt"] == (captions.get("alt") or captions["short"]) and info["prompt"]
        assert pixart_closest_ratio(info["height"], info["width"], ASPECT_RATIO_1024) == row["bucket"]
    batches = aspect_ratio_batches(infos, batch_size=2)
    assert batches, "no full same-bucket batch"
    for batch in batches:
        assert len({index[infos[i]["path"]]["bucket"] for i in batch}) == 1
    assert cli("export", "pixart", str(tmp_path / "nothing"), str(out)).returncode == 1


def test_export_subsets_the_4k_images_buckets_and_aesthetics(demo_run, tmp_path):
    index = pq.read_table(demo_run.run_dir / "index").to_pylist()
    uhd = [r for r in index if r["is_4k"]]
    bucket = uhd[0]["bucket"]
    floor = sorted(r["aesthetic"] for r in index)[len(index) // 2]
    cases = [(["--only-4k"], {r["member"] for r in uhd}),
             (["--only-4k", "--bucket", bucket], {r["member"] for r in uhd if r["bucket"] == bucket}),
             (["--min-aesthetic", str(floor)], {r["member"] for r in index if r["aesthetic"] >= floor})]
    for args, expected in cases:
        out = tmp_path / "-".join(args)
        res = cli("export", "pixart", str(demo_run.run_dir), str(out), *args)
        assert res.returncode == 0, res.stderr
        infos = json.loads((out / "InternData/data_info.json").read_text())
        assert {i["path"] for i in infos} == expected and expected, args
        assert {p.name for p in (out / "InternImgs").iterdir()} == expected
        assert f"{len(expected)}/{len(expected)}" in res.stderr   # progress, to the last sample
        assert all(i["prompt"] for i in infos)   # default fallback: the training caption
