"""Output targets: s3:// output byte-identical to a local run, lower-resolution variants, and
writers killed mid-shard (locally and on S3) leaving nothing partial visible."""

from __future__ import annotations

import hashlib
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import webdataset as wds
from PIL import Image, ImageOps

from curate.outputs import LocalOutput, S3Output
from curate.storage import RunDir, read_index
from tests.conftest import DEMO_JOB, demo_overrides


def s3_overrides(server, work: Path, out: str) -> list[str]:
    return [f"out={out}", f"output.work_dir={work}", f"output.s3.endpoint_url={server.endpoint}", "output.part_size_mb=5"]


def test_s3_output_is_byte_identical_to_the_local_run(demo_run, s3_server, corpus, tiny_vlm, tmp_path):
    from curate.export import export_pixart
    from curate.jobs import load_job
    from curate.runner import run_job

    s3 = s3_server.client()
    s3.create_bucket(Bucket="train")
    job = load_job(DEMO_JOB, demo_overrides(corpus, tiny_vlm, tmp_path) + s3_overrides(s3_server, tmp_path / "work", "s3://train/runs/demo"))
    result = run_job(job, DEMO_JOB)
    assert result.manifest["counts"] == demo_run.manifest["counts"]

    local_root = demo_run.run_dir
    local = {p.relative_to(local_root).as_posix(): p.read_bytes() for p in local_root.glob("ar1024/*/*.tar")}
    listed = s3.list_objects_v2(Bucket="train", Prefix="runs/demo/")["Contents"]
    keys = {o["Key"].removeprefix("runs/demo/"): o for o in listed}
    remote = {k: s3.get_object(Bucket="train", Key=f"runs/demo/{k}")["Body"].read() for k in keys if k.endswith(".tar")}
    assert remote.keys() == local.keys() and remote == local
    for k in remote:   # multipart ETags end in -<parts>: 5 MiB parts here
        assert keys[k]["ETag"].strip('"').endswith(f"-{-(-keys[k]['Size'] // (5 << 20))}"), (k, keys[k]["ETag"])
    buckets = set(demo_run.manifest["buckets"])
    assert {f"index/{b}/part-0.parquet" for b in buckets} | {"manifest.json", "hashes.parquet", "report/index.html"} <= keys.keys()
    assert not s3.list_multipart_uploads(Bucket="train").get("Uploads")
    assert not list((tmp_path / "work").rglob("*.tar")), "shards were staged in the work folder"

    # a finished s3 run re-run rewrites nothing; export reads the shards back from S3
    assert run_job(job, DEMO_JOB).resumed
    n = export_pixart(tmp_path / "work", tmp_path / "pixart")
    # one ranged GET per member, by the index's offsets, gives the bytes the local shard holds
    out = S3Output("s3://train/runs/demo", job.output.s3, 5 << 20)
    for row in read_index(RunDir(tmp_path / "work")).to_pylist()[:5]:
        member = out.read_range(row["shard"], row["member_offset"], row["member_bytes"])
        with open(local_root / row["shard"], "rb") as fh:
            fh.seek(row["member_offset"])
            assert member == fh.read(row["member_bytes"]) and member[:3] == b"\xff\xd8\xff"
    assert n == demo_run.manifest["counts"]["written"]


def test_max_side_variant_is_downscaled_upright_and_reencoded(demo_run, corpus, tiny_vlm, ray_cluster, tmp_path):
    from curate.jobs import load_job
    from curate.phases.write import run_write

    root = tmp_path / "small"
    shutil.copytree(demo_run.run_dir, root, ignore=shutil.ignore_patterns("ar1024", "index"))
    (root / "_work" / "write.done").unlink()
    job = load_job(DEMO_JOB, [*demo_overrides(corpus, tiny_vlm, root), "output.max_side=512", "output.format=webp", "output.quality=80"])
    run_write(job, RunDir(root))
    index = {r["key"]: r for r in read_index(RunDir(root)).to_pylist()}
    original = {r["key"]: r for r in read_index(RunDir(demo_run.run_dir)).to_pylist()}
    assert index.keys() == original.keys()
    seen = 0
    for tar in sorted(root.glob("ar1024/*/*.tar")):
        for sample in wds.WebDataset(str(tar), shardshuffle=False, empty_check=False).decode("pil"):
            row = index[sample["__key__"]]
            image = sample["webp"]
            assert row["member"] == f"{row['key']}.webp" and image.size == (row["member_width"], row["member_height"])
            assert max(image.size) == 512 and row["bucket"] == original[row["key"]]["bucket"]
            assert abs(image.height / image.width - row["ratio"]) < 0.01
            # upright: the same picture as the EXIF-corrected original, scaled down
            source = ImageOps.exif_transpose(Image.open(row["url"].removeprefix("file://"))).convert("RGB").resize(image.size)
            diff = np.abs(np.asarray(source, dtype=np.float32) - np.asarray(image.convert("RGB"), dtype=np.float32)).mean()
            assert diff < 12, f"{row['key']}: stored image differs from the upright original ({diff:.1f})"
            seen += 1
    assert seen == len(index)


