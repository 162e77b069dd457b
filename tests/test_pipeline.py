"""End to end on the demo job: the acceptance list of the spine, checked on real outputs."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import webdataset as wds

from curate.sources import key_for
from schemas.buckets import TABLES
from tests.realdata import TURNED


def key_of(corpus: Path, name: str) -> str:
    return key_for((corpus / name).resolve().as_uri())


@pytest.fixture(scope="module")
def out(demo_run) -> Path:
    return demo_run.run_dir


@pytest.fixture(scope="module")
def index(out):
    return {r["key"]: r for r in pq.read_table(out / "index").to_pylist()}


@pytest.fixture(scope="module")
def rejects(out):
    return {r["key"]: r for r in pq.read_table(out / "rejects").to_pylist()}


def test_every_tar_reads_with_webdataset_and_matches_the_index(out, index):
    tars = sorted(out.glob("ar1024/*/*.tar"))
    assert tars, "no shards written"
    seen = {}
    for tar in tars:
        for sample in wds.WebDataset(str(tar), shardshuffle=False, empty_check=False):
            meta = json.loads(sample["json"])
            # one image field for every sample: JPEG (output.format's default), whatever the input
            assert meta["member"] == f"{sample['__key__']}.jpg" and sample["jpg"][:3] == b"\xff\xd8\xff"
            assert len(sample["jpg"]) == meta["member_bytes"]
            rotated = meta["url"].endswith("/exif_rot6.jpg")   # turned by jpegtran (2048x1152: whole blocks)
            assert meta["stored_as"] == ("reencoded" if meta["format"] != "jpg" else TURNED if rotated else "original")
            assert sample["txt"].decode() == meta["caption"]
            assert meta["shard"] == str(tar.relative_to(out))
            seen[sample["__key__"]] = meta
    assert set(seen) == set(index), "index keys differ from the keys in the tars"
    for key, meta in seen.items():
        assert meta["bucket"] == index[key]["bucket"] and meta["caption"] == index[key]["caption"]


def test_accounting_adds_up(demo_run, truth, index, rejects):
    counts = demo_run.manifest["counts"]
    inputs = sum(1 for name in truth if Path(name).suffix in (".jpg", ".png", ".webp"))
    assert counts["inputs"] == inputs
    assert counts["written"] == len(index)
    assert counts["inputs"] == counts["written"] + sum(counts["rejected"].values()) + sum(counts["failed"].values())
    assert len(index) + len(rejects) == inputs and not set(index) & set(rejects)
    for unit in demo_run.manifest["units"].values():
        assert unit["inputs"] == unit["written"] + unit["rejected"] + unit["failed"]


def test_broken_and_small_files_are_rejected_with_their_reason(corpus, truth, rejects, index):
    for name, entry in truth.items():
        if entry["expect"].startswith("rejected:"):
            key = key_of(corpus, name)
            assert key in rejects, f"{name} should be rejected"
            assert rejects[key]["reason"] == entry["expect"].split(":", 1)[1], name
    for row in index.values():
        assert min(row["width"], row["height"]) >= 1024


def test_4k_images_are_tagged(corpus, truth, index):
    uhd = [key_of(corpus, n) for n, e in truth.items() if e["is_4k"]]
    assert len(uhd) == 3
    assert all(index[k]["is_4k"] for k in uhd)
    assert sum(r["is_4k"] for r in index.values()) == len(uhd)


def test_exif_rotated_image_is_measured_upright(corpus, index):
    row = index[key_of(corpus, "exif_rot6.jpg")]
    assert (row["width"], row["height"]) == (1152, 2048)
    assert row["bucket"] == "1.75"


def test_each_duplicate_group_keeps_exactly_its_largest_member(corpus, truth, index, rejects):
    groups = defaultdict(list)
    for name, entry in truth.items():
        if entry["group"]:
            groups[entry["group"]].append((entry["width"] * entry["height"], key_of(corpus, name)))
    assert len(groups) == 4
    for group, members in groups.items():
        kept = [k for _, k in members if k in index]
        assert len(kept) == 1, f"{group}: kept {len(kept)}"
        assert max(members)[0] == next(p for p, k in members if k == kept[0]), f"{group}: kept member is not the largest"
        for _, k in members:
            if k != kept[0]:
                assert rejects[k]["reason"] in ("near_duplicate", "exact_duplicate")
                assert rejects[k]["dup_cluster"] == index[kept[0]]["dup_cluster"]


def test_every_bucket_is_the_nearest_pixart_ratio(index):
    table = TABLES[1024]
    for row in index.values():
        ratio = row["height"] / row["width"]
        best = min(abs(float(k) - ratio) for k in table)
        assert abs(float(row["bucket"]) - ratio) == best
        assert row["bucket_hw"] == table[row["bucket"]]
        assert row["shard"].startswith(f"ar1024/{row['bucket']}/")


def test_captions_and_alt_text_are_kept(index):
    for row in index.values():
        captions = dict(row["captions"])
        assert set(captions) == {"dense", "short", "alt"} and captions["alt"].startswith("A synthetic picture")
        assert row["caption"] == captions["dense"] or (not captions["dense"] and row["caption"] == captions["alt"])
        assert row["caption_tokens"] <= 300 and row["caption_cut"] == ""


def test_report_and_manifest_exist(out, demo_run):
    html = (out / "report" / "index.html").read_text()
    assert "Written samples" in html and str(demo_run.manifest["counts"]["written"]) in html
    for chart in ("NSFW score (higher: less safe)", "Watermark score (higher: more likely watermarked)",
                  "Image\u2013alt text agreement (CLIP cosine)"):   # the demo's heads and alt-text agreement
        assert f"<h3>{chart}</h3>" in html
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["config_hash"]
    assert set(manifest["timings_s"]) >= {"ingest", "dedup", "caption", "write"}


def test_ingest_decodes_each_image_once_and_scores_it(demo_run, index, truth):
    ingest = demo_run.manifest["ingest"]
    passed_gate = sum(1 for e in truth.values() if e["expect"] in ("written", "dup", "rejected:decode_error"))
    assert ingest["inputs_decoded"] == passed_gate
    assert ingest["pixel_decodes"] == ingest["inputs_decoded"], "an image was decoded more than once in ingest"
    for row in index.values():
        assert row["aesthetic"] is not None
        # the demo's tiny NSFW head (LAION port: sigmoid) and watermark head (sigmoid: true) and alt agreement
        assert 0 < row["nsfw"] < 1 and 0 < row["watermark"] < 1 and -1 <= row["clip_alt"] <= 1
        assert row["quality"]["sharpness"] > 0 and 0 <= row["quality"]["letterbox"] <= 1
        assert (row["quality"]["jpeg_quality"] is not None) == (row["format"] == "jpg")


def test_lookalikes_are_not_merged(corpus, truth, index):
    lookalikes = [key_of(corpus, n) for n, e in truth.items() if e["kind"] == "lookalike"]
    assert len(lookalikes) == 4 and all(k in index for k in lookalikes)


def test_run_writes_its_hash_index_for_the_next(out, index):
    hashes = pq.read_table(out / "hashes.parquet").to_pylist()
    assert {h["key"] for h in hashes} == set(index)
    assert all(f"{h['phash']:016x}" == index[h["key"]]["phash"] for h in hashes)


def test_report_shows_each_dropped_duplicate_beside_the_sample_it_was_merged_into(out, rejects):
    import re

    page = (out / "report" / "index.html").read_text()
    section = page[page.index('<section id="duplicates">'):]
    section = section[:section.index("</section>")]
    distance = {r["key"]: r["distance"] for r in pq.read_table(out / "_work" / "dedup.parquet").to_pylist()}
    dropped = {k: r for k, r in rejects.items() if r["reason"] in ("near_duplicate", "exact_duplicate")}
    assert dropped, "the demo corpus plants duplicates"
    shown = {}
    for kept, cells in re.findall(r'<tr data-kept="([0-9a-f]+)">(.*?)</tr>', section):
        for copy, reason, d in re.findall(r'<td class="dup-copy">.*?<code>([0-9a-f]+)</code><br>(\w+), distance <b class="dup-distance">(\d+)</b>', cells):
            shown[copy] = (kept, reason, int(d))
        assert 'class="thumb missing"' not in cells   # the kept sample from its shard, each copy from its source
    expected = {k: (r["near_duplicate_of"], r["reason"], 0 if r["reason"] == "exact_duplicate" else distance[k]) for k, r in dropped.items()}
    assert shown == expected
