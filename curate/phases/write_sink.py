"""The shard writer as a Ray Data Datasink (kept apart from write.py, which the CLI imports:
importing ray.data costs seconds)."""

from __future__ import annotations

import threading

import pyarrow as pa
import ray.data
from ray.data import Datasink
from ray.exceptions import UserCodeException

from curate import failpoint
from curate.engine import split_by
from curate.outputs import output_for
from curate.phases.write import MEMBERS, members_file, shard_folder, write_shard
from curate.staging import StagingStore, store_for
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
        try:
            written = [write_shard(shard, job, store) for block in blocks for shard in split_by(block, "shard")]
        except Exception as exc:
            # as a map_batches function's error would be: Ray Data then logs one line, not the traceback
            # (the driver's run log has it), and the run's one-line error names this cause
            raise UserCodeException(f"{type(exc).__name__}: {exc}") from exc
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


POLL_S = 1.0


def write_watched(sink: ShardSink, index: pa.Table, store: StagingStore, progress=None) -> pa.Table:
    """Write every planned shard through `sink` (Ray Data, in a thread) and return the MEMBERS rows.

    Meanwhile this thread, the driver's main one, watches the shards finish (each writes its
    members file just before it is published) to advance the progress bar and pass the
    `write.shard` failpoint once per finished shard, so a driver can be killed with shards in flight.
    """
    counts = index.group_by("shard").aggregate([("key", "count")])
    rows = dict(zip(counts["shard"].to_pylist(), counts["key_count"].to_pylist()))
    waiting = {members_file(shard): n for shard, n in rows.items()}
    task = progress.add_task("write", total=index.num_rows) if progress is not None else None
    failed: list[BaseException] = []

    def write() -> None:
        try:
            ray.data.from_arrow(split_by(index, "shard")).write_datasink(sink)
        except BaseException as exc:  # re-raised on the driver's thread below
            failed.append(exc)

    writer = threading.Thread(target=write, name="shard-writer", daemon=True)
    writer.start()
    failpoint.hit("write.started")   # the shards' tasks are on their way, none finished yet
    while waiting:
        writer.join(POLL_S)
        finished = waiting.keys() & store.listing("shards")
        for name in sorted(finished):
            if task is not None:
                progress.advance(task, waiting[name])
            del waiting[name]
            failpoint.hit("write.shard")
        if not writer.is_alive():
            break
    writer.join()
    if failed:
        raise failed[0]
    return pa.concat_tables(sink.members) if sink.members else MEMBERS.empty_table()
