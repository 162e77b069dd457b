"""Ray plumbing shared by the phases: cluster start, Data context, and per-unit commits.

A phase turns its pending work units into a Ray Data dataset with one block per unit,
streams the results back, and commits each unit on the driver as soon as all of its rows
have arrived. A crash loses only uncommitted units; a re-run redoes just those.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import warnings
from collections import defaultdict
from collections.abc import Callable, Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curate import failpoint

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
        if failpoint.worker_env():   # a test's kill points reach the workers of a cluster we join
            kwargs["runtime_env"] = {"env_vars": failpoint.worker_env()}
        if address:
            ray.init(address=address, **kwargs)
        else:
            os.environ.setdefault("RAY_AUTH_MODE", "disabled")
            # "local": a new embedded cluster, even when another one (`ray start`) runs on this
            # machine; with no address, ray.init would join that one (/tmp/ray/ray_current_cluster)
            ray.init(address="local", num_cpus=num_cpus, **kwargs)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.execution_no_progress_timeout_s = no_progress_timeout_s
    return address or "local"


def node_cpus() -> list[float]:
    """CPUs of each alive node."""
    import ray

    return [float(n["Resources"].get("CPU", 0)) for n in ray.nodes() if n.get("Alive")]


def cluster_gpus() -> float:
    import ray

    return float(ray.cluster_resources().get("GPU", 0))


def actor_resources(name: str, num_cpus: float, num_gpus: float, pools: int) -> tuple[float, float]:
    """CPUs and GPUs per actor, adjusted so the pipeline cannot deadlock on this cluster.

    Actors that hold the CPUs the tasks need starve the tasks (Ray Data then hangs), and an
    actor asking for a GPU on a cluster without one would wait forever: fall back to CPU.
    """
    if num_gpus > 0 and cluster_gpus() == 0:
        warnings.warn(f"{name}: num_gpus={num_gpus} but the cluster has no GPU; running on CPU", stacklevel=2)
        num_gpus = 0
    return actor_cpus(num_cpus, pools, node_cpus()), num_gpus


def actor_cpus(requested: float, actors: int, nodes: list[float]) -> float:
    """CPUs per actor such that, wherever Ray places `actors` of them, some node keeps a whole
    CPU for the (1-CPU) tasks that feed them.

    Per node, not per cluster: every node i can give its actors up to C_i - 1 CPUs and still
    run a task, so if all actors together take at most sum(max(C_i - 1, 0)), some node has a
    free CPU (were every node short of one, the actors would hold more than that sum). On
    3 x 1 CPU that sum is 0: the actors reserve no CPU (they still run; Ray only schedules by
    reservations), where 3 actors of 0.67 CPU, one per node, left no node a whole CPU.
    """
    spare = sum(max(c - 1, 0.0) for c in nodes)
    if requested * actors <= spare:
        return requested
    return math.floor(spare / actors * 1000) / 1000   # Ray counts CPUs in units of 1e-4


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
