"""Ray plumbing shared by the phases: cluster start, Data context, and per-unit commits.

A phase turns its pending work units into a Ray Data dataset with one block per unit,
streams the results back, and commits each unit on the driver as soon as all of its rows
have arrived. A crash loses only uncommitted units; a re-run redoes just those.
"""

from __future__ import annotations

import itertools
import logging
import os
import warnings
from collections import defaultdict
from collections.abc import Callable, Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

QUIET_ENV = {"RAY_DATA_LOG_LEVEL": "ERROR", "RAY_BACKEND_LOG_LEVEL": "fatal", "RAY_COLOR_PREFIX": "0"}


def quiet_ray_env() -> None:
    """Must run before `import ray` reaches the workers' environment."""
    for k, v in QUIET_ENV.items():
        os.environ.setdefault(k, v)


def init_ray(address: str | None, num_cpus: int | None, no_progress_timeout_s: float, dashboard: bool = False) -> str:
    """Connect to `address` (or RAY_ADDRESS), else start an embedded local cluster (with Ray's
    dashboard when `dashboard`)."""
    quiet_ray_env()
    import ray
    import ray.data

    address = address or os.environ.get("RAY_ADDRESS") or None
    if not ray.is_initialized():
        kwargs = {"include_dashboard": dashboard, "log_to_driver": False, "logging_level": logging.ERROR}
        if address:
            ray.init(address=address, **kwargs)
        else:
            os.environ.setdefault("RAY_AUTH_MODE", "disabled")
            ray.init(num_cpus=num_cpus, **kwargs)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.execution_no_progress_timeout_s = no_progress_timeout_s
    return address or "local"


def cluster_cpus() -> float:
    import ray

    return float(ray.cluster_resources().get("CPU", 1))


def cluster_gpus() -> float:
    import ray

    return float(ray.cluster_resources().get("GPU", 0))


def actor_resources(name: str, num_cpus: float, num_gpus: float, pools: int) -> tuple[float, float]:
    """CPUs and GPUs per actor, adjusted so the pipeline cannot deadlock on this cluster.

    Fixed pools that hold every CPU starve the read tasks (Ray Data then hangs), and an actor
    asking for a GPU on a cluster without one would wait forever: fall back to CPU instead.
    """
    if num_gpus > 0 and cluster_gpus() == 0:
        warnings.warn(f"{name}: num_gpus={num_gpus} but the cluster has no GPU; running on CPU", stacklevel=2)
        num_gpus = 0
    spare = cluster_cpus() - 1  # one CPU stays free for the tasks that feed the actors
    if num_cpus * pools > spare:
        num_cpus = max(spare, 0.25) / pools
    return num_cpus, num_gpus


def split_by(table: pa.Table, column: str) -> list[pa.Table]:
    """One table per distinct value of `column` (in sorted order), without a pass per value."""
    if table.num_rows == 0:
        return []
    table = table.sort_by(column)
    values = table[column].to_numpy(zero_copy_only=False)
    edges = [0, *(np.flatnonzero(values[1:] != values[:-1]) + 1).tolist(), table.num_rows]
    return [table.slice(a, b - a) for a, b in itertools.pairwise(edges)]


def unit_dataset(table: pa.Table, units: Iterable[str]):
    """A Ray dataset with one block per work unit (the grain of commit); None when empty."""
    import ray.data

    pending = table.filter(pc.is_in(table["unit"], pa.array(sorted(set(units)), pa.string())))
    parts = split_by(pending, "unit")
    return ray.data.from_arrow(parts) if parts else None


def commit_by_unit(ds, expected: dict[str, int] | None, commit: Callable[[str, pa.Table], None],
                   on_rows: Callable[[int], None] = lambda n: None) -> None:
    """Stream `ds`, and call `commit(unit, rows)` once every row of a unit is in.

    A unit's size comes from `expected`, or (None) from the rows' own `unit_total` column,
    for units whose inputs are only known once read (a tar). Raises if the stream ends with a
    unit incomplete: rows must never be lost silently.
    """
    buffers: dict[str, list[pa.Table]] = defaultdict(list)
    counts: dict[str, int] = defaultdict(int)
    sizes: dict[str, int] = dict(expected or {})
    for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
        on_rows(batch.num_rows)
        for part in split_by(batch, "unit"):
            unit = part["unit"][0].as_py()
            if unit not in sizes:
                sizes[unit] = part["unit_total"][0].as_py()
            buffers[unit].append(part)
            counts[unit] += part.num_rows
            if counts[unit] == sizes[unit]:
                commit(unit, pa.concat_tables(buffers.pop(unit)))
            elif counts[unit] > sizes[unit]:
                raise RuntimeError(f"unit {unit}: {counts[unit]} rows for {sizes[unit]} inputs")
    if buffers:
        missing = {u: sizes[u] - counts[u] for u in buffers}
        raise RuntimeError(f"stream ended with units incomplete (rows missing): {missing}")