KILLED_WRITER = """
import sys
import time
from pathlib import Path
import pyarrow.parquet as pq
import curate.staging
from curate.phases.write import write_shard
from schemas.job import Job
def stalling(store, locator):  # a staged copy that never delivers the second sample's bytes
    if locator.endswith("stalled.png"):
        time.sleep(3600)
    return Path(locator).read_bytes()
curate.staging.StagingStore.read = stalling
job = Job.model_validate_json(open(sys.argv[3]).read())
write_shard(pq.read_table(sys.argv[1]), job, curate.staging.store_for(job, sys.argv[2]))
"""


def shard_plan(big: Path, blocking: Path, shard: str) -> pa.Table:
    """A two-sample shard: a 6 MiB image, then one whose bytes never arrive (its read stalls)."""
    from schemas.record import WRITE_PLAN

    data = big.read_bytes()
    rows = [{"key": key, "source": "folder:0", "url": path.as_uri(), "width": 2048, "height": 2048, "format": "png",
             "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(), "bucket": "1.0", "caption": "x",
             "shard": shard, "member": f"{key}.png", "member_width": 2048, "member_height": 2048, "blob": str(path)}
            for key, path in (("a-big", big), ("b-stalled", blocking))]
    return pa.Table.from_pylist(rows, schema=WRITE_PLAN)


@pytest.mark.parametrize("where", ["local", "s3"])
def test_writer_killed_mid_shard_leaves_no_partial_shard(where, s3_server, corpus, tiny_vlm, tmp_path):
    from curate.jobs import load_job
    from curate.outputs import output_for

    big, stalled = tmp_path / "big.png", tmp_path / "stalled.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (2048, 2048, 3), dtype=np.uint8)).save(big, compress_level=0)
    stalled.write_bytes(b"")   # folder sources refuse FIFOs: the stall is injected in KILLED_WRITER
    overrides = demo_overrides(tmp_path, tiny_vlm, tmp_path / "out")
    if where == "s3":
        s3_server.client().create_bucket(Bucket="killed")
        overrides += s3_overrides(s3_server, tmp_path / "work", "s3://killed/run")
    job = load_job(DEMO_JOB, overrides)
    output = output_for(job)
    shard = "ar1024/1.0/000000.tar"
    pq.write_table(shard_plan(big, stalled, shard), tmp_path / "plan.parquet")
    (tmp_path / "job.json").write_text(job.model_dump_json())
    proc = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(tmp_path / "plan.parquet"), str(tmp_path), str(tmp_path / "job.json")])
    try:
        deadline = time.time() + 60
        while not _first_member_out(output, shard):
            assert proc.poll() is None and time.time() < deadline, "the writer never got past its first sample"
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert not output.exists(shard)
    if isinstance(output, S3Output):
        assert "ar1024/1.0/000000.tar" not in output.list_keys()
    else:
        assert not list((tmp_path / "out").rglob("*.tar")), "a partial shard is visible"
    assert output.sweep() == 1   # the next attempt clears what the killed writer left behind
    assert output.sweep() == 0


def _first_member_out(output: LocalOutput | S3Output, shard: str) -> bool:
    """Whether the writer has pushed the 6 MiB first sample out (a temp file that large, or an
    uploaded part) and is now stalled inside the shard."""
    if isinstance(output, LocalOutput):
        return any(p.stat().st_size >= 6 << 20 for p in output.root.rglob(".*.tmp"))
    for upload in output.pending_uploads():
        parts = output.client.list_parts(Bucket=output.bucket, Key=upload["Key"], UploadId=upload["UploadId"])
        if parts.get("Parts"):
            return True
    return False


def test_s3_prefix_of_another_job_is_refused_and_fresh_clears_only_a_curate_run(s3_server, corpus, tiny_vlm, tmp_path):
    from curate.jobs import JobError, load_job
    from curate.runner import clear_remote, run_job

    s3 = s3_server.client()
    s3.create_bucket(Bucket="guard")
    s3.put_object(Bucket="guard", Key="run/manifest.json", Body=b'{"config_hash": "another-job"}')
    s3.put_object(Bucket="guard", Key="run/ar1024/1.0/000000.tar", Body=b"not ours")
    job = load_job(DEMO_JOB, demo_overrides(corpus, tiny_vlm, tmp_path) + s3_overrides(s3_server, tmp_path / "work", "s3://guard/run"))
    with pytest.raises(JobError, match="s3://guard/run holds a run of a different job configuration"):
        run_job(job, DEMO_JOB)
    s3.put_object(Bucket="guard", Key="other/notes.txt", Body=b"someone else's")
    foreign = load_job(DEMO_JOB, demo_overrides(corpus, tiny_vlm, tmp_path) + s3_overrides(s3_server, tmp_path / "w2", "s3://guard/other"))
    from curate.outputs import output_for

    with pytest.raises(JobError, match="not a curate run's output"):
        clear_remote(output_for(foreign))
    clear_remote(output_for(job))   # --fresh: the earlier run's objects go, the neighbour's stay
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="guard").get("Contents", [])]
    assert keys == ["other/notes.txt"]


def test_the_s3_test_server_has_its_volumes_whatever_the_free_disk(s3_server):
    """Each bucket takes a volume of its own; left to the free disk, CI's server ran out of them and
    answered every write to its last buckets with InternalError."""
    import json
    import urllib.request

    from tests.servers.s3_server import VOLUMES

    with urllib.request.urlopen(f"{s3_server.master}/dir/status", timeout=10) as reply:
        assert json.load(reply)["Topology"]["Max"] == VOLUMES
