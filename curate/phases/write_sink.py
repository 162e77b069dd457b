"""The shard writer as a Ray Data Datasink (kept apart from write.py, which the CLI imports:
importing ray.data costs seconds)."""

from __future__ import annotations

import pyarrow as pa
from ray.data import Datasink

from curate.engine import split_by
from curate.outputs import output_for
from curate.phases.write import MEMBERS, shard_folder, write_shard
from curate.staging import store_for
from schemas.job import Job


class ShardSink(Datasink):
    """Each write task writes whole shards (a shard's rows arrive as one block), each atomically
    to the job's output (temp name + rename, or an S3 multipart upload completed at the end),
    and returns what it stored for each member; the driver collects those in `members`."""

    def __init__(self, job: Job, work: str):
        self.job_json, self.work = job.model_dump_json(), work
        self.members: list[pa.Table] = []

    def on_write_start(self, schema=None) -> None:
        """Abort the uploads (or delete the temporaries) that killed writers left."""
        job = Job.model_validate_json(self.job_json)
        output_for(job).sweep(shard_folder(job.output.bucket_table))

    def write(self, blocks, ctx) -> bytes:
        """Returns the MEMBERS rows as Arrow IPC bytes (Ray wraps a write's return in a pandas cell)."""
        job = Job.model_validate_json(self.job_json)
        store = store_for(job, self.work)
        written = [write_shard(shard, job, store) for block in blocks for shard in split_by(block, "shard")]
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, MEMBERS) as w:
            for table in written:
                w.write_table(table)
        return sink.getvalue().to_pybytes()

    def on_write_complete(self, write_result) -> None:
        self.members = [pa.ipc.open_stream(r).read_all() for r in write_result.write_returns]

    def on_write_failed(self, error: Exception) -> None:
        """Nothing to undo: a shard is published whole or not at all, and a re-run writes only the
        shards whose members file is missing."""

    def get_name(self) -> str:
        return "ShardSink"
