"""Run small jobs on a local multi-node Ray cluster (ray.cluster_utils.Cluster, a head with 0
CPUs), removing a worker node mid-phase. Run in its own process (the test session holds its own
Ray): python -m tests.multinode SHAPE PHASES JOB_YAML RESULT_JSON [SHAPE PHASES JOB_YAML RESULT_JSON ...]

Each group runs one job on a cluster of SHAPE (CPUs per worker node, e.g. "2,2"); groups share
one cluster, reshaped between them (nodes removed from the end, then added). PHASES (e.g.
"ingest,dedup,caption,write", or "none") are where the last worker node is removed: ingest and
caption at their first unit commit, write as its shard tasks start, dedup as it starts. A
fresh node of the same size then replaces it (added from the driver's main thread, as Ray's
node start installs signal handlers, while the phase's tasks run on), so a 1-node cluster has
no CPU at all for a while and each phase can lose a node. RESULT_JSON
receives the manifest's counts and timings, and per phase the work committed when the node
was removed (units or shards) out of the total.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

POINTS = {"ingest": "ingest.commit", "dedup": "dedup.start", "caption": "caption.commit", "write": "write.started"}


class Nodes:
    """The cluster's worker nodes, with their CPUs."""

    def __init__(self, cluster):
        self.cluster, self.nodes, self.cpus = cluster, [], []

    def add(self, cpus: int) -> None:
        self.nodes.append(self.cluster.add_node(num_cpus=cpus))
        self.cpus.append(cpus)

    def reshape(self, shape: list[int]) -> None:
        while self.cpus and self.cpus != shape[:len(self.cpus)]:
            self.cluster.remove_node(self.nodes.pop())
            self.cpus.pop()
        for cpus in shape[len(self.cpus):]:
            self.add(cpus)
        self.cluster.wait_for_nodes()

    def replace_last(self) -> None:
        """Remove the last worker node, then add a fresh one of its size."""
        self.cluster.remove_node(self.nodes.pop())
        self.add(self.cpus.pop())


def progress(work: Path, phase: str) -> list[int]:
    """[committed, total] of a phase's work when its node goes (dedup: one step)."""
    import pyarrow.parquet as pq

    if phase == "write":
        return [len(list((work / "shards").glob("*.parquet"))), -1]   # total: filled in from the manifest
    if phase == "dedup":
        return [int((work / "dedup.done").exists()), 1]
    return [len(list((work / phase).glob("*.done"))), pq.read_metadata(work / "plan.parquet").num_rows]


def run_group(nodes: Nodes, address: str, shape: str, phases: str, job_path: Path, result_path: Path) -> None:
    from curate import failpoint
    from curate.jobs import load_job
    from curate.outputs import work_dir
    from curate.runner import run_job

    nodes.reshape([int(n) for n in shape.split(",")])
    job = load_job(job_path)
    removed: dict[str, list[int]] = {}
    for phase in [p for p in phases.split(",") if p != "none"]:
        def remove(n: int, phase: str = phase) -> None:
            if n == 1:
                removed[phase] = progress(work_dir(job) / "_work", phase)   # the driver's markers (.curate/<name> for s3://)
                nodes.replace_last()
        failpoint.on(POINTS[phase], remove)
    try:
        result = run_job(job, job_path, address=address)
    finally:
        for point in POINTS.values():
            failpoint.on(point, None)
    if "write" in removed:
        removed["write"][1] = result.manifest["shards"]
    result_path.write_text(json.dumps({"counts": result.manifest["counts"], "removed": removed,
                                       "timings": result.manifest["timings_s"]}))


def main() -> None:
    import faulthandler
    import signal

    faulthandler.register(signal.SIGUSR1, all_threads=True)   # a hang's stacks: kill -USR1 PID
    from ray.cluster_utils import Cluster

    args = sys.argv[1:]
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    nodes = Nodes(cluster)
    try:
        for i in range(0, len(args), 4):
            shape, phases, job_path, result_path = args[i], args[i + 1], Path(args[i + 2]), Path(args[i + 3])
            run_group(nodes, cluster.address, shape, phases, job_path, result_path)
    finally:
        import ray

        ray.shutdown()
        cluster.shutdown()


if __name__ == "__main__":
    main()
