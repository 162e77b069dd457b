"""Fault suite: `kill -9` of the driver in every phase (ingest, dedup, caption, write, report,
publish) and of Ray workers mid-unit, each resumed by a plain re-run of the same command, for a
local and an s3:// output. The resumed output must be byte-identical to an uninterrupted run's
(shards, index, hashes, rejects, report table, card; the manifest equal but for times and the
`resumed` flag), every input accounted once, and nothing left behind (temporaries, uploads).

Drivers are `curate run` processes joined to the test session's Ray cluster (RAY_ADDRESS), so a
kill costs no Ray start and the cluster cleans up the killed job's workers. Kill points are
`curate.failpoint`'s (CURATE_FAILPOINT); one case kills the driver from outside instead.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from tests.conftest import published

VOLATILE = ("started_at", "finished_at", "timings_s", "resumed", "job_file", "ray")   # ray: local or cluster


def driver_env(once: Path | None = None, point: str | None = None) -> dict[str, str]:
    import ray

    env = {**os.environ, "RAY_ADDRESS": ray.get_runtime_context().gcs_address, "COLUMNS": "200"}
    env.pop("CURATE_FAILPOINT", None)
    if point:
        env["CURATE_FAILPOINT"] = point
    if once:
        once.mkdir(exist_ok=True)
        env["CURATE_FAILPOINT_ONCE"] = str(once)
    return env


def curate_run(job: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("curate")
    return subprocess.run([str(exe), "run", str(job)], capture_output=True, text=True, env=env, timeout=240, check=False)


def stable(manifest: dict) -> dict:
    """The manifest without what differs between two runs of one job by nature."""
    out = {k: v for k, v in manifest.items() if k not in VOLATILE}
    out["outputs"] = {k: v for k, v in manifest["outputs"].items() if k not in ("out", "work")}
    return out


def assert_same_as(reference: Path, files: dict[str, bytes], manifest: dict, same_config: bool = True) -> None:
    """`files` and `manifest` are the reference run's (the config hash too, unless the output's
    settings differ), and every input is accounted once."""
    expected = published(reference)
    assert sorted(files) == sorted(expected)
    assert [k for k in expected if files[k] != expected[k]] == []
    want = stable(json.loads((reference / "manifest.json").read_text()))
    got = stable(manifest)
    if not same_config:
        want.pop("config_hash"), got.pop("config_hash")
    assert got == want
    assert manifest["resumed"] is True
    keys = [k for rel, data in files.items() if rel.startswith(("index/", "rejects/"))   # written, or rejected with its reason
            for k in pq.read_table(pa.BufferReader(data), columns=["key"])["key"].to_pylist()]
    assert len(keys) == len(set(keys)) == manifest["counts"]["inputs"] == 12   # every input once


def kill_chain(job: Path, points: list[str], once: Path, check) -> None:
    """Run `job` once per kill point, each run killed there (SIGKILL) after resuming the last;
    `check(point)` inspects the state each kill left. Point OUTSIDE: no failpoint, the test
    kills the driver's pid once the first caption unit is committed."""
    for point in points:
        if point == OUTSIDE:
            kill_from_outside(job, Path(yaml.safe_load(job.read_text())["out"]) / "_work/caption")
            returncode, stderr = -signal.SIGKILL, ""
        else:
            res = curate_run(job, driver_env(once, point))
            returncode, stderr = res.returncode, res.stderr
        assert returncode == -signal.SIGKILL, (point, returncode, stderr[-3000:])
        check(point)


OUTSIDE = "outside"


