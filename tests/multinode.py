"""Run one small job on a local multi-node Ray cluster (ray.cluster_utils.Cluster), optionally
removing a worker node mid-phase. Run in its own process (the test session holds its own Ray):
python -m tests.multinode SHAPE PHASE JOB_YAML RESULT_JSON

SHAPE is CPUs per worker node, e.g. "1,1,1"; PHASE (ingest or caption) removes the last worker
node mid-phase (ingest: after its first commit; caption: as it starts), "none" removes nothing. RESULT_JSON receives
the manifest's counts and timings, and whether a node was removed.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path


def main() -> None:
    shape, phase, job_path, result_path = sys.argv[1], sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4])
    from ray.cluster_utils import Cluster

    from curate.jobs import load_job
    from curate.outputs import work_dir
    from curate.runner import run_job

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    nodes = [cluster.add_node(num_cpus=int(n)) for n in shape.split(",")]
    cluster.wait_for_nodes()
    job = load_job(job_path)
    removed = threading.Event()

    def remove_mid_phase() -> None:
        work = work_dir(job) / "_work"   # the driver's commit markers (the output itself, or .curate/<name> for s3://)
        # ingest: its first commit; caption: as it starts (dedup's marker), while its actors load
        started = work / ("dedup.done" if phase == "caption" else phase)
        while not started.exists():
            time.sleep(0.05)
        cluster.remove_node(nodes[-1])
        import pyarrow.parquet as pq

        if len(list((work / phase).glob("*.done"))) < pq.read_metadata(work / "plan.parquet").num_rows:   # the node went while the phase still had units to do
            removed.set()

    if phase != "none":
        threading.Thread(target=remove_mid_phase, daemon=True).start()
    try:
        result = run_job(job, job_path, address=cluster.address)
        result_path.write_text(json.dumps({"counts": result.manifest["counts"], "removed": removed.is_set(),
                                           "timings": result.manifest["timings_s"]}))
    finally:
        import ray

        ray.shutdown()
        cluster.shutdown()


if __name__ == "__main__":
    main()
