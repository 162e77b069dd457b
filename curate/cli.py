"""The `curate` command line (typer)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from curate.engine import quiet_ray_env

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Turn raw image sources into re-captioned, deduplicated, bucketed webdataset shards.")
out = Console()
err = Console(stderr=True)

SetOpt = Annotated[list[str] | None, typer.Option("--set", help="Override a job field: dotted.path=value (repeatable).")]


def _fail(message: str, code: int = 2):
    err.print(f"[bold red]error:[/] {message}", highlight=False, markup=True, soft_wrap=True)
    raise typer.Exit(code)


def _load(job: Path, sets: list[str] | None, out_dir: str | None = None):
    from curate.jobs import JobError, load_job

    try:
        return load_job(job, sets or [], out=out_dir)
    except JobError as exc:
        _fail(str(exc))


@app.command()
def run(
    job: Annotated[Path, typer.Argument(help="Job YAML file.")],
    address: Annotated[str | None, typer.Option(help="Ray address (default: job's ray.address, RAY_ADDRESS, or a local cluster).")] = None,
    out_dir: Annotated[str | None, typer.Option("--out", help="Output folder (overrides the job's `out`).")] = None,
    sets: SetOpt = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Only the first N inputs (for trials).")] = None,
    fresh: Annotated[bool, typer.Option(help="Delete this job's previous output first instead of resuming.")] = False,
):
    """Run a job; re-running resumes where a previous run stopped."""
    from curate.accounting import AccountingError
    from curate.jobs import JobError
    from curate.runlog import RunFailed
    from curate.runner import run_job

    quiet_ray_env()
    spec = _load(job, sets, out_dir)
    try:
        result = run_job(spec, job, address=address, limit=limit, fresh=fresh, console=err)
    except JobError as exc:
        _fail(str(exc))
    except AccountingError as exc:
        _fail(str(exc), code=3)
    except RunFailed as exc:   # the cause in one line; the traceback is in the run's log file
        _fail(str(exc), code=1)
    print_summary(result.manifest, result.resumed, result.run_dir)


def print_summary(manifest: dict, resumed: bool, root: Path) -> None:
    root = Path(root).resolve()
    c = manifest["counts"]
    if resumed and manifest.get("status") == "complete":
        out.print(f"[green]resumed:[/] {root} already holds this job's complete output; nothing rewritten.")
    t = Table(title=f"curate run: {manifest['job']}", show_header=True)
    t.add_column("what")
    t.add_column("count", justify="right")
    t.add_row("inputs", str(c["inputs"]))
    t.add_row("[green]written[/]", str(c["written"]))
    t.add_row("  of which 4K", str(c["is_4k"]))
    for outcome in ("rejected", "failed"):
        for reason, n in c[outcome].items():
            t.add_row(f"[yellow]{outcome}[/]: {reason}", str(n))
    t.add_row("shards", str(manifest["shards"]))
    out.print(t)
    out.print("buckets (h/w: n): " + ", ".join(f"{b}: {n}" for b, n in manifest["buckets"].items()))
    if manifest.get("ingest"):
        i = manifest["ingest"]
        out.print(f"ingest: {i['pixel_decodes']} pixel decodes for {i['inputs_decoded']} decoded inputs; "
                  f"bytes received {manifest['transfer']['bytes_received']:,}, avoided {manifest['transfer']['bytes_avoided']:,}")
    h = manifest.get("hallucination") or {}
    if h.get("scored"):
        flags = ", ".join(f"{k} {v}" for k, v in h["flags"].items()) or "none"
        out.print(f"hallucination: {h['scored']} captions scored, mean score {h['mean_score']}; flags: {flags}")
    if manifest.get("timings_s"):
        out.print("time per phase (s): " + ", ".join(f"{k} {v}" for k, v in manifest["timings_s"].items()))
    out_url = manifest["outputs"].get("out", "")
    where = out_url if out_url.startswith("s3://") else str(root)   # a local run is where it is now (copied or not)
    out.print(f"shards: {where}/{', '.join(manifest['outputs']['shards'])}/  index: {where}/index/  "
              f"rejects: {where}/rejects/  report: {root}/report/index.html")


@app.command()
def validate(
    job: Annotated[Path, typer.Argument(help="Job YAML file.")],
    sets: SetOpt = None,
    strict: Annotated[bool, typer.Option(help="Also fail when local paths the job names are missing.")] = False,
    check: Annotated[bool, typer.Option(help="Run the preflight too (models, tokenizer, endpoints, output, sources "
                                             "probed from here) and fail on any problem, as `curate run` does.")] = False,
):
    """Check a job file; missing local paths are warnings unless --strict or --check (`run` always checks them)."""
    from curate.jobs import check_paths
    from curate.preflight import preflight

    spec = _load(job, sets)
    problems = check_paths(spec, job)
    if check:
        strict = True
        problems += preflight(spec, job) if not problems else []
    for p in problems:
        err.print(f"[bold red]error:[/] {p}" if strict else f"[yellow]warning:[/] {p}", soft_wrap=True, highlight=False)
    if strict and problems:
        raise typer.Exit(2)
    out.print(f"[green]ok:[/] {job} is a valid job ({len(spec.sources)} source(s), captioners: {', '.join(c.name for c in spec.caption.captioners)})")


@app.command()
def schema():
    """Print the job file's JSON Schema."""
    from schemas.job import Job

    sys.stdout.write(json.dumps(Job.model_json_schema(), indent=2) + "\n")


