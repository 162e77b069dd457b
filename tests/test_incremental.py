"""Incremental dedup: a run against an earlier run's hash index writes nothing new for the same input."""

import pyarrow.parquet as pq

from curate.jobs import load_job
from curate.runner import run_job
from tests.conftest import DEMO_JOB, demo_overrides


def test_same_input_against_the_first_run_writes_nothing(demo_run, corpus, tiny_vlm, tmp_path):
    first = demo_run.run_dir
    job = load_job(DEMO_JOB, [*demo_overrides(corpus, tiny_vlm, tmp_path / "second"), f"dedup.against=[{first}]",
                              "dedup.engine=ray"])
    result = run_job(job, DEMO_JOB)
    counts = result.manifest["counts"]
    first_counts = demo_run.manifest["counts"]
    assert counts["written"] == 0
    assert counts["inputs"] == first_counts["inputs"]
    staged = first_counts["written"] + first_counts["rejected"].get("near_duplicate", 0) + first_counts["rejected"].get("exact_duplicate", 0)
    assert counts["rejected"]["earlier_run_duplicate"] == staged
    rejects = [r for r in pq.read_table(result.run_dir / "rejects").to_pylist() if r["reason"] == "earlier_run_duplicate"]
    first_keys = set(pq.read_table(first / "index")["key"].to_pylist())
    assert all(r["near_duplicate_of"] in first_keys and "from earlier run demo" in r["detail"] for r in rejects)
    assert pq.read_table(result.run_dir / "hashes.parquet").num_rows == 0
