"""The whole pipeline on a corpus unlike the demo sample (tests/realdata.py): real photographs,
no sidecars, one format only, every EXIF orientation, odd pixel modes. Every sample is checked
as a trainer outside the project sees it: members decoded without EXIF, read back with the real
loaders the README documents."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from PIL import Image

from curate.sources import key_for
from tests import realdata
from tests.conftest import DEMO_JOB, demo_overrides


def corpus_job(tmp: Path, cases: list[realdata.Case], corpus: Path, tiny_vlm: Path, out: Path, *extra: str,
               folders: list[str] | None = None):
    """The demo job with one folder source per corpus folder, four inputs per work unit."""
    from curate.jobs import load_job

    raw = yaml.safe_load(DEMO_JOB.read_text())
    raw["sources"] = [{"type": "folder", "path": str(corpus / f)} for f in folders or realdata.folders(cases)]
    raw["units"] = {"size": 4}
    path = tmp / "job.yaml"
    path.write_text(yaml.safe_dump(raw))
    overrides = [o for o in demo_overrides(corpus, tiny_vlm, out) if not o.startswith("sources.0.path=")]
    # the tiny random VLM may emit its end token first: make it say something for every image
    return load_job(path, [*overrides, "caption.captioners.0.generation.min_new_tokens=6",
                           "caption.captioners.1.generation.min_new_tokens=3", *extra]), path


@pytest.fixture(scope="module")
def real(tmp_path_factory, tiny_vlm, tiny_clip, ray_cluster):
    from curate.runner import run_job

    tmp = tmp_path_factory.mktemp("real")
    corpus = tmp / "corpus"
    cases = realdata.build(corpus)
    job, path = corpus_job(tmp, cases, corpus, tiny_vlm, tmp / "out")
    result = run_job(job, path)
    by_key = {key_for((corpus / c.folder / c.name).resolve().as_uri()): c for c in cases}
    index = {r["key"]: r for r in pq.read_table(result.run_dir / "index").to_pylist()}
    return {"cases": by_key, "corpus": corpus, "result": result, "out": result.run_dir, "index": index}


def members(out: Path, offsets: dict | None = None) -> dict[str, bytes]:
    """Every image member's bytes, by sample key, read with tarfile (no webdataset logic);
    `offsets` collects (shard, data offset, size) per key."""
    found = {}
    for tar in sorted(out.glob("ar1024/*/*.tar")):
        with tarfile.open(tar) as tf:
            for info in tf:
                key, ext = info.name.split(".", 1)
                if ext not in ("txt", "json"):
                    found[key] = tf.extractfile(info).read()
                    if offsets is not None:
                        offsets[key] = (tar.relative_to(out).as_posix(), info.offset_data, info.size)
    return found


def test_every_input_is_written_and_alt_text_is_exactly_its_sidecar(real):
    counts = real["result"].manifest["counts"]
    assert counts["inputs"] == counts["written"] == len(real["cases"]) == 42
    assert not counts["rejected"] and not counts["failed"]
    assert set(real["index"]) == set(real["cases"])
    for key, row in real["index"].items():
        assert dict(row["captions"]).get("alt") == real["cases"][key].alt, real["cases"][key].name
        assert row["caption"] and row["hallucination"]["score"] is not None   # scored, with or without alt text


def test_stored_pixels_are_upright_and_exactly_the_indexed_size(real):
    from curate.outputs import LocalOutput

    offsets = {}
    stored = members(real["out"], offsets)
    assert stored.keys() == real["index"].keys()
    for key, data in stored.items():
        case, row = real["cases"][key], real["index"][key]
        with Image.open(io.BytesIO(data)) as img:   # as webdataset/Ray/HF decode it: EXIF not applied
            assert img.format == "JPEG" and img.mode == "RGB", case.name
            assert img.getexif().get(0x0112, 1) == 1, case.name
            assert img.size == (row["member_width"], row["member_height"]) == (row["width"], row["height"]) == case.upright.size
            right, wrong = realdata.orientation_error(img, case.upright)
        assert right < 4 and wrong > 4 * right, (case.name, right, wrong)
        assert row["stored_as"] == case.stored_as, case.name
        assert (row["shard"], row["member_offset"], row["member_bytes"]) == offsets[key]
        assert LocalOutput(real["out"]).read_range(row["shard"], row["member_offset"], row["member_bytes"]) == data
        if case.stored_as == "original":
            assert data == (real["corpus"] / case.folder / case.name).read_bytes(), case.name


def test_odd_modes_are_stored_as_8_bit_rgb_pictures(real):
    by_name = {c.name: (k, c) for k, c in real["cases"].items()}
    stored = members(real["out"])
    for name in ("grey.jpg", "cmyk.jpg", "sixteen.png", "palette.png", "alpha.png"):
        key, case = by_name[name]
        with Image.open(io.BytesIO(stored[key])) as img:
            assert img.mode == "RGB", name
            right, _ = realdata.orientation_error(img, case.upright)
            assert right < 4, (name, right)   # 16-bit scaled, not clipped white; alpha on white, not black


def test_the_read_calls_the_readme_documents(real, ray_cluster, tmp_path):
    import duckdb
    import pyarrow
    import ray.data
    import webdataset
    from datasets import load_dataset

    out, index = real["out"], real["index"]
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    for call in ('.decode("pil").to_tuple("jpg", "txt", "json")', 'ray.data.read_webdataset("OUT/ar1024/")',
                 'datasets.load_dataset("OUT", split="train")', "read_parquet('OUT/index/*/*.parquet')",
                 'pyarrow.parquet.read_table("OUT/index")'):
        assert call in readme, call
    # webdataset
    shards = sorted(str(p) for p in out.glob("ar1024/*/*.tar"))
    seen = {}
    for image, text, meta in webdataset.WebDataset(shards, shardshuffle=False, empty_check=False).decode("pil").to_tuple("jpg", "txt", "json"):
        assert image.size == (meta["member_width"], meta["member_height"]) and text == index[meta["key"]]["caption"]
        seen[meta["key"]] = image.size
    assert seen.keys() == index.keys()
    # Ray Data, on the folder
    rows = ray.data.read_webdataset(f"{out}/ar1024/").take_all()
    assert len(rows) == len(index)
    for r in rows:
        row = index[r["__key__"]]
        assert r["jpg"].shape == (row["member_height"], row["member_width"], 3) and r["txt"] == row["caption"]
    # Hugging Face datasets: one image column for every sample
    ds = load_dataset(str(out), split="train", cache_dir=str(tmp_path / "hf"))
    assert [n for n, f in ds.features.items() if type(f).__name__ == "Image"] == ["jpg"]
    assert ds.num_rows == len(index)
    for sample in ds:
        row = index[sample["__key__"]]
        assert sample["jpg"].size == (row["member_width"], row["member_height"]) and sample["json"]["bucket"] == row["bucket"]
    # DuckDB and pyarrow on the index
    per_bucket = dict(duckdb.sql(f"select bucket, count(*) from read_parquet('{out}/index/*/*.parquet') group by bucket").fetchall())
    assert per_bucket == real["result"].manifest["buckets"]
    table = pyarrow.parquet.read_table(f"{out}/index")
    assert sorted(table["key"].to_pylist()) == sorted(index)
    assert json.loads((out / "manifest.json").read_text())["counts"]["written"] == len(index)


def test_no_sidecars_and_no_scoring_runs_clean(real, tiny_vlm, tmp_path):
    """The wave-1 crash: a folder with no alt text at all and scoring off (ArrowTypeError on NaN)."""
    from curate.runner import run_job

    cases = list(real["cases"].values())
    job, path = corpus_job(tmp_path, cases, real["corpus"], tiny_vlm, tmp_path / "out", "hallucination.enabled=false",
                           folders=["plain"])
    result = run_job(job, path)
    index = pq.read_table(result.run_dir / "index").to_pylist()
    assert result.manifest["counts"]["written"] == len(index) == 8
    assert all(dict(r["captions"]).get("alt") is None and r["hallucination"] is None for r in index)


def test_export_gives_every_image_a_prompt_and_upright_pixels(real, tmp_path):
    """Most of this corpus has no alt text: PixArt's prompt falls back to the `short` captioner."""
    from tests.conftest import cli

    out = tmp_path / "pixart"
    res = cli("export", "pixart", str(real["out"]), str(out), "--prompt-fallback", "short")
    assert res.returncode == 0, res.stderr
    infos = {i["path"]: i for i in json.loads((out / "InternData/data_info.json").read_text())}
    rows = {r["member"]: r for r in real["index"].values()}
    assert infos.keys() == rows.keys()
    without_alt = 0
    for path, info in infos.items():
        captions = dict(rows[path]["captions"])
        without_alt += "alt" not in captions
        assert info["prompt"] == (captions.get("alt") or captions["short"]) and info["prompt"]
        with Image.open(out / "InternImgs" / path) as img:   # PixArt's loader: no EXIF transpose
            assert img.size == (info["width"], info["height"]) == real["cases"][rows[path]["key"]].upright.size
    assert without_alt == sum(c.alt is None for c in real["cases"].values()) == 36
