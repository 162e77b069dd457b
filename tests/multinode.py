"""Run one small job on a local multi-node Ray cluster (ray.cluster_utils.Cluster), optionally
removing a worker node once the caption phase starts. Run in its own process (the test session
holds its own Ray): python -m tests.multinode SHAPE REMOVE JOB_YAML RESULT_JSON

SHAPE is CPUs per worker node, e.g. "1,1,1"; REMOVE is 1 to remove the last worker node
mid-run. RESULT_JSON receives the manifest's counts and whether a node was removed.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path


def main() -> None:
    shape, remove, job_path, result_path = sys.argv[1], sys.argv[2] == "1", Path(sys.argv[3]), Path(sys.argv[4])
    from ray.cluster_utils import Cluster

    from curate.jobs import load_job
    from curate.runner import run_job

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    nodes = [cluster.add_node(num_cpus=int(n)) for n in shape.split(",")]
    cluster.wait_for_nodes()
    job = load_job(job_path)
    removed = threading.Event()

    def remove_when_captioning() -> None:
        caption = Path(job.out) / "_work" / "caption"
        while not caption.exists():
            time.sleep(0.1)
        cluster.remove_node(nodes[-1])
        removed.set()

    if remove:
        threading.Thread(target=remove_when_captioning, daemon=True).start()
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
