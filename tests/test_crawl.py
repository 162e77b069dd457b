"""Crawl sources against real servers on 127.0.0.1: a misbehaving HTTP server for URL lists,
and a SeaweedFS S3 server for S3 prefixes and webdataset shards."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
import webdataset as wds
import yaml
from PIL import Image

from curate.jobs import load_job
from curate.runner import run_job
from curate.sample import render
from tests.conftest import SECRET_KEY
from tests.servers.http_server import Web, serve


@pytest.fixture(scope="module")
def web(tmp_path_factory):
    root = tmp_path_factory.mktemp("web")
    rng = np.random.default_rng(11)
    for i in range(37):
        img, _ = render(rng, 1024 + 64 * (i % 4), 1024)
        img.save(root / f"good_{i}.jpg", quality=85)
    noise = Image.fromarray((rng.random((350, 500, 3)) * 255).astype(np.uint8)).resize((1000, 700))
    for i in range(160):
        noise.rotate(i, expand=False).save(root / f"small_{i}.jpg", quality=90)
    with serve(root) as server:
        yield server


def url_rows(web: Web) -> tuple[list[dict], Counter, int]:
    """200 rows, and the verdict each kind should get."""
    b = web.base
    rows = [(f"{b}/img/good_{i}.jpg", "written") for i in range(30)]
    rows += [(f"{b}/flaky/good_30.jpg", "written"), (f"{b}/ratelimit/good_31.jpg", "written"),
             (f"{b}/wrongtype/good_32.jpg", "written"), (f"{b}/redirect/3/good_33.jpg", "written"),
             (f"{b}/norange/good_34.jpg", "written"), (f"{b}/noai/good_35.jpg", "opted_out"),
             (f"{b}/img/good_0.jpg", "exact_duplicate"), (f"{b}/missing", "http_error"), (f"{b}/missing", "http_error"),
             (f"{b}/missing", "http_error"), (f"{b}/html", "not_an_image"), (f"{b}/huge", "too_many_bytes"),
             (f"{b}/loop/a", "redirect_loop"), (f"{b}/redirect/9/good_36.jpg", "too_many_redirects"),
             (f"{b}/metadata", "blocked_address"), (f"{b}/slow/good_1.jpg", "timeout"),
             ("ftp://127.0.0.1/x.jpg", "bad_scheme"), ("", "bad_scheme")]
    rows.append((b.replace("://", "://crawler:Pa55word-XYZ@") + "/img/small_159.jpg", "too_small"))  # credentials in a URL
    n_small = 200 - len(rows)
    rows += [(f"{b}/img/small_{i}.jpg", "too_small") for i in range(n_small)]
    expected = Counter(v for _, v in rows)
    return [{"URL": u, "TEXT": f"alt text {i}"} for i, (u, _) in enumerate(rows)], expected, n_small


def crawl_job(tmp_path: Path, list_path: Path, tiny_vlm: Path, **fetch) -> Path:
    job = {
        "name": "crawl", "out": str(tmp_path / "out"),
        "sources": [{"type": "url_list", "path": str(list_path)}],
        "units": {"size": 50},
        "fetch": {"allow_private_networks": True, "read_timeout_s": 1, "total_timeout_s": 20, "retries": 2,
                  "backoff_s": 0.1, "header_bytes": 16384, "concurrency": 16, "per_host": 8, **fetch},
        "caption": {"tokenizer": str(tiny_vlm.parent / "tiny-t5-tokenizer"), "captioners": [{"name": "dense", "model": str(tiny_vlm), "preset": "greedy",
                                    "generation": {"max_new_tokens": 4}, "image_side": 128, "batch_size": 8}]},
        "output": {"shard_samples": 16},
    }
    path = tmp_path / "crawl.yaml"
    path.write_text(yaml.safe_dump(job))
    return path


def test_url_list_crawl_counts_every_reason(web, tiny_vlm, ray_cluster, tmp_path):
    rows, expected, n_small = url_rows(web)
    list_path = tmp_path / "urls.parquet"
    pq.write_table(pa.Table.from_pylist(rows), list_path)
    job_path = crawl_job(tmp_path, list_path, tiny_vlm)
    result = run_job(load_job(job_path), job_path)
    counts = result.manifest["counts"]
    got = Counter({"written": counts["written"]}) + Counter(counts["rejected"]) + Counter(counts["failed"])
    assert got == expected
    assert counts["inputs"] == 200

    # too-small images were probed from their first bytes, never downloaded whole
    sent = Counter()
    for r in web.requests():
        if r["path"].startswith("/img/small_"):
            sent[r["path"]] += r["sent"]
    assert len(sent) == n_small + 1
    for path, n in sent.items():
        assert n < (web.root / path.removeprefix("/img/")).stat().st_size, path
    transfer = result.manifest["transfer"]
    assert transfer["bytes_avoided"] > 0.8 * sum((web.root / p.removeprefix("/img/")).stat().st_size for p in sent)
    # written samples carry their alt text and the original bytes
    index = pq.read_table(result.run_dir / "index").to_pylist()
    evidence = {r["key"]: r for r in pq.read_table(result.run_dir / "report" / "hallucinations.parquet").to_pylist()}
    for row in index:
        assert dict(row["captions"])["alt"].startswith("alt text")
        # no CLIP in this job: the text signals and the alt-text agreement score the caption
        ev = evidence[row["key"]]
        assert ev["alt_agreement"] is not None and all(s["clip"] is None for s in ev["sentences"])
        name = row["url"].rsplit("/", 1)[1]
        assert row["sha256"] == hashlib.sha256((web.root / name).read_bytes()).hexdigest()
    # the URL's password is never written in clear
    for p in result.run_dir.rglob("*"):
        if p.is_file() and "_work/inputs" not in str(p):  # the listing is a copy of the user's own list
            assert b"Pa55word-XYZ" not in p.read_bytes(), p


def test_private_addresses_are_refused_without_the_setting(web, tiny_vlm, ray_cluster, tmp_path):
    list_path = tmp_path / "urls.csv"
    pacsv.write_csv(pa.table({"URL": [f"{web.base}/img/good_0.jpg", f"{web.base.replace('127.0.0.1', 'localhost')}/img/good_1.jpg"],
                              "TEXT": ["a", "b"]}), list_path)
    before = len(web.requests())
    job_path = crawl_job(tmp_path, list_path, tiny_vlm, allow_private_networks=False)
    result = run_job(load_job(job_path), job_path)
    assert result.manifest["counts"]["rejected"] == {"blocked_address": 2}
    assert result.manifest["counts"]["written"] == 0
    assert len(web.requests()) == before, "a refused address was contacted"
    rejects = pq.read_table(result.run_dir / "rejects").to_pylist()
    assert all("loopback or private" in r["detail"] for r in rejects)


def test_url_list_formats_read_alike(tmp_path):
    from curate.sources.urllist import read_url_list
    from schemas.job import UrlListSource

    table = pa.table({"url": ["http://a/1.jpg", "https://b/2.png", None], "text": ["one, with comma", 'two "quoted"', "three"]})
    pq.write_table(table, tmp_path / "l.parquet")
    pacsv.write_csv(table, tmp_path / "l.csv")
    pacsv.write_csv(table, tmp_path / "l.tsv", pacsv.WriteOptions(delimiter="\t"))
    (tmp_path / "l.jsonl").write_text("".join(json.dumps(r) + "\n" for r in table.to_pylist()))
    results = [read_url_list(UrlListSource(type="url_list", path=str(tmp_path / f"l.{ext}"), url_column="url", caption_column="text"), "sources.0")
               .select(["row", "uri", "alt"]).to_pylist() for ext in ("parquet", "csv", "tsv", "jsonl")]
    assert all(r == results[0] for r in results)
    assert results[0][1] == {"row": 1, "uri": "https://b/2.png", "alt": 'two "quoted"'}

    from curate.jobs import JobError

    with pytest.raises(JobError, match="sources.0.url_column: column 'URL' not in"):
        read_url_list(UrlListSource(type="url_list", path=str(tmp_path / "l.csv")), "sources.0")


def test_every_source_type_has_one_datasource_and_a_url_list_opens_its_rows(tmp_path):
    import typing

    from curate.sources import DATASOURCES, datasource
    from schemas.job import Job, Source

    types = {t.model_fields["type"].annotation.__args__[0] for t in typing.get_args(typing.get_args(Source)[0])}
    assert set(DATASOURCES) == types == {"folder", "s3", "url_list", "webdataset"}
    (tmp_path / "l.csv").write_text("URL,TEXT\nhttp://a/1.jpg,one\nhttp://user:pw@b/2.png,\n")
    job = Job.model_validate({"name": "t", "out": str(tmp_path / "o"), "sources": [{"type": "url_list", "path": str(tmp_path / "l.csv")}],
                              "caption": {"captioners": [{"name": "c", "model": "m"}]}})
    source = datasource(job, 0)
    rows = source.list().to_pylist()
    assert [(r["row"], r["uri"], r["alt"]) for r in rows] == [(0, "http://a/1.jpg", "one"), (1, "http://user:pw@b/2.png", None)]
    opened = source.open(rows[1])
    assert (opened.uri, opened.alt, opened.error, opened.reader.url) == ("http://***@b/2.png", None, None, "http://user:pw@b/2.png")


def test_redirect_to_metadata_is_refused_even_when_private_networks_are_allowed():
    import asyncio

    from curate.sources.netsafety import address_verdict, check_url, redact
    from schemas.reasons import InputError

    assert address_verdict("169.254.169.254", allow_private=True)
    assert address_verdict("::ffff:169.254.169.254", allow_private=True)
    assert address_verdict("127.0.0.1", allow_private=True) is None
    assert address_verdict("10.1.2.3", allow_private=False)
    assert address_verdict("8.8.8.8", allow_private=False) is None  # a verdict only: nothing is contacted
    with pytest.raises(InputError, match="scheme 'file'"):
        asyncio.run(check_url("file:///etc/passwd", True))
    assert redact("https://user:pw@host.example:8443/a.jpg?x=1") == "https://***@host.example:8443/a.jpg?x=1"


# ---- the same files as a folder, an S3 prefix and webdataset shards -------------------------

def write_tar(path_or_buf, names: list[str], folder: Path) -> None:
    with tarfile.open(fileobj=path_or_buf, mode="w") if not isinstance(path_or_buf, Path) else tarfile.open(path_or_buf, "w") as tf:
        for name in names:
            stem = name.rsplit(".", 1)[0]
            members = [(name, (folder / name).read_bytes()), (f"{stem}.txt", (folder / f"{stem}.txt").read_bytes()),
                       (f"{stem}.json", json.dumps({"original": name}).encode())]
            for member, data in members:
                info = tarfile.TarInfo(member)
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))


def test_folder_s3_and_webdataset_sources_agree(s3_server, tiny_vlm, ray_cluster, tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(5)
    names = []
    for i, (w, h, fmt) in enumerate([(1024, 1024, "JPEG"), (1536, 1024, "PNG"), (1024, 2048, "JPEG"), (1280, 1024, "WEBP"), (600, 400, "JPEG")]):
        img, alt = render(rng, w, h)
        name = f"pic_{i}.{ {'JPEG': 'jpg', 'PNG': 'png', 'WEBP': 'webp'}[fmt] }"
        img.save(folder / name, fmt)
        (folder / f"pic_{i}.txt").write_text(alt)
        names.append(name)
    s3 = s3_server.client()
    s3.create_bucket(Bucket="curate-src")
    for p in folder.iterdir():
        s3.put_object(Bucket="curate-src", Key=f"set/{p.name}", Body=p.read_bytes())
    write_tar(tmp_path / "local-000.tar", names[:3], folder)
    buf = io.BytesIO()
    write_tar(buf, names[3:], folder)
    s3.put_object(Bucket="curate-src", Key="shards/remote-000.tar", Body=buf.getvalue())

    opts = {"endpoint_url": s3_server.endpoint}
    job = {
        "name": "three", "out": str(tmp_path / "out"),
        "sources": [{"type": "folder", "path": str(folder)},
                    {"type": "s3", "prefix": "s3://curate-src/set/", "s3": opts},
                    {"type": "webdataset", "paths": [str(tmp_path / "local-*.tar"), "s3://curate-src/shards/"], "s3": opts}],
        "dedup": {"exact": False, "near": False},
        "caption": {"tokenizer": str(tiny_vlm.parent / "tiny-t5-tokenizer"), "captioners": [{"name": "dense", "model": str(tiny_vlm), "preset": "greedy",
                                    "generation": {"max_new_tokens": 6}, "image_side": 128}]},
        "hallucination": {"enabled": False},
    }
    job_path = tmp_path / "three.yaml"
    job_path.write_text(yaml.safe_dump(job))
    result = run_job(load_job(job_path), job_path)
    assert result.manifest["counts"]["inputs"] == 15
    assert result.manifest["counts"]["rejected"] == {"too_small": 3}

    def name_of(row):
        if row["source"].startswith("webdataset"):
            return f"{row['url'].rsplit('#', 1)[1]}.{row['format']}"
        return row["url"].rsplit("/", 1)[1]

    index = pq.read_table(result.run_dir / "index").to_pylist()
    # scoring off: no scores, an empty evidence table, and the report still builds
    assert all(r["hallucination"] is None for r in index)
    assert pq.read_table(result.run_dir / "report" / "hallucinations.parquet").num_rows == 0
    assert "Written samples" in (result.run_dir / "report" / "index.html").read_text()
    by_source: dict[str, dict[str, dict]] = {}
    for row in index:
        by_source.setdefault(row["source"].split(":")[0], {})[name_of(row)] = row
    assert set(by_source) == {"folder", "s3", "webdataset"}
    assert set(by_source["folder"]) == set(by_source["s3"]) == set(by_source["webdataset"]) == set(names[:4])
    skip = {"key", "source", "url", "shard", "member", "member_offset", "dup_cluster"}
    for name in names[:4]:
        rows = [{k: v for k, v in by_source[s][name].items() if k not in skip} for s in ("folder", "s3", "webdataset")]
        assert rows[0] == rows[1] == rows[2], name
    # the shards hold the original bytes of upright RGB JPEGs, whichever source they came from
    for tar in (result.run_dir).glob("ar1024/*/*.tar"):
        for sample in wds.WebDataset(str(tar), shardshuffle=False, empty_check=False):
            meta = json.loads(sample["json"])
            original = (folder / name_of(meta)).read_bytes()
            assert (sample["jpg"] == original) == (meta["format"] == "jpg") and meta["stored_as"] == (
                "original" if meta["format"] == "jpg" else "reencoded")
    # credentials appear nowhere in the run's files
    for p in result.run_dir.rglob("*"):
        if p.is_file():
            assert SECRET_KEY.encode() not in p.read_bytes(), p
