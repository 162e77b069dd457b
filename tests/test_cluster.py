"""Scheduling that cannot deadlock: actor CPUs counted per node, and real multi-node clusters
(2 x 2 CPU, 1 x 2 CPU, and 3 x 1 CPU, where actors of 0.67 CPU spread one per node once starved
every task) that lose a worker node mid-phase and still write every input once, byte-identically."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from curate.engine import actor_cpus
from curate.sample import render
from tests.conftest import published


@pytest.mark.parametrize(("nodes", "requested", "actors", "expected"), [
    ([0, 1, 1, 1], 1.0, 3, 0.0),      # 3 x 1 CPU (+ a 0-CPU head): no node can spare any CPU
    ([0, 2, 2], 1.0, 3, 0.666),       # 2 x 2 CPU: one CPU per node may go to actors
    ([2], 1.0, 3, 0.333),             # 1 x 2 CPU
    ([2], 0.25, 3, 0.25),             # asks for less than there is: unchanged
    ([8, 8], 1.0, 4, 1.0),
    ([1], 0.5, 1, 0.0),               # one 1-CPU node: the task needs it whole
])
def test_actor_cpus_leave_a_whole_cpu_on_some_node(nodes, requested, actors, expected):
    got = actor_cpus(requested, actors, nodes)
    assert got == expected
    # wherever the actors land, some node keeps a whole CPU: the worst case piles them so that
    # every node's free CPUs fall below one, which needs more than sum(C_i - 1) CPUs of actors
    assert got * actors <= sum(max(c - 1, 0) for c in nodes) + 1e-9 or got == requested == 0


PHASES = "ingest,dedup,caption,write"


@pytest.mark.slow
@pytest.mark.timeout(720)   # 300-480 s measured at load 25-60 on 2 cores
def test_small_clusters_lose_a_node_in_each_phase_and_finish_identically(tiny_vlm, fault_job, fault_reference, ray_cluster, s3_server, tmp_path):
    """One multi-node cluster (a 0-CPU head), three shapes in turn: 2 x 2 CPU and 1 x 2 CPU lose
    their last worker node in every phase (ingest, dedup on the Ray engine, caption, write) and
    get a fresh one of its size (on 1 x 2 CPU the run has no CPU at all until it joins); 3 x 1
    CPU, where actors of 0.67 CPU once starved every task, loses one in every phase too, with source,
    staging (`output.work_dir`) and output all on S3, so no node reads another's files. Each run
    completes with every input once and output byte-identical to the one-node run's."""
    from curate.jobs import load_job
    from curate.runner import run_job

    s3 = s3_server.client()
    s3.create_bucket(Bucket="nodes")
    rng = np.random.default_rng(3)
    for i in range(12):   # enough caption work that the node goes while units are still pending
        img, alt = render(rng, 1024, 1024)
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=85)
        s3.put_object(Bucket="nodes", Key=f"src/p{i}.jpg", Body=buf.getvalue())
        s3.put_object(Bucket="nodes", Key=f"src/p{i}.txt", Body=alt.encode())
    captioner = {"model": str(tiny_vlm), "preset": "greedy", "image_side": 64, "batch_size": 2,
                 "generation": {"max_new_tokens": 24, "min_new_tokens": 24}}
    opts = {"endpoint_url": s3_server.endpoint}
    job = {
        "name": "nodes", "out": "s3://nodes/out",
        "output": {"work_dir": "s3://nodes/work", "s3": opts, "part_size_mb": 5},
        "sources": [{"type": "s3", "prefix": "s3://nodes/src/", "s3": opts}],
        "units": {"size": 2},
        "ray": {"no_progress_timeout_s": 180},   # a hang fails in minutes, a loaded 2-core machine does not
        "dedup": {"exact": False, "near": False},
        # three actor pools: the shape that hung (0 of 36 captioned) before per-node accounting
        "caption": {"tokenizer": str(tiny_vlm.parent / "tiny-t5-tokenizer"), "captioners": [{"name": f"c{i}", **captioner} for i in range(3)]},
        "hallucination": {"enabled": False},
    }
    three = tmp_path / "job3x1.yaml"
    three.write_text(yaml.safe_dump(job))
    groups = [("2,2", PHASES, fault_job("nodes2x2", str(tmp_path / "out2x2"), dedup={"engine": "ray"})),
              ("2", PHASES, fault_job("nodes1x2", str(tmp_path / "out1x2"), dedup={"engine": "ray"})),
              ("1,1,1", PHASES, three)]
    args = [a for shape, phases, path in groups for a in (shape, phases, str(path), str(path.with_suffix(".json")))]
    repo = Path(__file__).parents[1]
    proc = subprocess.run([sys.executable, "-m", "tests.multinode", *args],   # cwd: the S3 run's .curate/ lands in tmp_path
                          check=False, cwd=tmp_path, capture_output=True, text=True, timeout=660,
                          env={**os.environ, "RAY_AUTH_MODE": "disabled", "PYTHONPATH": str(repo)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    for shape, phases, path in groups:
        result = json.loads(path.with_suffix(".json").read_text())
        # each node went while its phase still had work to do (dedup: as it started)
        assert sorted(result["removed"]) == sorted(phases.split(",")), (shape, result["removed"])
        for phase, (committed, total) in result["removed"].items():
            assert committed < total, (shape, phase, committed, total)
        if path != three:
            assert result["counts"] == json.loads((fault_reference / "manifest.json").read_text())["counts"]
            expected = published(fault_reference)
            assert len(expected) >= 5 and published(Path(yaml.safe_load(path.read_text())["out"])) == expected, shape
    result = json.loads(three.with_suffix(".json").read_text())
    assert result["counts"] == {"inputs": 12, "written": 12, "rejected": {}, "failed": {}, "is_4k": 0}
    # every image was staged on S3 once and the staged bytes are gone with the run complete
    assert not [k for k in _keys(s3, "work/") if k.startswith("work/staged/")]
    assert not s3.list_multipart_uploads(Bucket="nodes").get("Uploads")
    # the same job on the one-node test cluster, undisturbed, into another prefix: identical output
    (tmp_path / "ref").mkdir()
    os.chdir(tmp_path / "ref")   # its own .curate/nodes
    try:
        run_job(load_job(three, ["out=s3://nodes/reference", "output.work_dir=s3://nodes/work-reference"]), three)
    finally:
        os.chdir(repo)
    expected = [k.removeprefix("out/") for k in _keys(s3, "out/") if k.endswith((".tar", ".parquet")) and "/report/" not in k]
    assert len(expected) >= 3
    for rel in expected:
        assert _get(s3, f"out/{rel}") == _get(s3, f"reference/{rel}"), rel


def _keys(s3, prefix: str) -> list[str]:
    return [o["Key"] for o in s3.list_objects_v2(Bucket="nodes", Prefix=prefix).get("Contents", [])]


def _get(s3, key: str) -> bytes:
    return s3.get_object(Bucket="nodes", Key=key)["Body"].read()