def kill_from_outside(job: Path, commits: Path) -> None:
    exe = Path(sys.executable).with_name("curate")
    proc = subprocess.Popen([str(exe), "run", str(job)], env=driver_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 200
    try:
        while not list(commits.glob("*.done")):
            assert proc.poll() is None and time.time() < deadline, "the run ended before it could be killed"
            time.sleep(0.02)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()


@pytest.mark.slow
@pytest.mark.timeout(600)   # ~260 s measured at load 25 on 2 cores
def test_driver_killed_in_each_phase_resumes_to_identical_output(fault_job, fault_reference, tmp_path):
    """One run folder, killed in ingest, dedup, caption (from outside), write (twice) and report,
    each kill in the run resuming the one before; then a plain re-run finishes it."""
    root = tmp_path / "out"
    job = fault_job("local", str(root))
    work = root / "_work"

    def check(point: str) -> None:
        done = {d: len(list((work / d).glob("*.done"))) for d in ("ingest", "caption")}
        state = {"ingest.input:2,ingest.commit:2": done["ingest"] == 1 and not (work / "dedup.done").exists(),
                 "dedup.decided": (work / "dedup.parquet").exists() and not (work / "dedup.done").exists(),
                 OUTSIDE: done["caption"] >= 1 and not (work / "write.done").exists(),
                 # a shard writer kills itself mid-shard (Ray retries it), the driver dies at the 2nd
                 # finished shard it sees (with shards in flight when the writers are slower than its poll)
                 "write.member,write.shard:2": any(root.glob("ar1024/*/*.tar")) and not (root / "index").exists(),
                 # the killed writer's temporary is gone once a write phase ends (the sweep after all writers)
                 "write.index": (root / "index").exists() and not (work / "write.done").exists()
                 and not list(root.glob("ar1024/*/.*")),
                 "report.manifest": (work / "write.done").exists() and not (root / "manifest.json").exists()}
        assert state[point], (point, sorted(p.relative_to(root).as_posix() for p in root.rglob("*")))
        for tar in root.glob("ar1024/*/*.tar"):   # what is visible is whole: its members' table was committed first
            assert (work / "shards" / f"{tar.relative_to(root).as_posix().replace('/', '_')}.parquet").exists()

    # a worker also kills itself once mid-unit in ingest and mid-shard in write (Ray retries it)
    kill_chain(job, ["ingest.input:2,ingest.commit:2", "dedup.decided", OUTSIDE, "write.member,write.shard:2", "write.index",
                     "report.manifest"], tmp_path / "fired", check)
    res = curate_run(job, driver_env())
    assert res.returncode == 0, res.stderr[-3000:]
    assert_same_as(fault_reference, published(root), json.loads((root / "manifest.json").read_text()))
    assert not list(root.rglob(".*.tmp")), "temporaries of killed commits left behind"
    assert sorted(p.name for p in (tmp_path / "fired").iterdir()) == [
        "dedup.decided", "ingest.commit", "ingest.input", "report.manifest", "write.index", "write.member", "write.shard"]


@pytest.mark.slow
@pytest.mark.timeout(500)
def test_s3_output_killed_in_write_and_publish_resumes_to_identical_objects(fault_job, fault_reference, s3_server, tmp_path):
    """Workers SIGKILL themselves once mid-unit (an ingest task, a captioner actor mid-batch, a
    shard writer mid-upload) and Ray retries them; the driver is killed mid-caption, mid-write
    and mid-publish. The prefix then holds exactly the local reference's files, and no
    multipart upload is left."""
    s3 = s3_server.client()
    s3.create_bucket(Bucket="faults")
    work = tmp_path / "work"
    job = fault_job("s3", "s3://faults/run", output={"work_dir": str(work), "s3": {"endpoint_url": s3_server.endpoint}})

    def objects() -> dict[str, bytes]:
        listed = s3.list_objects_v2(Bucket="faults", Prefix="run/").get("Contents", [])
        return {o["Key"].removeprefix("run/"): s3.get_object(Bucket="faults", Key=o["Key"])["Body"].read() for o in listed}

    def check(point: str) -> None:
        keys = set(objects())
        assert "manifest.json" not in keys and "_curate_config.json" in keys, (point, sorted(keys))
        if point.endswith("publish.put:3"):   # the shard upload killed in the run before was aborted once write ended
            assert any(k.startswith("index/") for k in keys) and not s3.list_multipart_uploads(Bucket="faults").get("Uploads")
        fired = sorted(p.name for p in (tmp_path / "fired").iterdir())
        assert fired == sorted(f.split(":")[0] for f in ",".join(points[:points.index(point) + 1]).split(",")), fired

    # the writer's self-kill runs with the driver's shard kill: a run of its own could find every shard done
    points = ["ingest.input:2,caption.batch,caption.commit:2", "write.member,write.shard:2", "publish.put:3"]
    kill_chain(job, points, tmp_path / "fired", check)
    res = curate_run(job, driver_env())
    assert res.returncode == 0, res.stderr[-3000:]
    got = objects()
    manifest = json.loads(got.pop("manifest.json"))
    assert json.loads(got.pop("_curate_config.json"))["config_hash"] == manifest["config_hash"]
    report = {k for k in got if k.startswith("report/") and k != "report/hallucinations.parquet"}
    assert report == {"report/index.html"}
    assert_same_as(fault_reference, {k: v for k, v in got.items() if k not in report}, manifest, same_config=False)
    assert not s3.list_multipart_uploads(Bucket="faults").get("Uploads")
