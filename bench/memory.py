"""Peak memory of a whole run as the input grows: 500 vs 2,000 distinct 3840x2160 JPEGs from a
folder (smooth pictures, ~0.4 MB each, so that 2,000 are quick to make), tiny captioner (one token at 64 px), aesthetics and hallucination off.

The run is a `curate run` subprocess; a sampler reads the RSS of it (the driver) and of every
process below it (the embedded Ray cluster: GCS, raylet, workers) every 0.25 s with psutil.
Printed per size: peak driver RSS, peak of the largest single worker, peak of the sum over all
processes (shared pages counted in each), wall seconds. Target: 2,000 within 1.2x of 500.

    python -m bench memory               # 500 vs 2000
    MEMORY_SIZES=100,400 python -m bench memory
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import threading
import time
from pathlib import Path

try:
    import psutil
except ImportError:
    importlib.import_module("ray")   # Ray ships psutil (ray/thirdparty_files) and puts it on sys.path
    import psutil

from bench.common import cache_dir
from bench.crawl import curate_cmd, curate_env, curate_job, folder_4k, tiny_models


def subset(folder: Path, n: int) -> Path:
    """A folder holding the first n images of `folder` (hard links: regular files, no copy)."""
    out = cache_dir("memory", f"{folder.name}_first_{n}")
    for p in sorted(folder.glob("*.jpg"))[:n]:
        if not (out / p.name).exists():
            os.link(p, out / p.name)
    return out


class Sampler(threading.Thread):
    """Peak RSS of a process and its descendants, sampled until stopped."""

    def __init__(self, pid: int, every: float = 0.25):
        super().__init__(daemon=True)
        self.root, self.every = psutil.Process(pid), every
        self.driver = self.worker = self.total = 0
        self.worst = ""
        self.at_peak: list[tuple[int, str]] = []   # (RSS, process) of every process when the sum peaked
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            try:
                procs = [self.root, *self.root.children(recursive=True)]
            except psutil.Error:
                return
            rss = {}
            for p in procs:
                try:
                    rss[p] = p.memory_info().rss
                except psutil.Error:
                    pass
            self.driver = max(self.driver, rss.get(self.root, 0))
            others = {p: r for p, r in rss.items() if p != self.root}
            if others:
                p, r = max(others.items(), key=lambda kv: kv[1])
                if r > self.worker:
                    self.worker = r
                    try:
                        self.worst = " ".join(p.cmdline())[:80]
                    except psutil.Error:
                        pass
            if sum(rss.values()) > self.total:
                self.total = sum(rss.values())
                self.at_peak = sorted(((r, _name(p)) for p, r in rss.items()), reverse=True)
            self.done.wait(self.every)


def _name(p) -> str:
    try:
        cmd = p.cmdline()
    except psutil.Error:
        return "?"
    return next((c for c in cmd if c.startswith("ray::")), " ".join(cmd)[:40])


def measure(folder: Path, work: Path, models: Path) -> dict:
    work.mkdir(parents=True)
    job = curate_job(work, "memory", {"type": "folder", "path": str(folder), "alt_text": "none"}, models)
    start = time.perf_counter()
    with open(work / "curate.log", "w") as log:
        proc = subprocess.Popen(curate_cmd(job), stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **curate_env()},
                                cwd=Path(__file__).resolve().parents[1])
        sampler = Sampler(proc.pid)
        sampler.start()
        proc.wait()
        sampler.done.set()
        sampler.join()
    if proc.returncode:
        raise SystemExit(f"curate failed ({proc.returncode}); see {work / 'curate.log'}")
    manifest = json.loads((work / "out" / "manifest.json").read_text())
    return {"written": manifest["counts"]["written"], "seconds": time.perf_counter() - start, "driver": sampler.driver,
            "worker": sampler.worker, "worst": sampler.worst, "total": sampler.total, "at_peak": sampler.at_peak,
            "phases": manifest["timings_s"]}


def main() -> None:
    small, large = (int(x) for x in os.environ.get("MEMORY_SIZES", "500,2000").split(","))
    folder, models = folder_4k(large, seed=2, grain=False), tiny_models()
    work = cache_dir("memory", "runs", time.strftime("%Y%m%d-%H%M%S"))
    print(f"work folder: {work}", flush=True)
    results = {n: measure(subset(folder, n) if n < large else folder, work / str(n), models) for n in (small, large)}
    a, b = results[small], results[large]
    print(f"{'':<30}{small:>12,}{large:>12,}{'ratio':>9}")
    print(f"{'images written':<30}{a['written']:>12,}{b['written']:>12,}")
    print(f"{'seconds, whole run':<30}{a['seconds']:>12.1f}{b['seconds']:>12.1f}{b['seconds'] / a['seconds']:>8.2f}x")
    for what, key in (("peak RSS driver (MB)", "driver"), ("peak RSS largest worker (MB)", "worker"),
                      ("peak RSS sum of processes (MB)", "total")):
        print(f"{what:<30}{a[key] / 1e6:>12.0f}{b[key] / 1e6:>12.0f}{b[key] / a[key]:>8.2f}x")
    for n, r in results.items():
        print(f"{n}: largest worker: {r['worst']}\n{n}: seconds per phase: " + ", ".join(f"{k} {v}" for k, v in r["phases"].items()))
        print(f"{n}: at the peak of the sum, {len(r['at_peak'])} processes: "
              + ", ".join(f"{name} {rss / 1e6:.0f}" for rss, name in r["at_peak"][:8]))
    print("target: peak RSS at 2,000 within 1.2x of 500", flush=True)


if __name__ == "__main__":
    main()
