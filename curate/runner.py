"""Run a job: plan -> ingest -> dedup -> caption -> write -> report, resuming committed work."""

from __future__ import annotations

import json
import platform
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from rich.console import Console

from curate import __version__, failpoint
from curate.accounting import AccountingError, account
from curate.jobs import JobError, check_paths, config_hash
from curate.outputs import MARKER, LocalOutput, S3Output, output_for, work_dir
from curate.phasekeys import PHASES, captioner_keys, describe, first_changed, phase_keys
from curate.phases.caption import captioner_summary, run_caption
from curate.phases.dedup import run_dedup
from curate.phases.ingest import run_ingest
from curate.phases.write import run_write
from curate.preflight import preflight
from curate.progress import phase_progress
from curate.report import bucket_counts, write_report
from curate.runlog import RunFailed, log, log_failure, one_line, start_log
from curate.sources import plan_units, rejected_input_bytes
from curate.staging import store_for
from curate.storage import (
    RunDir,
    read_index,
    read_parquet_dir,
    write_json_atomic,
    write_parquet_atomic,
)
from schemas.job import Job
from schemas.record import INGESTED, REJECTS, UNITS


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
    """Run (or resume) `job`. Before any input is read: path checks and the preflight (one line
    per problem, JobError); a changed configuration re-runs only the phases it affects. Any
    other error is logged in full to `<run>/logs/` and raised as RunFailed (one line)."""
    console = console or Console(stderr=True)
    run = RunDir(work_dir(job))
    output = output_for(job)
    chash = config_hash(job) + (f"-limit{limit}" if limit is not None else "")
    keys = phase_keys(job, limit)
    stamp = run.work / "config.json"
    if fresh:
        run.clear()
        clear_remote(output)
    previous = json.loads(stamp.read_text()) if stamp.exists() else None
    if run.manifest.exists() and not previous:
        _same_config(json.loads(run.manifest.read_text())["config_hash"], chash, run)
    if run.manifest.exists() and previous and previous.get("config_hash") == chash:
        manifest = json.loads(run.manifest.read_text())
        if manifest.get("status") == "complete":
            output.claim(chash)
            publish(run, output)
            return RunResult(manifest, resumed=True, run_dir=run.root)
    problems = check_paths(job, job_path)
    problems += preflight(job, job_path) if not problems else []
    if problems:
        raise JobError("\n".join(problems))
    redo = _changed_phase(previous, job, keys, chash, run) if previous else None
    if previous:
        run.sweep()   # temporaries of commits killed mid-write
    # the output is ours (its marker names this configuration, or the one being changed) before
    # anything there is skipped, swept or deleted
    output.claim(chash, replacing=previous["config_hash"] if redo else None)
    log_path = start_log(run.root)
    log.info("job %s (%s), config %s, out %s", job.name, job_path, chash, output.url)
    try:
        if redo:
            invalidate(run, output, redo, previous, job)
            message = (f"{run.root}: {redo} settings changed ({describe(previous['job'], job.model_dump(mode='json'), redo)}): "
                       f"re-running {', '.join(PHASES[PHASES.index(redo):])}; earlier phases' work is kept")
            console.print(message, highlight=False, markup=False)
            log.info(message)
        return _run_phases(job, job_path, run, output, address, limit, chash, keys, previous, console)
    except (JobError, AccountingError) as exc:
        log_failure(exc)
        raise
    except Exception as exc:
        log_failure(exc)
        raise RunFailed(one_line(exc), log_path) from exc


def _changed_phase(previous: dict, job: Job, keys: dict[str, str], chash: str, run: RunDir) -> str | None:
    """The first phase whose settings changed since the run in `run` started (None: none did);
    refuses when it is ingest (then nothing could be kept)."""
    old = previous.get("phases")
    if old is None:   # a run from before per-phase keys: all or nothing
        _same_config(previous["config_hash"], chash, run)
        return None
    first = first_changed(old, keys)
    if first == "ingest":
        raise JobError(f"{run.root} holds a run whose ingest settings differ "
                       f"({describe(previous['job'], job.model_dump(mode='json'), 'ingest')}); every phase would be redone: "
                       "use --fresh to replace it (re-ingest, dedup, caption and write everything) or --out for a new folder")
    return first


