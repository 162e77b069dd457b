"""Run a job: plan -> ingest -> dedup -> caption -> write -> report, resuming committed work."""

from __future__ import annotations

import json
import platform
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from curate import __version__
from curate.accounting import account
from curate.jobs import JobError, check_paths, config_hash
from curate.outputs import LocalOutput, S3Output, output_for, work_dir
from curate.phases.caption import captioner_summary, run_caption
from curate.phases.dedup import run_dedup
from curate.phases.ingest import run_ingest
from curate.phases.write import run_write
from curate.report import bucket_counts, write_report
from curate.sources import UNITS, plan_units
from curate.storage import (
    RunDir,
    read_index,
    read_parquet_dir,
    write_json_atomic,
    write_parquet_atomic,
)
from schemas.job import Job
from schemas.record import INGESTED, REJECTS


@dataclass
class RunResult:
    manifest: dict
    resumed: bool
    timings: dict[str, float] = field(default_factory=dict)
    run_dir: Path = Path(".")


def versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"curate": __version__, "python": platform.python_version()}
    for pkg in ("ray", "torch", "transformers", "pyarrow", "webdataset", "pillow"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def run_job(job: Job, job_path: str | Path, *, address: str | None = None, limit: int | None = None,
            fresh: bool = False, console: Console | None = None) -> RunResult:
    console = console or Console(stderr=True)
    run = RunDir(work_dir(job))
    output = output_for(job)
    chash = config_hash(job) + (f"-limit{limit}" if limit is not None else "")
    if fresh:
        run.clear()
        clear_remote(output)
    elif isinstance(output, S3Output) and output.exists("manifest.json"):
        with output.open_read("manifest.json") as fh:
            _same_config(json.loads(fh.read())["config_hash"], chash, run, where=output.url)
    stamp = run.work / "config.json"
    if run.manifest.exists():
        manifest = json.loads(run.manifest.read_text())
        _same_config(manifest["config_hash"], chash, run)
        if manifest.get("status") == "complete":
            publish(run, output)
            return RunResult(manifest, resumed=True, run_dir=run.root)
    problems = check_paths(job, job_path)
    if problems:
        raise JobError("\n".join(problems))
    resumed = stamp.exists()
    if resumed:
        _same_config(json.loads(stamp.read_text())["config_hash"], chash, run)
    from curate.engine import init_ray

    timings: dict[str, float] = {}
    started = datetime.now(UTC).isoformat(timespec="seconds")
    t0 = time.perf_counter()
    ray_where = init_ray(address or job.ray.address, job.ray.num_cpus, job.ray.no_progress_timeout_s)
    timings["ray_init"] = time.perf_counter() - t0
    if not resumed:
        write_parquet_atomic(run.plan, plan_units(job, run.work, limit))
        write_json_atomic(stamp, {"config_hash": chash, "job": job.model_dump(mode="json")})
    plan = pq.read_table(run.plan, schema=UNITS)
    with Progress(TextColumn("{task.description:>8}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=False) as progress:
        for name, fn in (("ingest", lambda: run_ingest(job, run, plan, progress)),
                         ("dedup", lambda: run_dedup(job, run)),
                         ("caption", lambda: run_caption(job, run, progress)),
                         ("write", lambda: run_write(job, run))):
            t = time.perf_counter()
            fn()
            timings[name] = time.perf_counter() - t
    t = time.perf_counter()
    index = read_index(run)
    rejects = read_parquet_dir(run.rejects, REJECTS)
    ingested = read_parquet_dir(run.ingest, INGESTED, ["unit", "key", "received", "avoided", "decodes"])
    counts = account(plan, ingested, index, rejects)
    manifest = {
        "job": job.name, "job_file": str(job_path), "config_hash": chash, "status": "complete",
        "versions": versions(), "ray": ray_where if ray_where == "local" else "cluster",
        "started_at": started, "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "resumed": resumed,
        "counts": {k: counts[k] for k in ("inputs", "written", "rejected", "failed")}
        | {"is_4k": int(pc.sum(index["is_4k"]).as_py() or 0)},
        "buckets": bucket_counts(index),
        "ingest": {"pixel_decodes": int(pc.sum(ingested["decodes"]).as_py() or 0),
                   "inputs_decoded": int(pc.sum(pc.greater(pc.fill_null(ingested["decodes"], 0), 0)).as_py() or 0)},
        "transfer": {"bytes_received": int(pc.sum(ingested["received"]).as_py() or 0),
                     "bytes_avoided": int(pc.sum(ingested["avoided"]).as_py() or 0)},
        "shards": len(set(index["shard"].to_pylist())),
        "outputs": {"out": output.url, "work": str(run.root), "index": "index/", "rejects": "rejects/", "report": "report/index.html",
                    "shards": sorted({s.split("/")[0] for s in index["shard"].to_pylist()})},
        "units": counts["units"],
    }
    evidence = run.report / "hallucinations.parquet"
    hallucinations = pq.read_table(evidence) if evidence.exists() else None
    manifest["captioners"] = captioner_summary(job, run)
    manifest["hallucination"] = hallucination_summary(index)
    write_report(run, manifest, index, rejects, hallucinations, open_shard=output.open_read)
    timings["report"] = time.perf_counter() - t
    manifest["timings_s"] = {k: round(v, 2) for k, v in timings.items()}
    write_json_atomic(run.manifest, manifest)
    publish(run, output)
    return RunResult(manifest, resumed=resumed, timings=timings, run_dir=run.root)


def _same_config(found: str, expected: str, run: RunDir, where: str | None = None) -> None:
    if found != expected:
        raise JobError(
            f"{where or run.root} holds a run of a different job configuration (config hash {found}, this job {expected}); "
            "use --fresh to replace it or --out for a new folder"
        )


def hallucination_summary(index: pa.Table) -> dict:
    """Mean score and how many written captions carry each flag."""
    scored = [h for h in index["hallucination"].to_pylist() if h]
    scores = [h["score"] for h in scored]
    flags = Counter(f for h in scored for f in h["flags"])
    return {"scored": len(scores), "mean_score": round(sum(scores) / len(scores), 4) if scores else None,
            "flags": dict(flags.most_common())}


PUBLISHED = ("index", "hashes.parquet", "README.md", "rejects", "report")


def publish(run: RunDir, output: LocalOutput | S3Output) -> None:
    """Upload the run's files to a remote output, the manifest last (its presence there says
    the output is complete). Idempotent; a no-op for a local output (written in place)."""
    if isinstance(output, LocalOutput) or run.is_done(run.marker("published")):
        return
    for name in PUBLISHED:
        path = run.root / name
        files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")) if path.is_dir() else [path]
        for f in files:
            if f.exists():
                output.put_file(f.relative_to(run.root).as_posix(), f)
    output.put_file("manifest.json", run.manifest)
    run.mark(run.marker("published"))


def clear_remote(output: LocalOutput | S3Output) -> None:
    """--fresh on an s3:// output: delete the previous run's objects (only below a prefix that
    holds a curate run's manifest, or nothing but shards of one)."""
    if isinstance(output, LocalOutput):
        return
    output.sweep()
    keys = output.list_keys()
    if keys and "manifest.json" not in keys and not all(k.startswith(("ar", "index/", "report/", "rejects/")) for k in keys):
        raise JobError(f"{output.url} holds objects that are not a curate run's output; refusing to delete them")
    output.delete(keys)
