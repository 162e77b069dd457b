"""The smaller commands: sample, buckets, inspect, status."""

import hashlib
import json
import re

import pyarrow.parquet as pq

from tests.conftest import cli


def digests(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_sample_is_deterministic_and_varied(tmp_path, corpus, truth):
    res = cli("sample", str(tmp_path / "again"), "--n", "4", "--seed", "0")
    assert res.returncode == 0, res.stderr
    assert digests(tmp_path / "again") == digests(corpus)
    kinds = {e["kind"] for e in truth.values()}
    assert {"ladder", "4k", "text", "small", "extreme", "exif", "near_dup", "exact_dup", "broken", "plain"} <= kinds
    assert {n.rsplit(".", 1)[1] for n in truth} >= {"jpg", "png", "webp"}
    assert all((corpus / (n.rsplit(".", 1)[0] + ".txt")).exists() for n, e in truth.items() if e["kind"] != "broken")


def test_buckets_prints_the_table():
    res = cli("buckets", "--table", "2048")
    assert res.returncode == 0
    rows = [line for line in res.stdout.splitlines() if line.startswith("│")]
    assert "ASPECT_RATIO_2048" in res.stdout and len(rows) == 40
    assert re.search(r"│\s+4\.0 │\s+4096 │\s+1024 │", res.stdout)
    assert cli("buckets", "--table", "999").returncode == 2


def test_inspect_and_status_read_a_finished_run(demo_run):
    root = demo_run.run_dir
    shard = next(root.glob("ar1024/*/*.tar"))
    res = cli("inspect", str(shard), "--n", "2")
    assert res.returncode == 0
    key = json.loads(next(iter(__import__("webdataset").WebDataset(str(shard), shardshuffle=False, empty_check=False)))["json"])["key"]
    assert key in res.stdout
    res = cli("inspect", str(root), "--n", "1")
    first = pq.read_table(root / "index").sort_by("key").slice(0, 1).to_pylist()[0]
    assert res.returncode == 0 and first["key"] in res.stdout and first["bucket"] in res.stdout
    assert f"{first['aesthetic']:.2f}" in res.stdout and f"{first['hallucination']['score']:.2f}" in res.stdout
    res = cli("status", str(root))
    assert res.returncode == 0
    assert re.search(rf"written\s*│\s*{demo_run.manifest['counts']['written']} │", res.stdout)
    assert cli("status", str(root / "nothing-here")).returncode == 1