@app.command()
def sample(
    folder: Annotated[Path, typer.Argument(help="Where to write the corpus (replaced if it exists).")],
    n: Annotated[int, typer.Option("--n", min=0, help="Ordinary images added to the fixed catalogue of cases.")] = 12,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same bytes.")] = 0,
):
    """Generate a deterministic synthetic corpus (sizes to 4K, duplicates, broken files, alt texts)."""
    from curate.sample import make_corpus

    entries = make_corpus(folder, n=n, seed=seed)
    out.print(f"wrote {len(entries)} files to {folder} (ground truth in {folder}/_corpus.json)")


@app.command("tiny-models")
def tiny_models(folder: Annotated[Path, typer.Argument(help="Where to save the models.")], seed: int = 0):
    """Build tiny random-weight models for trials and tests (their captions are noise)."""
    from curate.tinymodels import (
        build_tiny_aesthetic_head,
        build_tiny_clip,
        build_tiny_owlv2,
        build_tiny_safety_heads,
        build_tiny_t5_tokenizer,
        build_tiny_vlm,
    )

    path = build_tiny_vlm(folder / "tiny-vlm", seed=seed)
    config, ckpt = build_tiny_clip(folder / "tiny-clip", seed=seed)
    head = build_tiny_aesthetic_head(folder / "tiny-aesthetic-head.pth", seed=seed)
    nsfw, watermark = build_tiny_safety_heads(folder, seed=seed)
    owl = build_tiny_owlv2(folder / "tiny-owlv2", seed=seed)
    t5 = build_tiny_t5_tokenizer(folder / "tiny-t5-tokenizer")
    out.print(f"tiny VLM: {path}\ntiny CLIP: {config} + {ckpt}\ntiny aesthetic head: {head}\ntiny NSFW / watermark heads: {nsfw}, {watermark}\ntiny OWLv2 detector: {owl}\n"
              f"tiny T5 tokenizer (caption budget): {t5}")


@app.command()
def status(
    run_dir: Annotated[Path, typer.Argument(help="A run's output folder (or its work_dir for an s3:// run).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the status as JSON (absolute paths).")] = False,
):
    """Where a run stands: complete (with counts), or units committed per phase."""
    from curate.runstate import NoRun, run_status

    try:
        state = run_status(run_dir)
    except NoRun as exc:
        _fail(str(exc), code=1)
    if as_json:
        sys.stdout.write(json.dumps(state, indent=2) + "\n")
        return
    if state["state"] != "in_progress":
        from curate.storage import RunDir

        print_summary(json.loads(RunDir(state["run"]).manifest.read_text()), False, Path(state["run"]))
        return
    t = Table(title=f"{state['run']}: in progress")
    t.add_column("phase")
    t.add_column("done", justify="right")
    for phase, p in state["phases"].items():
        t.add_row(phase, f"{p['done']}/{p['total']}" + (" units" if p["total"] > 1 or phase in ("ingest", "caption") else ""))
    out.print(t)
    if state["logs"]:
        out.print(f"log: {state['logs'][-1]}")


