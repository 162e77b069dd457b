"""The Python API: what the CLI does, for notebooks, schedulers and tests.

    import curate
    job = curate.load("jobs/demo.yaml", out="/tmp/demo", dedup__max_distance=6)
    problems = curate.validate(job, check=True)      # [] when the job can run here
    result = curate.run(job)                          # or curate.run("jobs/demo.yaml", ...)
    curate.status(result.run_dir)["counts"]

Settings are given as `--set` strings (`sets=["dedup.max_distance=6"]`) or as keyword
arguments with `__` between the parts of the dotted path. Errors are the CLI's: a
`curate.JobError` for a job problem (its message names the file and the field), a
`curate.AccountingError` when the accounting does not add up.
"""

from __future__ import annotations

import json
from pathlib import Path

from curate.accounting import AccountingError
from curate.jobs import JobError, check_paths, load_job
from curate.runstate import run_status
from schemas.job import Job

__all__ = ["AccountingError", "JobError", "load", "run", "status", "validate"]


def _sets(sets: list[str] | tuple[str, ...], settings: dict) -> list[str]:
    # JSON is YAML: every value reads back as itself through the `--set` parser
    return [*sets, *(f"{name.replace('__', '.')}={json.dumps(value)}" for name, value in settings.items())]


def load(job: str | Path | Job, *, sets: list[str] | tuple[str, ...] = (), out: str | None = None, **settings) -> Job:
    """A validated job: a job file with overrides applied, or a Job as it is."""
    if isinstance(job, Job):
        if sets or settings or out:
            raise JobError("overrides apply to job files; change a Job object with job.model_copy(update=...)")
        return job
    return load_job(job, _sets(sets, settings), out=out)


def validate(job: str | Path | Job, *, sets: list[str] | tuple[str, ...] = (), check: bool = False, **settings) -> list[str]:
    """Problems that stop the job here, one line each ([] when none): missing local paths,
    and with `check=True` the preflight (models, tokenizer, endpoints, output, sources)."""
    spec = load(job, sets=sets, **settings)
    where = job if not isinstance(job, Job) else "<job>"
    problems = check_paths(spec, where)
    if check:
        from curate.preflight import preflight

        problems += preflight(spec, where)
    return problems


def run(job: str | Path | Job, *, sets: list[str] | tuple[str, ...] = (), out: str | None = None, address: str | None = None,
        limit: int | None = None, fresh: bool = False, **settings):
    """Run a job (resuming a previous run of it); returns a RunResult (manifest, run_dir, timings)."""
    from curate.runner import run_job

    spec = load(job, sets=sets, out=out, **settings)
    return run_job(spec, job if not isinstance(job, Job) else "<job>", address=address, limit=limit, fresh=fresh)


def status(run_dir: str | Path) -> dict:
    """Where a run stands (see curate.runstate.run_status)."""
    return run_status(run_dir)