def invalidate(run: RunDir, output, phase: str, previous: dict, job: Job) -> None:
    """Drop the committed work of `phase` and every phase after it. Raw captions are kept aside
    (`_work/caption.prev/`) with the captioners whose settings did not change, for reuse."""
    later = PHASES[PHASES.index(phase):]
    if isinstance(output, S3Output):
        output.delete([k for k in output.list_keys() if k == "manifest.json"])
    for path in (run.manifest, run.marker("published"), run.marker("write"), run.hashes, run.root / "README.md"):
        path.unlink(missing_ok=True)
    for folder in (run.index, run.report):
        shutil.rmtree(folder, ignore_errors=True)
    store_for(job, run.root).remove("shards")   # the shard writer's member offsets
    if isinstance(output, S3Output):
        output.delete([k for k in output.list_keys() if k.startswith(("ar", "index/", "report/", "rejects/"))])
    else:
        for shards in run.root.glob("ar[0-9]*"):
            shutil.rmtree(shards)
    if "caption" in later:
        prev = run.work / "caption.prev"
        if run.caption.exists():
            shutil.rmtree(prev, ignore_errors=True)
            run.caption.rename(prev)
        old, new = previous.get("captioners") or {}, captioner_keys(job)
        if prev.exists():
            write_json_atomic(prev / "reuse.json", sorted(name for name, key in new.items() if old.get(name) == key))
        shutil.rmtree(run.rejects / "caption", ignore_errors=True)
    if "dedup" in later:
        for path in (run.dedup, run.marker("dedup"), run.rejects / "dedup.parquet"):
            path.unlink(missing_ok=True)


def _run_phases(job: Job, job_path, run: RunDir, output, address, limit, chash: str, keys: dict[str, str],
                previous: dict | None, console: Console) -> RunResult:
    from curate.engine import init_ray

    resumed = previous is not None
    timings: dict[str, float] = {}
    started = datetime.now(UTC).isoformat(timespec="seconds")
    t0 = time.perf_counter()
    ray_where = init_ray(address or job.ray.address, job.ray.num_cpus, job.ray.no_progress_timeout_s, job.ray.dashboard)
    timings["ray_init"] = time.perf_counter() - t0
    if not resumed:
        write_parquet_atomic(run.plan, plan_units(job, run.work, limit))
    write_json_atomic(run.work / "config.json", {"config_hash": chash, "phases": keys, "captioners": captioner_keys(job),
                                                 "job": job.model_dump(mode="json")})
    plan = pq.read_table(run.plan, schema=UNITS)
    with phase_progress(console) as progress:
        for name, fn in (("ingest", lambda: run_ingest(job, run, plan, progress)),
                         ("dedup", lambda: _one_step(progress, "dedup", lambda: run_dedup(job, run))),
                         ("caption", lambda: run_caption(job, run, progress)),
                         ("write", lambda: run_write(job, run, progress))):
            t = time.perf_counter()
            log.info("%s: start", name)
            summary = fn()
            timings[name] = time.perf_counter() - t
            log.info("%s: done in %.1f s %s", name, timings[name], summary or "")
        manifest = _finish(job, job_path, run, output, plan, ray_where, started, resumed, chash, timings, progress)
    log.info("complete: %s", manifest["counts"])
    return RunResult(manifest, resumed=resumed, timings=timings, run_dir=run.root)


def _one_step(progress, name: str, fn):
    task = progress.add_task(name, total=1)
    out = fn()
    progress.advance(task)
    return out


def _finish(job: Job, job_path, run: RunDir, output, plan: pa.Table, ray_where: str, started: str, resumed: bool,
            chash: str, timings: dict[str, float], progress) -> dict:
    """Accounting, the report and the manifest (written last), then publishing."""
    task = progress.add_task("report", total=3)
    t = time.perf_counter()
    index = read_index(run)
    rejects = read_parquet_dir(run.rejects, REJECTS)
    ingested = read_parquet_dir(run.ingest, INGESTED, ["unit", "key", "received", "avoided", "decodes"])
    counts = account(plan, ingested, index, rejects)
    progress.advance(task)
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
    progress.advance(task)
    write_report(run, manifest, index, rejects, hallucinations, open_shard=output.open_read, read_range=output.read_range,
                 read_input=lambda row: rejected_input_bytes(row, job, run))
    progress.advance(task)
    timings["report"] = time.perf_counter() - t
    manifest["timings_s"] = {k: round(v, 2) for k, v in timings.items()}
    failpoint.hit("report.manifest")
    write_json_atomic(run.manifest, manifest)
    publish(run, output)
    if not job.output.keep_staged:   # the shards hold the images now; a later re-run fetches them again
        store_for(job, run.root).remove_run()
    return manifest


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
                failpoint.hit("publish.put")
    output.put_file("manifest.json", run.manifest)
    run.mark(run.marker("published"))


def clear_remote(output: LocalOutput | S3Output) -> None:
    """--fresh on an s3:// output: delete the previous run's objects (only below a prefix that
    holds a curate run's manifest, or nothing but shards of one)."""
    if isinstance(output, LocalOutput):
        return
    output.sweep()
    keys = output.list_keys()
    if keys and "manifest.json" not in keys and MARKER not in keys and not all(k.startswith(("ar", "index/", "report/", "rejects/")) for k in keys):
        raise JobError(f"{output.url} holds objects that are not a curate run's output; refusing to delete them")
    output.delete(keys)
