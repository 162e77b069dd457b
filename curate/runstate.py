"""Where a run stands, as plain data: `curate status [--json]` and `curate.status()`.

Paths are absolute (resolved from the folder asked about), so the answer stays right for a run
folder that was copied or moved.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq

from curate.storage import RunDir


class NoRun(FileNotFoundError):
    """The folder holds no curate run."""


def run_status(run_dir: str | Path) -> dict:
    """{"state": "complete" | "in_progress", "run": abs path, ...}: the manifest's counts for a
    finished run; units committed per phase (of the planned total) for one in progress."""
    run = RunDir(Path(run_dir).resolve())
    root = str(run.root)
    logs = sorted(str(p) for p in (run.root / "logs").glob("*.log")) if (run.root / "logs").is_dir() else []
    if run.manifest.exists():
        manifest = json.loads(run.manifest.read_text())
        return {"state": manifest.get("status", "complete"), "run": root, "job": manifest.get("job"),
                "counts": manifest.get("counts"), "buckets": manifest.get("buckets"), "shards": manifest.get("shards"),
                "timings_s": manifest.get("timings_s"), "logs": logs,
                "paths": {"index": str(run.index), "rejects": str(run.rejects), "report": str(run.report / "index.html"),
                          "manifest": str(run.manifest), "out": manifest.get("outputs", {}).get("out", root)}}
    if not run.plan.exists():
        raise NoRun(f"{run_dir}: no curate run here (no manifest.json or _work/plan.parquet)")
    units = len(set(pq.read_table(run.plan, columns=["unit"])["unit"].to_pylist()))
    phases = {
        "ingest": {"done": len(list(run.ingest.glob("*.done"))), "total": units},
        "dedup": {"done": int(run.marker("dedup").exists()), "total": 1},
        "caption": {"done": len(list(run.caption.glob("*.done"))), "total": units},
        "write": {"done": int(run.marker("write").exists()), "total": 1},
    }
    return {"state": "in_progress", "run": root, "phases": phases, "logs": logs}
