"""Hostile input: files, tar members and URLs a stranger made, all through ONE pipeline run.

Each input of the generated corpus names the exact outcome it must get (written, or its
reason code). The run must also leave everything outside its output folder as it was, and no
file it writes may hold a secret from the environment (one is planted below, before any Ray
worker starts), the machine's password file, or bytes from outside the source folder.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import socket
import tarfile
import uuid
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml
from PIL import Image
from skimage import data as skdata

from curate.jobs import load_job
from curate.runner import run_job
from curate.sample import render
from tests.conftest import SECRET_KEY
from tests.servers.http_server import serve

# planted at import (collection), so the Ray workers started later inherit it
PLANTED = f"planted-{uuid.uuid4().hex}"
os.environ["CURATE_HOSTILE_SECRET"] = PLANTED
CANARY = f"curate-hostile-{uuid.uuid4().hex[:8]}"   # a tar member name that must not become a file
MAX_BYTES = 4 << 20


def jpeg(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90, **kw)
    return buf.getvalue()


class Corpus:
    """Writes hostile inputs and records what each must become."""

    def __init__(self, base: Path):
        self.base = base
        self.src, self.outside, self.shards, self.web = (base / n for n in ("src", "outside", "shards", "web"))
        for d in (self.src, self.outside, self.shards, self.web):
            d.mkdir()
        self.rng = np.random.default_rng(17)
        self.expect: dict[str, str] = {}      # uri -> "written" or reason code
        self.sidecar: dict[str, str] = {}     # uri -> reason code of its refused alt sidecar
        self.alt: dict[str, str] = {}         # uri -> the alt text it must carry
        self.changing: dict[int, Path] = {}   # URL row -> the file its second read must return

    def picture(self) -> bytes:
        return jpeg(render(self.rng, 1024, 1024)[0])

    def file(self, name: str | bytes, outcome: str, data: bytes | None = None) -> Path:
        path = self.src / os.fsdecode(name)
        path.write_bytes(self.picture() if data is None else data)
        self.expect[path.as_uri()] = outcome
        return path

    def link(self, name: str, target: str | Path, outcome: str) -> None:
        path = self.src / name
        os.symlink(target, path)
        self.expect[path.as_uri()] = outcome


def build_folder(c: Corpus) -> None:
    src = c.src
    (c.outside / "o.jpg").write_bytes(c.picture())
    (c.outside / "secret.txt").write_text(f"outside secret {PLANTED}")
    (src / "sub").mkdir()
    inner = src / "sub" / "inner.jpg"
    inner.write_bytes(c.picture())
    c.expect[inner.as_uri()] = "written"
    photo = Image.fromarray(skdata.astronaut()).resize((1024, 1024), Image.Resampling.LANCZOS)   # a real photograph
    c.file("astronaut.jpg", "written", jpeg(photo))
    (src / "astronaut.txt").write_text("an astronaut in a white suit")
    c.alt[(src / "astronaut.jpg").as_uri()] = "an astronaut in a white suit"
    c.file(b"caf\xe9-latin1.jpg", "written")                         # a name that is not UTF-8
    c.file("new\nline.jpg", "written")
    mpo = io.BytesIO()
    render(c.rng, 1024, 1024)[0].save(mpo, "MPO", save_all=True, append_images=[render(c.rng, 1024, 1024)[0]])
    c.file("camera.jpg", "written", mpo.getvalue())                  # a camera's multi-picture JPEG
    # links and special files: listed, never opened
    c.link("escape.jpg", c.outside / "o.jpg", "unsafe_path")
    c.link("passwd.jpg", "/etc/passwd", "unsafe_path")
    c.link("environ.jpg", "/proc/self/environ", "unsafe_path")
    c.link("zero.jpg", "/dev/zero", "unsafe_path")
    c.link("updir.jpg", "../outside/o.jpg", "unsafe_path")
    c.link("dangling.jpg", "nowhere.jpg", "broken_link")
    c.link("loop_a.jpg", "loop_b.jpg", "broken_link")
    c.link("loop_b.jpg", "loop_a.jpg", "broken_link")
    c.link("self.jpg", "self.jpg", "broken_link")
    c.link("inside.jpg", "sub/inner.jpg", "written")
    os.mkfifo(src / "pipe.jpg")
    c.expect[(src / "pipe.jpg").as_uri()] = "not_a_file"
    c.link("to_pipe.jpg", "pipe.jpg", "not_a_file")
    c.link("to_dir.jpg", "sub", "not_a_file")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(src / "sock.jpg"))
    sock.close()
    c.expect[(src / "sock.jpg").as_uri()] = "not_a_file"
    c.file(".hidden.jpg", "hidden_file")
    os.symlink(c.outside, src / "linked_folder")                     # not entered: nothing listed from it
    (src / ".git").mkdir()
    (src / ".git" / "packed.jpg").write_bytes(c.picture())           # a dot-folder is not entered
    # broken content
    c.file("empty.jpg", "empty_file", b"")
    c.file("text.jpg", "not_an_image", b"root:x:0:0:root:/root:/bin/bash\n" * 50)
    gif = io.BytesIO()
    Image.new("RGB", (1100, 1100), "red").save(gif, "GIF")
    c.file("anim.jpg", "unsupported_format", gif.getvalue())
    c.file("cut.jpg", "decode_error", c.picture()[:20000])
    bomb = io.BytesIO()
    Image.new("1", (20000, 20000)).save(bomb, "PNG")
    c.file("bomb.png", "decompression_bomb", bomb.getvalue())
    c.file("small.jpg", "too_small", jpeg(render(c.rng, 300, 200)[0]))
    c.file("huge.jpg", "too_many_bytes", b"\xff\xd8\xff" + bytes(MAX_BYTES))
    # alt-text sidecars that must not be read: the image stays, without alt text
    for name, make, reason in (
        ("environ_alt", lambda p: os.symlink("/proc/self/environ", p), "unsafe_path"),
        ("passwd_alt", lambda p: os.symlink("/etc/passwd", p), "unsafe_path"),
        ("outside_alt", lambda p: os.symlink(c.outside / "secret.txt", p), "unsafe_path"),
        ("zero_alt", lambda p: os.symlink("/dev/zero", p), "unsafe_path"),
        ("fifo_alt", os.mkfifo, "not_a_file"),
        ("dangling_alt", lambda p: os.symlink("gone.txt", p), "broken_link"),
        ("big_alt", lambda p: p.write_bytes(b"word " * (2 << 20)), "too_many_bytes"),
    ):
        image = c.file(f"{name}.jpg", "written")
        make(src / f"{name}.txt")
        c.sidecar[image.as_uri()] = reason


def member(tf: tarfile.TarFile, name: str | bytes, data: bytes) -> None:
    info = tarfile.TarInfo(name if isinstance(name, str) else name.decode("utf-8", "surrogateescape"))
    info.size = len(data)
    tf.addfile(info, io.BytesIO(data))


def build_tars(c: Corpus) -> None:
    path = c.shards / "hostile-000.tar"
    uri = lambda key: f"{path}#{key}"   # noqa: E731
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT, encoding="utf-8", errors="surrogateescape") as tf:
        def sample(key: str | bytes, outcome: str, **members: bytes) -> None:
            for ext, data in members.items():
                member(tf, (key + "." if isinstance(key, str) else key + b".") + (ext.encode() if isinstance(key, bytes) else ext), data)
            shown = key if isinstance(key, str) else key.decode("utf-8", "backslashreplace")
            c.expect[uri(shown)] = outcome

        sample("plain", "written", jpg=c.picture(), txt=b"a plain sample", json=b'{"id": 1}')
        c.alt[uri("plain")] = "a plain sample"
        sample(b"caf\xe9", "written", jpg=c.picture())                                # member name not UTF-8
        sample("deep", "bad_metadata", jpg=c.picture(), json=b"[" * 30000 + b"]" * 30000)
        sample("nested", "bad_metadata", jpg=c.picture(), json=b'{"a":' * 40 + b"1" + b"}" * 40)
        sample("badjson", "bad_metadata", jpg=c.picture(), json=b"{not json")
        sample("latin1json", "bad_metadata", jpg=c.picture(), json=b'{"t": "caf\xe9"}')
        sample("bigjson", "bad_metadata", jpg=c.picture(), json=b'{"x": "' + b"y" * (100 << 10) + b'"}')
        sample("bigint", "bad_metadata", jpg=c.picture(), json=b"1" * 5000)
        sample("bigtxt", "written", jpg=c.picture(), txt=b"word " * 30000)
        c.sidecar[uri("bigtxt")] = "too_many_bytes"
        sample("noimage", "not_an_image", txt=b"only text", json=b"{}")
        sample("toobig", "too_many_bytes", jpg=b"\xff\xd8\xff" + bytes(MAX_BYTES))
        sample(f"../../{CANARY}", "written", jpg=c.picture())                         # traversal: identity only
        sample(f"/tmp/{CANARY}", "written", jpg=c.picture())
        many = {f"x{i}.bin": b"z" for i in range(70)}
        sample("crowd", "too_many_members", jpg=c.picture(), **many)
        # unused members are skipped unread, however large (the 20 x 48 MiB sample)
        sample("ballast", "written", jpg=c.picture(), **{f"pad{i}.bin": bytes(1 << 20) for i in range(12)})
        link = tarfile.TarInfo("linked.jpg")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tf.addfile(link)                                                               # not a file member: skipped
        sample("linked", "not_an_image", txt=b"the image member was a symlink")
    # a tar cut off inside its second sample: the first is kept, the rest fails as one input
    cut = c.shards / "hostile-001.tar"
    first = c.picture()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        member(tf, "first.txt", b"the first sample")   # each unit keeps one alt text (issue 13 is fixed elsewhere)
        member(tf, "first.jpg", first)
        member(tf, "second.jpg", c.picture())
    second_data = 1024 + 512 + -(-len(first) // 512) * 512 + 512   # txt, header, padded data, next header
    cut.write_bytes(buf.getvalue()[: second_data + 1000])
    c.alt[f"{cut}#first"] = "the first sample"
    c.expect[f"{cut}#first"] = "written"
    c.expect[f"{cut}#broken@1"] = "read_error"


def build_urls(c: Corpus, base: str) -> list[str]:
    web = c.web
    names = {}
    for n in ("plain", "gz", "old", "new", "old2", "new2", "named"):
        names[n] = f"{n}.jpg"
        (web / f"{n}.jpg").write_bytes(c.picture())
    port = base.rsplit(":", 1)[1]
    rows = [
        (f"{base}/img/plain.jpg", "written"),
        (f"{base}/gzip/gz.jpg", "not_an_image"),                    # body taken as sent: gzip bytes
        (f"{base}/changing/old.jpg/new.jpg", "written"),            # If-Range: the new file, whole
        (f"{base}/changing-plain/old2.jpg/new2.jpg", "written"),    # no validator: fetched whole again
        (f"http://localhost:{port}/img/named.jpg", "written"),     # a name: resolved once, pinned
        (f"{base}/img/" + "a" * 100_000 + ".jpg", "bad_url"),
        ("http://[::1/x.jpg", "bad_url"),
        ("http://" + "a" * 300 + ".example/x.jpg", "bad_url"),
        (f"{base}/to?http://100.100.100.200/latest/meta-data/", "blocked_address"),
        (f"{base}/to?http://[fd00:ec2::254]/latest/meta-data/", "blocked_address"),
        (f"{base}/to?http://[::ffff:169.254.169.254]/latest/", "blocked_address"),
        ("http://169.254.169.254/latest/meta-data/iam/", "blocked_address"),
        ("http://[fd20:ce::254]/computeMetadata/v1/", "blocked_address"),
        (f"http://0.0.0.0:{port}/img/plain.jpg", "blocked_address"),
        (f"{base}/to?file:///etc/passwd", "bad_scheme"),
        (base.replace("://", "://user:Hostile-Pa55@") + "/missing", "http_error"),
    ]
    for i, (_, outcome) in enumerate(rows):
        c.expect[("url", i)] = outcome
    c.changing = {2: web / "new.jpg", 3: web / "new2.jpg"}
    return [u for u, _ in rows]


def snapshot(*roots: Path) -> dict[str, tuple]:
    """Every entry under `roots` (links not followed): kind, size, mtime, target."""
    out = {}
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            for name in dirnames + filenames:
                p = Path(dirpath) / name
                st = p.lstat()
                out[str(p)] = (st.st_mode, st.st_size, st.st_mtime_ns, os.readlink(p) if p.is_symlink() else None)
    return out


@pytest.fixture(scope="module")
def hostile(tmp_path_factory, tiny_vlm, ray_cluster):
    base = tmp_path_factory.mktemp("hostile")
    c = Corpus(base)
    build_folder(c)
    build_tars(c)
    with serve(c.web) as web:
        urls = build_urls(c, web.base)
        (base / "urls.jsonl").write_text("".join(json.dumps({"url": u, "text": "a plain url" if i == 0 else None}) + "\n"
                                                 for i, u in enumerate(urls)))
        job = {
            "name": "hostile", "out": str(base / "out"),
            "sources": [{"type": "folder", "path": str(c.src)},
                        {"type": "webdataset", "paths": [str(c.shards / "hostile-*.tar")]},
                        {"type": "url_list", "path": str(base / "urls.jsonl"), "url_column": "url", "caption_column": "text"}],
            "units": {"size": 100},
            "ingest": {"max_bytes": MAX_BYTES},
            "fetch": {"allow_private_networks": True, "read_timeout_s": 2, "total_timeout_s": 20, "retries": 0,
                      "header_bytes": 4096},
            "dedup": {"exact": False, "near": False},
            "caption": {"tokenizer": str(tiny_vlm.parent / "tiny-t5-tokenizer"), "captioners": [{"name": "dense", "model": str(tiny_vlm), "preset": "greedy",
                                        "generation": {"max_new_tokens": 6, "min_new_tokens": 6}, "image_side": 64, "batch_size": 16}]},
            "hallucination": {"enabled": False},
        }
        job_path = base / "job.yaml"
        job_path.write_text(yaml.safe_dump(job))
        before = snapshot(c.src, c.outside, c.shards, job_path, base / "urls.jsonl")
        result = run_job(load_job(job_path), job_path)
        after = snapshot(c.src, c.outside, c.shards, job_path, base / "urls.jsonl")
        requests = web.requests()
    return c, result, before, after, urls, requests


def ingested(run: Path) -> list[dict]:
    from curate.storage import read_parquet_dir
    from schemas.record import INGESTED

    return read_parquet_dir(run / "_work" / "ingest", INGESTED).to_pylist()


def outcomes(result, urls: list[str]) -> dict:
    """uri -> written / reason, for every input; URL-list inputs keyed by their row."""
    run = result.run_dir
    index = pq.read_table(run / "index").to_pylist()
    rejects = pq.read_table(run / "rejects").to_pylist()
    got = {}
    from curate.sources.base import key_for

    row_of = {key_for(f"{run.parent / 'urls.jsonl'}#{i}"): i for i in range(len(urls))}
    for r in index:
        got[("url", row_of[r["key"]]) if r["key"] in row_of else r["url"]] = "written"
    for r in rejects:
        got[("url", row_of[r["key"]]) if r["key"] in row_of else r["uri"]] = r["reason"]
    return got


def test_every_hostile_input_gets_its_exact_outcome(hostile):
    c, result, _, _, urls, _ = hostile
    got = outcomes(result, urls)
    assert len(c.expect) == 68
    assert {k: got.get(k) for k in c.expect} == c.expect
    assert set(got) == set(c.expect), "an input was counted that the corpus does not hold"
    counts = result.manifest["counts"]
    assert counts["inputs"] == len(c.expect)


def test_refused_sidecars_leave_the_image_without_alt_text(hostile):
    c, result, *_ = hostile
    staged = {r["uri"]: r for r in ingested(result.run_dir)}
    index = {r["url"]: r for r in pq.read_table(result.run_dir / "index").to_pylist()}
    assert len(c.sidecar) == 8
    for uri, reason in c.sidecar.items():
        assert staged[uri]["status"] == "staged"
        assert staged[uri]["alt"] is None
        assert staged[uri]["detail"].startswith(f"alt {'sidecar' if uri.startswith('file:') else 'text'} refused ({reason})"), uri
        assert dict(index[uri]["captions"]).get("alt") is None
    for uri, alt in c.alt.items():
        assert dict(index[uri]["captions"])["alt"] == alt


def test_no_secret_and_nothing_from_outside_reaches_the_output(hostile):
    c, result, before, after, _, _ = hostile
    assert before == after, "the run changed something outside its output folder"
    passwd = Path("/etc/passwd").read_bytes().split(b"\n", 1)[0]
    outside = hashlib.sha256((c.outside / "o.jpg").read_bytes()).hexdigest()
    needles = [PLANTED.encode(), SECRET_KEY.encode(), passwd, b"Hostile-Pa55", outside.encode()]
    files = [p for p in result.run_dir.rglob("*") if p.is_file() and "_work/inputs" not in str(p)]
    assert len(files) > 20
    for p in files:
        data = p.read_bytes()
        for needle in needles:
            assert needle not in data, (p, needle[:20])
    index = pq.read_table(result.run_dir / "index").to_pylist()
    assert outside not in {r["sha256"] for r in index}
    assert not list(Path("/tmp").glob(f"{CANARY}*")) and not list(Path.cwd().parent.parent.glob(f"{CANARY}*"))


def test_crawl_is_pinned_decodes_nothing_and_ties_its_two_reads(hostile):
    c, result, _, _, urls, requests = hostile
    from curate.sources.base import key_for

    index = {r["key"]: r for r in pq.read_table(result.run_dir / "index").to_pylist()}
    for row, new in c.changing.items():   # a file that changed between the reads: the new one, whole
        written = index[key_for(f"{c.base / 'urls.jsonl'}#{row}")]
        assert written["sha256"] == hashlib.sha256(new.read_bytes()).hexdigest()
    changing = [r for r in requests if r["path"].startswith("/changing/")]
    assert [r["if_range"] is not None for r in changing] == [False, True]
    assert [r["status"] for r in changing] == [206, 200]
    named = [r for r in requests if r["path"] == "/img/named.jpg"]
    assert named and all(r["host"] == f"localhost:{urls[4].split(':')[2].split('/')[0]}" for r in named)
    gz = [r for r in pq.read_table(result.run_dir / "rejects").to_pylist() if r["uri"].endswith("/gzip/gz.jpg")]
    assert gz[0]["detail"].startswith("unrecognised bytes starting b'\\x1f\\x8b")


# ---- targeted checks, no Ray --------------------------------------------------------------

@pytest.mark.parametrize(("ip", "strict", "private_allowed"), [
    ("8.8.8.8", None, None),
    ("2606:4700:4700::1111", None, None),
    ("127.0.0.1", "loopback or private address", None),
    ("::1", "loopback or private address", None),
    ("10.1.2.3", "loopback or private address", None),
    ("fc00::7", "loopback or private address", None),
    ("100.64.3.4", "loopback or private address", None),          # shared address space
    ("100.100.100.200", "cloud metadata address", "cloud metadata address"),   # Alibaba, inside 100.64/10
    ("169.254.169.254", "cloud metadata address", "cloud metadata address"),
    ("169.254.170.2", "cloud metadata address", "cloud metadata address"),     # AWS ECS
    ("168.63.129.16", "cloud metadata address", "cloud metadata address"),     # Azure WireServer (public range)
    ("192.0.0.192", "cloud metadata address", "cloud metadata address"),       # Oracle Classic
    ("fd00:ec2::254", "cloud metadata address", "cloud metadata address"),     # AWS over IPv6, in fc00::/7
    ("fd20:ce::254", "cloud metadata address", "cloud metadata address"),      # GCP over IPv6
    ("::ffff:169.254.169.254", "cloud metadata address", "cloud metadata address"),
    ("2002:a9fe:a9fe::1", "cloud metadata address", "cloud metadata address"),  # 6to4
    ("64:ff9b::a9fe:a9fe", "cloud metadata address", "cloud metadata address"),  # NAT64
    ("169.254.1.1", "link-local (cloud metadata) address", "link-local (cloud metadata) address"),
    ("fe80::1%eth0", "link-local (cloud metadata) address", "link-local (cloud metadata) address"),
    ("0.0.0.0", "reserved address", "reserved address"),
    ("0.1.2.3", "reserved address", "reserved address"),
    ("224.0.0.1", "reserved address", "reserved address"),
    ("240.0.0.1", "reserved address", "reserved address"),
])
def test_one_allow_list_and_an_always_deny_list(ip, strict, private_allowed):
    from curate.sources.netsafety import address_verdict

    assert address_verdict(ip, allow_private=False) == strict
    assert address_verdict(ip, allow_private=True) == private_allowed


def test_urls_are_judged_once_and_the_connection_goes_to_the_judged_address():
    import asyncio

    import httpx

    from curate.sources.http import pinned_request
    from curate.sources.netsafety import check_url
    from schemas.reasons import InputError

    for url, reason in (("http://x/" + "a" * 9000, "bad_url"), ("http://[::1/x.jpg", "bad_url"),
                        ("http://" + "a" * 300 + ".example/x", "bad_url"), ("gopher://x/", "bad_scheme")):
        with pytest.raises(InputError) as err:
            asyncio.run(check_url(url, True))
        assert err.value.reason == reason, url
    assert asyncio.run(check_url("http://localhost:8080/a.jpg", True)) == ["127.0.0.1"]
    client = httpx.AsyncClient()
    req = pinned_request(client, "https://user:pw@images.example:8443/a.jpg?x=1", "93.184.215.14", {"Range": "bytes=0-9"})
    assert str(req.url) == "https://user:pw@93.184.215.14:8443/a.jpg?x=1"
    assert req.headers["host"] == "images.example:8443" and req.headers["range"] == "bytes=0-9"
    assert req.extensions["sni_hostname"] == "images.example"   # certificate checked against the name
    v6 = pinned_request(client, "http://images.example/a.jpg", "2606:4700::1", {})
    assert v6.url.host == "2606:4700::1" and v6.headers["host"] == "images.example"
    asyncio.run(client.aclose())


def test_yaml_alias_bombs_and_giant_job_files_are_refused_fast(tmp_path):
    import time

    from curate.jobs import MAX_JOB_BYTES, JobError, load_job

    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [{','.join([f'*{prev}'] * 9)}]")
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("\n".join(lines) + "\n")
    assert bomb.stat().st_size < 500
    (tmp_path / "loop.yaml").write_text("a: &a [*a]\n")
    (tmp_path / "big.yaml").write_text("name: x\n" + "#" * MAX_JOB_BYTES)
    for name, message in (("bomb", "once aliases are expanded"), ("loop", "once aliases are expanded"), ("big", "larger than 1024 KiB")):
        t = time.perf_counter()
        with pytest.raises(JobError, match=message):
            load_job(tmp_path / f"{name}.yaml")
        assert time.perf_counter() - t < 2, name


def test_index_is_swapped_whole_and_killed_commits_are_swept(tmp_path):
    import pyarrow as pa

    from curate.storage import RunDir, tmp_name, write_partitioned_atomic

    run = RunDir(tmp_path / "run")
    write_partitioned_atomic(run.index, pa.table({"bucket": ["a", "b"], "v": [1, 2]}), "bucket")
    write_partitioned_atomic(run.index, pa.table({"bucket": ["c"], "v": [3]}), "bucket")
    assert sorted(p.name for p in run.index.iterdir()) == ["c"]
    assert pq.read_table(run.index / "c" / "part-0.parquet")["v"].to_pylist() == [3]
    assert not list(tmp_path.rglob(".*.tmp"))                      # the old folder went, nothing left beside
    # what a killed commit leaves: a temp file beside a unit's parquet, a half-built index folder
    (run.ingest).mkdir(parents=True)
    tmp_name(run.ingest / "s00u000001.parquet").write_bytes(b"PAR1 half")
    half = tmp_name(run.index)
    (half / "x").mkdir(parents=True)
    (half / "x" / "part-0.parquet").write_bytes(b"half")
    (run.ingest / "s00u000000.parquet").write_bytes(b"committed")
    assert run.sweep() == 2
    assert sorted(p.name for p in run.root.rglob("*") if p.is_file()) == ["part-0.parquet", "s00u000000.parquet"]


def test_s3_output_is_claimed_by_a_config_marker_before_any_write(s3_server, tmp_path):
    from curate.jobs import JobError
    from curate.outputs import MARKER, S3Output
    from schemas.job import S3Options

    s3 = s3_server.client()
    s3.create_bucket(Bucket="claims")
    opts = S3Options(endpoint_url=s3_server.endpoint)
    out = S3Output("s3://claims/run", opts, 5 << 20)
    out.claim("hash-a")
    assert out.list_keys() == [MARKER]
    out.claim("hash-a")                                    # a resumed run of the same job
    with pytest.raises(JobError, match="different job configuration"):
        out.claim("hash-b")
    s3.put_object(Bucket="claims", Key="done/manifest.json", Body=b'{"config_hash": "hash-a"}')   # published before markers
    S3Output("s3://claims/done", opts, 5 << 20).claim("hash-a")
    with pytest.raises(JobError, match="different job configuration"):
        S3Output("s3://claims/done", opts, 5 << 20).claim("hash-c")
    s3.put_object(Bucket="claims", Key="theirs/ar1024/1.0/000000.tar", Body=b"someone's shard")
    with pytest.raises(JobError, match="holds objects but no"):
        S3Output("s3://claims/theirs", opts, 5 << 20).claim("hash-a")
    assert [o["Key"] for o in s3.list_objects_v2(Bucket="claims", Prefix="theirs/")["Contents"]] == ["theirs/ar1024/1.0/000000.tar"]


def test_s3_second_read_is_tied_to_the_first(s3_server):
    import asyncio

    from curate.sources.s3 import S3Reader
    from schemas.job import S3Options
    from schemas.reasons import InputError

    s3 = s3_server.client()
    s3.create_bucket(Bucket="tied")
    old, new = os.urandom(50_000), os.urandom(50_000)
    opts = S3Options(endpoint_url=s3_server.endpoint)

    async def read(change: bool) -> bytes:
        s3.put_object(Bucket="tied", Key="x.jpg", Body=old)
        reader = S3Reader("s3://tied/x.jpg", len(old), opts, 1 << 20)
        assert await reader.head(4096) == old[:4096]
        if change:
            s3.put_object(Bucket="tied", Key="x.jpg", Body=new)
        return await reader.rest()

    assert asyncio.run(read(change=False)) == old
    with pytest.raises(InputError, match="changed between the header read and the full read"):
        asyncio.run(read(change=True))
