"""Resume: a finished job rewrites nothing; a run cut short (lost units, or killed mid-phase)
finishes on re-run with output identical to an uninterrupted run."""

from __future__ import annotations

import hashlib
import shutil
import sys
import tarfile
from pathlib import Path

import pyarrow.parquet as pq

from tests.conftest import DEMO_JOB, cli, demo_overrides, kill_mid_caption, set_args


def snapshot(root: Path) -> dict[str, tuple[int, str]]:
    """mtime and content digest of every file under `root`."""
    return {str(p.relative_to(root)): (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
            for p in sorted(root.rglob("*")) if p.is_file()}


def outputs(root: Path) -> dict[str, str]:
    """Digests of what a reader consumes: shards, index and rejects (not timings)."""
    files = [*root.glob("ar*/*/*.tar"), *root.glob("index/*/*.parquet")]
    digests = {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}
    digests["rejects"] = hashlib.sha256(str(pq.read_table(root / "rejects").sort_by("key").to_pylist()).encode()).hexdigest()
    return digests


def test_second_run_of_a_finished_job_rewrites_nothing(demo_run, corpus, tiny_vlm):
    root = demo_run.run_dir
    before = snapshot(root)
    res = cli("run", str(DEMO_JOB), *set_args(demo_overrides(corpus, tiny_vlm, root)))
    assert res.returncode == 0, res.stderr
    assert "resumed" in res.stdout and "nothing rewritten" in res.stdout
    assert snapshot(root) == before


def test_changed_ingest_config_on_the_same_output_is_refused(demo_run, corpus, tiny_vlm):
    res = cli("run", str(DEMO_JOB), *set_args(demo_overrides(corpus, tiny_vlm, demo_run.run_dir)),
              "--set", "units.size=3")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "ingest settings differ (units.size: 16 -> 3)" in res.stderr and "use --fresh" in res.stderr


def test_lost_units_are_redone_and_output_is_identical(demo_run, corpus, tiny_vlm, tmp_path):
    from curate.jobs import load_job
    from curate.runner import run_job

    reference = outputs(demo_run.run_dir)
    root = tmp_path / "partial"
    shutil.copytree(demo_run.run_dir, root)
    # forget the end of the run, one ingest unit, two caption units and a shard
    for rel in ("manifest.json", "_work/write.done", "report/index.html"):
        (root / rel).unlink()
    shutil.rmtree(root / "index")
    ingest_units = sorted(p.stem for p in (root / "_work/ingest").glob("*.done"))
    for unit in ingest_units[:1]:
        for p in (root / f"_work/ingest/{unit}.done", root / f"_work/ingest/{unit}.parquet", root / f"rejects/ingest/{unit}.parquet"):
            p.unlink()
    for unit in ingest_units[-2:]:
        (root / f"_work/caption/{unit}.done").unlink()
        (root / f"_work/caption/{unit}.parquet").unlink()
    next(root.glob("ar1024/*/*.tar")).unlink()

    job = load_job(DEMO_JOB, demo_overrides(corpus, tiny_vlm, root))
    result = run_job(job, DEMO_JOB)
    assert result.resumed
    assert outputs(root) == reference


def test_killed_run_resumes_to_the_same_output(demo_run, corpus, tiny_vlm, tmp_path):
    """SIGKILL the whole `curate run` process group mid-caption, then run again."""
    root = tmp_path / "killed"
    args = [str(Path(sys.executable).with_name("curate")), "run", str(DEMO_JOB),
            *set_args(demo_overrides(corpus, tiny_vlm, root))]
    kill_mid_caption(args, root, timeout=240)
    assert not (root / "manifest.json").exists() and not (root / "index").exists()
    for tar in root.glob("ar*/*/*.tar"):  # whatever is visible is whole (temporaries are hidden)
        with tarfile.open(tar) as tf:
            tf.getmembers()
    res = cli("run", *args[2:])
    assert res.returncode == 0, res.stderr
    assert outputs(root) == outputs(demo_run.run_dir)
    assert pq.read_table(root / "index").num_rows == demo_run.manifest["counts"]["written"]
