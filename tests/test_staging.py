"""The staging store without Ray: ingest stages each kept image once, a locator reads back exactly
its bytes, a completed run's staged files go, and fetching them again ties each image to its
first read (a changed source file is reported, never staged as other bytes)."""

from __future__ import annotations

import asyncio
import io

import numpy as np
import pyarrow as pa
import pytest

from curate.phases.ingest import STAGED, ingest_unit
from curate.phases.restage import restage_block
from curate.sample import render
from curate.sources import plan_units, with_listing
from curate.staging import StagedError, parse, staged_file, store_for
from schemas.job import Job


@pytest.fixture
def staged_run(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    rng = np.random.default_rng(5)
    for name, side in (("a", 1024), ("b", 1100), ("small", 300)):
        img, _ = render(rng, side, side)
        img.save(src / f"{name}.jpg", quality=90)
    job = Job.model_validate({"name": "s", "out": str(tmp_path / "out"), "sources": [{"type": "folder", "path": str(src)}],
                              "caption": {"captioners": [{"name": "c", "model": "m"}]},
                              "filters": {"aesthetics": {"enabled": False}}, "hallucination": {"enabled": False}})
    root = tmp_path / "out"
    unit = with_listing(plan_units(job, root / "_work").to_pylist())[0]
    rows = asyncio.run(ingest_unit(unit, job, root))
    return job, root, src, unit, rows


def test_each_kept_image_is_staged_once_and_read_back_by_its_locator(staged_run):
    job, root, src, _, rows = staged_run
    store = store_for(job, root)
    kept = {r["uri"].rsplit("/", 1)[1]: r for r in rows if r["status"] == STAGED}
    assert sorted(kept) == ["a.jpg", "b.jpg"]
    assert next(r for r in rows if r["uri"].endswith("small.jpg")).get("blob") is None   # rejected: nothing staged
    files = {staged_file(r["blob"]) for r in kept.values()}
    assert len(files) == 1 and store.files() == files   # one append-only file per unit attempt
    (only,) = files
    assert (root / "_work" / only).stat().st_size == sum((src / n).stat().st_size for n in kept)
    for name, r in kept.items():
        assert store.read(r["blob"]) == (src / name).read_bytes()
    rel, _, length = parse(kept["a.jpg"]["blob"])
    with pytest.raises(StagedError, match="read 0 bytes"):   # a locator past the file's end is an error, not short bytes
        store.read(f"{rel}:{(root / '_work' / rel).stat().st_size}:{length}")
    store.remove_run()
    assert store.files() == set() and not (root / "_work" / "staged").exists()


def test_removed_staged_bytes_are_fetched_again_tied_to_the_first_read(staged_run):
    job, root, src, unit, rows = staged_run
    store = store_for(job, root)
    kept = [r for r in rows if r["status"] == STAGED]
    first = {r["key"]: store.read(r["blob"]) for r in kept}
    store.remove_run()
    # b.jpg changes at its source after the first read: same name, other pixels
    changed = next(r for r in kept if r["uri"].endswith("b.jpg"))
    img, _ = render(np.random.default_rng(9), 1100, 1100)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90)
    (src / "b.jpg").write_bytes(buf.getvalue())
    batch = pa.Table.from_pylist([{"unit": r["unit"], "key": r["key"], "blob": r["blob"], "bytes": r["bytes"], "sha256": r["sha256"],
                                   "file": staged_file(r["blob"])} for r in kept])
    out = restage_block(batch, job.model_dump_json(), str(root), {unit["unit"]: unit}).to_pylist()
    assert [r["key"] for r in out] == [changed["key"]]
    assert out[0]["detail"].startswith("source changed since the first read: ") and "differ from the first read" in out[0]["detail"]
    unchanged = next(r for r in kept if r is not changed)
    assert store.read(unchanged["blob"]) == first[unchanged["key"]]   # same file name, same offset: the locator holds
    assert store.read(changed["blob"]) == bytes(changed["bytes"])      # zeros where the changed image was, never its new bytes
