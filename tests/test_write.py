"""Shard sizing, and real consumers reading the demo run's shards."""

import json
import tarfile

import pyarrow.parquet as pq

from curate.phases.write import assign_shards


def test_shards_close_at_samples_or_bytes():
    rows = [{"bucket": b, "bytes": n} for b, n in [("0.5", 40), ("0.5", 40), ("0.5", 40), ("1.0", 500), ("1.0", 10), ("1.0", 10)]]
    assert assign_shards(rows, 2, None) == [0, 0, 1, 0, 0, 1]
    assert assign_shards(rows, 100, 90) == [0, 0, 1, 0, 1, 1]   # 500 alone exceeds: a shard of its own
    assert assign_shards(rows, 1, None) == [0, 1, 2, 0, 1, 2]


def test_shard_bytes_are_webdatasets_own_tar_writers():
    """The shard writer avoids importing webdataset (it imports torch) but writes its bytes."""
    import io

    import webdataset as wds

    from curate.phases.write import TAR_MTIME, TarSink

    samples = [("k1", {"jpg": b"x" * 1000}), ("k1", {"txt": "h\u00e9".encode(), "json": b"{}"}), ("k2", {"png": b"y" * 513})]
    ours, theirs = io.BytesIO(), io.BytesIO()
    with TarSink(ours) as sink:
        for key, fields in samples:
            sink.write(key, fields)
    with wds.TarWriter(theirs, encoder=False, mtime=TAR_MTIME) as writer:
        for key, fields in samples:
            writer.write({"__key__": key, **fields})
    assert ours.getvalue() == theirs.getvalue()


def test_webdataset_decodes_pil_and_ray_reads_the_shards(demo_run, ray_cluster):
    import ray.data
    import webdataset as wds

    root = demo_run.run_dir
    index = {r["key"]: r for r in pq.read_table(root / "index").to_pylist()}
    tars = sorted(str(p) for p in root.glob("ar1024/*/*.tar"))
    seen = {}
    for sample in wds.WebDataset(tars, shardshuffle=False, empty_check=False).decode("pil"):
        meta = sample["json"]
        image = sample[meta["member"].rsplit(".", 1)[1]]
        seen[sample["__key__"]] = (image.size, sample["txt"])
    assert set(seen) == set(index)
    for key, (size, text) in seen.items():
        assert text == index[key]["caption"]
        assert size in ((index[key]["width"], index[key]["height"]), (index[key]["height"], index[key]["width"]))
    rows = ray.data.read_webdataset(tars, decoder=None).take_all()
    assert {r["__key__"] for r in rows} == set(index)
    for r in rows:
        meta = json.loads(r["json"])
        assert meta["bucket"] == index[r["__key__"]]["bucket"] and r["txt"].decode() == index[r["__key__"]]["caption"]


def test_index_answers_queries(demo_run):
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    table = ds.dataset(demo_run.run_dir / "index").to_table(filter=pc.field("is_4k"), columns=["key", "bucket", "shard"])
    assert table.num_rows == demo_run.manifest["counts"]["is_4k"]
    assert all(s.startswith(f"ar1024/{b}/") for b, s in zip(table["bucket"].to_pylist(), table["shard"].to_pylist()))


def test_hugging_face_datasets_loads_the_shards_as_webdataset(demo_run, tmp_path):
    from datasets import load_dataset

    root = demo_run.run_dir
    index = {r["key"]: r for r in pq.read_table(root / "index").to_pylist()}
    # the run's dataset card names shards and features; a fresh cache (HF keys its cache by folder name)
    ds = load_dataset(str(root), split="train", cache_dir=str(tmp_path))
    assert ds.num_rows == len(index)
    for sample in ds:
        row = index[sample["__key__"]]
        image = sample[row["member"].rsplit(".", 1)[1]]
        assert image.size in ((row["member_width"], row["member_height"]), (row["member_height"], row["member_width"]))
        assert sample["txt"] == row["caption"] and sample["json"]["bucket"] == row["bucket"]


def test_index_is_partitioned_by_bucket_and_duckdb_queries_it(demo_run):
    import duckdb

    root = demo_run.run_dir
    parts = sorted(p.relative_to(root).as_posix() for p in root.glob("index/*/*.parquet"))
    assert parts == sorted(f"index/{b}/part-0.parquet" for b in demo_run.manifest["buckets"])
    for part in parts:   # each partition reads alone and holds only its bucket
        assert set(pq.read_table(root / part)["bucket"].to_pylist()) == {part.split("/")[1]}
    per_bucket = dict(duckdb.sql(f"select bucket, count(*) from read_parquet('{root}/index/*/*.parquet') group by bucket").fetchall())
    assert per_bucket == demo_run.manifest["buckets"]
    rows = duckdb.sql(f"select shard, member, key from read_parquet('{root}/index/*/*.parquet') where is_4k order by key").fetchall()
    assert len(rows) == demo_run.manifest["counts"]["is_4k"]
    for shard, member, key in rows:   # shard + member locate every sample
        with tarfile.open(root / shard) as tf:
            assert member in tf.getnames() and member.startswith(key)
