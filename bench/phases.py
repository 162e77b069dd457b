"""CPU seconds per phase of `curate run` on bench/crawl's URL list, for this checkout and another.

On a shared machine wall times say more about the neighbours than about curate; CPU seconds of
every process of the run (driver, Ray's GCS and raylet, every worker) do not. The run is put in a
cgroup of its own (cgroup v1 `cpuacct`, writable when running as root in most containers) sampled
every 0.25 s; the run log's phase boundaries split the total. The HTTP server is outside the cgroup.

    python -m bench phases                        # this checkout
    BASELINE=/path/to/other/checkout python -m bench phases   # that one first, then this one
    CRAWL_N=300 python -m bench phases            # a smaller list (as bench/crawl)

Prints, per version: wall and CPU seconds per step (start to `ingest: start` is Python start,
preflight and Ray start; after `complete` is the exit, Ray's shutdown included), images written.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from bench.common import cache_dir
from bench.crawl import (
    DISTINCT,
    DUPLICATES,
    ROOT,
    corpus,
    curate_cmd,
    curate_env,
    curate_job,
    run_timed,
    tiny_models,
)

CGROUPS = Path("/sys/fs/cgroup/cpuacct")
STEPS = [("start + preflight + ray_init", "ingest: start"), ("ingest", "ingest: done"), ("dedup", "caption: start"),
         ("caption", "caption: done"), ("write", "write: done"), ("report", "complete"), ("exit", None)]


class CpuClock:
    """Total CPU seconds of the processes in a new cgroup, sampled in a thread."""

    def __init__(self):
        self.group = CGROUPS / f"bench_phases_{os.getpid()}_{time.monotonic_ns()}"
        self.group.mkdir()
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.time(), int((self.group / "cpuacct.usage").read_text()) / 1e9))
            time.sleep(0.25)

    def wrap(self, cmd: list[str]) -> list[str]:
        """`cmd` started inside the cgroup (its children inherit it)."""
        return ["sh", "-c", f'echo $$ > {self.group}/cgroup.procs && exec "$@"', "sh", *cmd]

    def __enter__(self) -> CpuClock:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        time.sleep(0.5)   # the last processes leave
        self._stop.set()
        self._thread.join()
        for _ in range(20):
            try:
                self.group.rmdir()
                return
            except OSError:
                time.sleep(0.5)

    def at(self, when: float) -> float:
        return next((cpu for t, cpu in self.samples if t >= when), self.samples[-1][1])


def log_times(log: str) -> dict[str, float]:
    out = {}
    for stamp, what in re.findall(r"^(\S+ \S+) INFO (\w+: \w+|complete)", log, re.M):
        out.setdefault(what, datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").replace(tzinfo=UTC).timestamp())
    return out


def run_version(tree: Path, work: Path, url_list: Path) -> None:
    job = curate_job(work, "crawl", {"type": "url_list", "path": str(url_list)}, tiny_models())
    with CpuClock() as clock:
        start = time.time()
        seconds = run_timed(clock.wrap(curate_cmd(job)), work / "curate.log", {**curate_env(), "PYTHONPATH": str(tree)})
    out = work / "out"
    marks = log_times(next((out / "logs").glob("*.log")).read_text())
    written = json.loads((out / "manifest.json").read_text())["counts"]["written"]
    print(f"{tree!s:<40} {written:,} written in {seconds:.1f} s ({written / seconds:.1f}/s), "
          f"{clock.at(start + seconds):.1f} CPU s in all", flush=True)
    t0 = start
    for name, mark in STEPS:
        t1 = marks.get(mark, start + seconds) if mark else start + seconds
        print(f"    {name:<30}{t1 - t0:>8.1f} s wall {clock.at(t1) - clock.at(t0):>8.1f} s CPU")
        t0 = t1


def main() -> None:
    from tests.servers.http_server import serve

    if not os.access(CGROUPS, os.W_OK):
        raise SystemExit(f"bench/phases needs a writable {CGROUPS} (cgroup v1 cpuacct) to count CPU seconds")
    distinct = int(os.environ.get("CRAWL_N", DISTINCT))
    folder, rows = corpus(distinct, round(distinct * DUPLICATES / DISTINCT))
    trees = [Path(os.environ["BASELINE"])] if os.environ.get("BASELINE") else []
    runs = cache_dir("crawl", "runs", "phases-" + time.strftime("%Y%m%d-%H%M%S"))
    (folder / "port").unlink(missing_ok=True)
    with serve(folder) as web:
        url_list = runs / "urls.parquet"
        pq.write_table(pa.table({"URL": [f"{web.base}/img/{r['name']}" for r in rows],
                                 "TEXT": [f"picture {r['name']}" for r in rows]}), url_list)
        for i, tree in enumerate([*trees, ROOT]):
            work = runs / f"v{i}"
            work.mkdir()
            run_version(tree, work, url_list)
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
