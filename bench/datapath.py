"""The whole run, per phase: this tree against a baseline commit of curate (default: BASE_REF=main),
on the same URL list served from one local HTTP server with Range support, back to back.

Each tree runs the same job in its own process (embedded Ray, 2 CPUs): tiny captioner, one token,
aesthetics and hallucination off, so the data path (fetch, stage, read back, write) dominates.
Prints written images/s and seconds per phase for both, with the ratio.
`python -m bench datapath` (N images: BENCH_IMAGES, default 160).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

REPO = Path(__file__).resolve().parents[1]
RUN = """
import json, sys, time
from curate.jobs import load_job
from curate.runner import run_job
t = time.perf_counter()
m = run_job(load_job(sys.argv[1]), sys.argv[1]).manifest
print(json.dumps({"wall": time.perf_counter() - t, "written": m["counts"]["written"], "timings": m["timings_s"]}))
"""


def corpus(folder: Path, n: int) -> None:
    from curate.sample import render

    rng = np.random.default_rng(0)
    for i in range(n):
        side = int(rng.integers(1100, 2000)) if i % 4 else int(rng.integers(400, 900))   # a quarter too small
        img, _ = render(rng, side, int(side * rng.uniform(0.6, 1.4)))
        img.save(folder / f"i{i:05d}.jpg", quality=90)


def job(tmp: Path, name: str, urls: Path, vlm: Path) -> Path:
    spec = {
        "name": name, "out": str(tmp / name),
        "sources": [{"type": "url_list", "path": str(urls), "url_column": "url", "caption_column": None}],
        "units": {"size": 60},
        "fetch": {"allow_private_networks": True, "concurrency": 16, "per_host": 16},
        "ray": {"num_cpus": 2},
        "filters": {"aesthetics": {"enabled": False}},
        "hallucination": {"enabled": False},
        "caption": {"tokenizer": str(vlm.parent / "tok"), "captioners": [{"name": "dense", "model": str(vlm), "preset": "greedy",
                    "generation": {"max_new_tokens": 1, "min_new_tokens": 1}, "image_side": 64, "batch_size": 16}]},
        "output": {"shard_samples": 200},
    }
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def run_tree(tree: Path, job_path: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree), "RAY_AUTH_MODE": "disabled", "RAY_ADDRESS": "local", "HF_HUB_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false", "RAY_DATA_LOG_LEVEL": "ERROR", "RAY_BACKEND_LOG_LEVEL": "fatal"}
    out = subprocess.run([sys.executable, "-c", RUN, str(job_path)], cwd=tree, env=env, capture_output=True, text=True, check=False)
    if out.returncode:
        raise RuntimeError(f"{tree}: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    from curate.tinymodels import build_tiny_t5_tokenizer, build_tiny_vlm
    from tests.servers.http_server import serve

    n = int(os.environ.get("BENCH_IMAGES", "160"))
    ref = os.environ.get("BASE_REF", "main")
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        base = tmp / "base"
        base.mkdir()
        archive = subprocess.run(["git", "-C", str(REPO), "archive", ref], capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(base)], input=archive, check=True)
        commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", ref], capture_output=True, text=True, check=True).stdout.strip()
        vlm = build_tiny_vlm(tmp / "models" / "vlm")
        build_tiny_t5_tokenizer(tmp / "models" / "tok")
        (tmp / "web").mkdir()
        corpus(tmp / "web", n)
        with serve(tmp / "web") as web:
            urls = tmp / "urls.parquet"
            pq.write_table(pa.table({"url": [f"{web.base}/img/i{i:05d}.jpg" for i in range(n)]}), urls)
            results = {"this tree": run_tree(REPO, job(tmp, "ours", urls, vlm)),
                       f"base {commit}": run_tree(base, job(tmp, "base", urls, vlm))}
    ours, theirs = results.values()
    assert ours["written"] == theirs["written"], results
    print(f"{n} URLs ({ours['written']} written), 2 CPUs; seconds per phase (lower is better), ratio = base / this tree")
    print(f"{'phase':<12}{'this tree':>12}{'base ' + commit:>16}{'ratio':>9}")
    for phase in ("ray_init", "ingest", "dedup", "caption", "write", "report"):
        a, b = ours["timings"].get(phase, 0), theirs["timings"].get(phase, 0)
        print(f"{phase:<12}{a:>12.1f}{b:>16.1f}{(b / a if a else float('nan')):>8.1f}x")
    ra, rb = ours["written"] / ours["wall"], theirs["written"] / theirs["wall"]
    print(f"{'whole run':<12}{ra:>9.1f}/s{rb:>13.1f}/s{ra / rb:>8.1f}x  (written images per second)")


if __name__ == "__main__":
    main()
