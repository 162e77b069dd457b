"""Small timing helpers shared by the benchmarks."""

from __future__ import annotations

import time
from collections.abc import Callable


def rate(fn: Callable[[], object], items: int, min_seconds: float = 1.0, clock: Callable[[], float] = time.perf_counter) -> float:
    """Items per second of `fn` (which processes `items` items), repeated for at least `min_seconds`
    of `clock` (wall time; `time.process_time` for CPU seconds, steadier on a shared machine)."""
    fn()  # warm-up
    runs, start = 0, clock()
    while True:
        fn()
        runs += 1
        elapsed = clock() - start
        if elapsed >= min_seconds:
            return runs * items / elapsed


def table(rows: list[tuple[str, float, float]], unit: str) -> None:
    """rows: (what, ours, baseline) -> a printed table with the ratio."""
    print(f"{'measure':<44}{'curate':>14}{'baseline':>14}{'ratio':>9}")
    for what, ours, base in rows:
        print(f"{what:<44}{ours:>11.1f} {unit:<2}{base:>11.1f} {unit:<2}{ours / base:>8.1f}x")


def cache_dir(*parts: str):
    """Where benchmarks keep what is slow to make (generated corpora, tool venvs):
    $CURATE_BENCH_CACHE, else ~/.cache/curate-bench."""
    import os
    from pathlib import Path

    path = Path(os.environ.get("CURATE_BENCH_CACHE", Path.home() / ".cache" / "curate-bench")).joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