@app.command()
def report(
    run: Annotated[Path, typer.Argument(help="A finished run's output folder.")],
    open_: Annotated[bool, typer.Option("--open", help="Open the page in a web browser.")] = False,
):
    """Rebuild a finished run's HTML report (report/index.html) from its files and print its path."""
    from curate.report import ReportError, rebuild_report

    try:
        path = rebuild_report(run)
    except ReportError as exc:
        _fail(str(exc))
    out.print(str(path), highlight=False, markup=False, soft_wrap=True)
    if open_:
        import webbrowser

        webbrowser.open(path.resolve().as_uri())


@app.command()
def inspect(
    path: Annotated[Path, typer.Argument(help="A shard (.tar), an index (.parquet) or a run folder.")],
    n: Annotated[int, typer.Option("--n", min=1, help="Samples to show.")] = 10,
):
    """Show samples with their caption, bucket, size and scores."""
    from curate.inspect import load_samples

    try:
        rows = load_samples(path, n)
    except (FileNotFoundError, ValueError) as exc:
        _fail(str(exc), code=1)
    t = Table(title=str(path))
    for col in ("key", "size", "bucket", "4K", "aesthetic", "halluc.", "flags", "caption"):
        t.add_column(col, overflow="fold")
    for r in rows:
        h = r.get("hallucination") or {}
        t.add_row(r["key"], f"{r['width']}x{r['height']}", r["bucket"], "yes" if r["is_4k"] else "",
                  "" if r.get("aesthetic") is None else f"{r['aesthetic']:.2f}",
                  "" if h.get("score") is None else f"{h['score']:.2f}", ", ".join(h.get("flags") or []), (r["caption"] or "")[:200])
    out.print(t)


export_app = typer.Typer(no_args_is_help=True, help="Write a run in another training stack's layout.")
app.add_typer(export_app, name="export")


@export_app.command("pixart")
def export_pixart_cmd(
    run_dir: Annotated[Path, typer.Argument(help="A finished run's output folder.")],
    folder: Annotated[Path, typer.Argument(help="Where to write InternImgs/ and InternData/data_info.json.")],
    dense: Annotated[str | None, typer.Option(help="Captioner for `sharegpt4v` (default: the training caption).")] = None,
    prompt: Annotated[str, typer.Option(help="Captioner (or alt) for `prompt`, the original caption.")] = "alt",
    prompt_fallback: Annotated[str | None, typer.Option(
        help="Captioner whose text is the `prompt` of samples without one (default: the training caption), "
             "so PixArt never trains on an empty prompt.")] = None,
    only_4k: Annotated[bool, typer.Option("--only-4k", help="Only the samples tagged 4K.")] = False,
    bucket: Annotated[list[str] | None, typer.Option(help="Only these aspect-ratio buckets (h/w key, repeatable).")] = None,
    min_aesthetic: Annotated[float | None, typer.Option(help="Only samples with at least this aesthetic score.")] = None,
):
    """PixArt-sigma's data layout (InternImgs + data_info.json) from a run's shards."""
    from curate.export import export_pixart
    from curate.progress import phase_progress

    try:
        with phase_progress(err) as bars:
            task = bars.add_task("export", total=None)
            n = export_pixart(run_dir, folder, dense=dense, prompt=prompt, prompt_fallback=prompt_fallback,
                              only_4k=only_4k, buckets=bucket, min_aesthetic=min_aesthetic,
                              progress=lambda done, total: bars.update(task, completed=done, total=total))
    except (FileNotFoundError, RuntimeError) as exc:
        _fail(str(exc), code=1)
    out.print(f"exported {n} samples to {folder}/InternImgs and {folder}/InternData/data_info.json")


@app.command()
def buckets(table: Annotated[int, typer.Option("--table", help="PixArt table: 256, 512, 1024 or 2048.")] = 1024):
    """Print a PixArt aspect-ratio bucket table (key = height/width)."""
    from schemas.buckets import TABLES

    if table not in TABLES:
        _fail(f"--table: expected one of {sorted(TABLES)}, got {table}")
    t = Table(title=f"ASPECT_RATIO_{table} (key = h/w)")
    for col in ("key", "height", "width"):
        t.add_column(col, justify="right")
    for k, (h, w) in sorted(TABLES[table].items(), key=lambda kv: float(kv[0])):
        t.add_row(k, str(h), str(w))
    out.print(t)


if __name__ == "__main__":
    app()
