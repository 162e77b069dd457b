"""The run's HTML report: built from a synthetic finished run (real images in real webdataset
tars, an index, rejects, hallucination evidence, a manifest) without Ray or the pipeline, then
checked as HTML and in a real headless Chromium (skipped when none is installed, unless
CURATE_REQUIRE_BROWSER=1)."""

from __future__ import annotations

import io
import json
import os
import random
import re
import shutil
import tarfile
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from PIL import Image

from curate.report import (
    HIGHLIGHTS,
    Span,
    align_spans,
    bucket_counts,
    highlight,
    rebuild_report,
    render_html,
    write_report,
)
from curate.storage import RunDir, write_json_atomic, write_parquet_atomic
from schemas.record import HALLUCINATION, INDEX, REJECTS, rows_to_table

H_STRUCT = pa.struct([("score", pa.float32()), ("flags", pa.list_(pa.string()))])
XSS = '<script>alert("pwned")</script> a cat on a mat & a dog'
TRICKY = 'A <b>bold</b> "sign" & a red car. The sign says STOP. The sign says STOP.'
COLOURS = [(220, 40, 40), (40, 160, 60), (40, 80, 220), (230, 200, 30), (150, 60, 200), (30, 200, 200),
           (240, 120, 20), (120, 120, 120), (200, 80, 140), (90, 50, 20), (10, 10, 10), (250, 250, 250)]
WORDS = ["apple", "harbour", "meadow", "zebra", "lantern", "glacier", "violin", "canyon", "orchid", "falcon", "pebble", "tundra"]
BUCKETS = ["0.75", "1.0", "1.33"]


# --------------------------------------------------------------------------- a synthetic run


def _image(i: int, fmt: str) -> tuple[bytes, int, int]:
    w, h = (96, 72) if i % 3 == 0 else (64, 64) if i % 3 == 1 else (60, 80)
    img = Image.new("RGBA" if fmt == "png" else "RGB", (w, h), COLOURS[i % len(COLOURS)])
    for x in range(0, w, 8):  # stripes, so thumbnails are not flat
        for y in range(h):
            img.putpixel((x, y), (255, 255, 255, 128) if fmt == "png" else (255, 255, 255))
    buf = io.BytesIO()
    img.save(buf, "PNG" if fmt == "png" else "JPEG", quality=90)
    return buf.getvalue(), w, h


def _add(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime = len(data), 946684800
    tf.addfile(info, io.BytesIO(data))


def make_run(root: Path, *, hallucination_column: bool = True, evidence: bool = True) -> dict:
    """A finished run of 12 written samples (3 buckets, 2 sources, one image missing from its
    shard), 3 rejected and 1 failed input. Returns what the tests check against."""
    run = RunDir(root)
    rows, members = [], {}
    for i, word in enumerate(WORDS):
        key = f"k{i:02d}"
        fmt = "png" if i in (4, 7) else "jpg"
        data, w, h = _image(i, fmt)
        bucket = BUCKETS[i % 3]
        caption = TRICKY if i == 0 else XSS if i == 1 else f"A photo of a {word} in soft light, number {i}."
        row = {"key": key, "source": "web" if i % 2 else "local", "url": f"file:///corpus/{key}.{fmt}", "width": w,
               "height": h, "format": fmt, "bytes": len(data), "is_4k": i == 2, "ratio": h / w, "bucket": bucket,
               "bucket_hw": [1024, 1024], "sha256": "0" * 64, "phash": "0" * 16, "aesthetic": 4.0 + i / 4,
               "captions": [("vlm", caption)], "caption": caption, "caption_tokens": 10 + 3 * i, "caption_cut": "",
               "dup_cluster": None, "shard": f"ar1024/{bucket}/000000.tar", "member": f"{key}.{fmt}"}
        rows.append(row)
        if i != 11:  # k11's image is missing from its shard
            members.setdefault(row["shard"], []).append((row, data))
    for rel, items in members.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        with tarfile.open(root / rel, "w") as tf:
            for row, data in items:
                _add(tf, row["member"], data)
                _add(tf, f"{row['key']}.json", json.dumps({"key": row["key"]}).encode())
    # an older run's index has no `hallucination` column: build without it, then add it
    index = rows_to_table(rows, pa.schema([f for f in INDEX if f.name != "hallucination"]))
    scores = {f"k{i:02d}": round(0.95 - 0.09 * i, 2) for i in range(10)}
    flags = {"k00": ["weak_sentences", "ungrounded", "text_not_found", "repetition"], "k01": ["ungrounded"],
             "k03": ["boilerplate"], "k05": ["weak_sentences"]}
    if hallucination_column:
        hall = [({"score": scores[r["key"]], "flags": flags.get(r["key"], [])} if r["key"] in scores
                 else {"score": 0.5, "flags": ["from_index"]} if r["key"] == "k10" else None) for r in rows]
        index = index.append_column(pa.field("hallucination", H_STRUCT), pa.array(hall, H_STRUCT))
    for bucket in BUCKETS:  # index/<bucket>/part-0.parquet
        part = index.filter(pc.equal(index["bucket"], bucket))
        write_parquet_atomic(root / "index" / bucket / "part-0.parquet", part)

    ev = []
    for key, score in scores.items():
        caption = rows[int(key[1:])]["caption"]
        e = {"key": key, "captioner": "vlm", "score": score, "flags": flags.get(key, []), "sentences": [],
             "phrases": [], "text_claims": [], "ocr_text": "", "repeated_spans": [], "loop": False, "truncated": False,
             "boilerplate": "", "language": "en", "repeated_ngrams": 0.0}
        if key == "k00":
            # sentences: [0,34) "A <b>..car." weak; [35,53) strong; [54,72) weak; phrase "red car" ungrounded;
            # claim "STOP" (both) not found; the repeat [54,72) overlaps a weak sentence exactly.
            s1, s2, s3 = TRICKY.index("A <b>"), TRICKY.index("The sign"), TRICKY.rindex("The sign")
            e["sentences"] = [{"text": TRICKY[s1:34], "start": s1, "end": 34, "clip": 0.11, "weak": True},
                              {"text": TRICKY[s2:s3 - 1], "start": s2, "end": s3 - 1, "clip": 0.31, "weak": False},
                              {"text": TRICKY[s3:], "start": s3, "end": len(TRICKY), "clip": 0.12, "weak": True}]
            rc = TRICKY.index("red car")
            e["phrases"] = [{"text": "red car", "start": rc, "end": rc + 7, "clip": 0.05, "grounded": False},
                            {"text": "sign", "start": TRICKY.index("sign"), "end": TRICKY.index("sign") + 4, "clip": 0.4,
                             "grounded": True}]
            e["text_claims"] = [{"text": "STOP", "start": at, "end": at + 4, "found": False}
                                for at in (TRICKY.index("STOP"), TRICKY.rindex("STOP"))]
            e["repeated_spans"] = [{"start": s3, "end": len(TRICKY)}]
            e["ocr_text"] = "SLOW"
        if key == "k01":
            e["phrases"] = [{"text": XSS[:31], "start": 0, "end": 31, "clip": 0.01, "grounded": False},
                            {"text": "cat", "start": XSS.index("cat"), "end": XSS.index("cat") + 3, "clip": 0.02,
                             "grounded": False}]
            e["sentences"] = [{"text": XSS[20:], "start": 20, "end": 999, "clip": 0.1, "weak": True}]  # end past the text
        if key == "k02":  # offsets off by two (e.g. counted in bytes), and a phrase that is not in the caption
            at = caption.index("meadow")
            e["phrases"] = [{"text": "meadow", "start": at + 2, "end": at + 8, "clip": 0.1, "grounded": False},
                            {"text": "unicorn", "start": 0, "end": 7, "clip": 0.1, "grounded": False}]
        ev.append(e)
    if evidence:
        write_parquet_atomic(run.report / "hallucinations.parquet", rows_to_table(ev, HALLUCINATION))

    rejects = rows_to_table([
        {"unit": "u0", "key": "r0", "source": "web", "uri": "file:///corpus/r0.jpg", "phase": "dedup", "outcome": "rejected",
         "reason": "duplicate", "detail": "<same as k00>", "near_duplicate_of": "k00"},
        {"unit": "u0", "key": "r1", "source": "web", "uri": "file:///corpus/r1.jpg", "phase": "dedup", "outcome": "rejected",
         "reason": "duplicate", "detail": None},
        {"unit": "u0", "key": "r2", "source": "local", "uri": "file:///corpus/r2.jpg", "phase": "ingest", "outcome": "rejected",
         "reason": "too_small", "detail": "32x32"},
        {"unit": "u0", "key": "r3", "source": "local", "uri": "file:///corpus/r3.jpg", "phase": "ingest", "outcome": "failed",
         "reason": "decode_error", "detail": "truncated file"},
    ], REJECTS)
    write_parquet_atomic(run.rejects / "u0.parquet", rejects)
    manifest = {
        "job": "demo <&> job", "job_file": "jobs/demo.yaml", "config_hash": "abc123", "status": "complete",
        "versions": {"curate": "0.0.0"}, "ray": "local", "started_at": "2026-01-01T00:00:00+00:00",
        "finished_at": "2026-01-01T00:01:00+00:00", "resumed": False,
        "counts": {"inputs": 16, "written": 12, "rejected": {"duplicate": 2, "too_small": 1},
                   "failed": {"decode_error": 1}, "is_4k": 1},
        "buckets": bucket_counts(index), "shards": len(members),
        "outputs": {"index": "index.parquet", "rejects": "rejects/", "report": "report/index.html", "shards": ["ar1024"]},
        "units": {"u0": {"inputs": 16, "written": 12, "rejected": 3, "failed": 1}},
    }
    write_json_atomic(run.manifest, manifest)
    return {"run": run, "manifest": manifest, "index": index, "rejects": rejects,
            "hallucinations": rows_to_table(ev, HALLUCINATION) if evidence else None, "rows": rows}


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("report") / "run"
    r = make_run(root)
    opened: list[str] = []

    def open_shard(rel: str):
        opened.append(rel)
        return open(root / rel, "rb")

    path = write_report(r["run"], r["manifest"], r["index"], r["rejects"], r["hallucinations"], open_shard)
    return r | {"path": path, "page": path.read_text(), "opened": opened}


# --------------------------------------------------------------------------- highlighting


class MarkParser(HTMLParser):
    """Reads highlighted caption HTML back: the text, and per character the mark classes over it."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.text, self.classes, self.stack, self.titles = "", [], [], []

    def handle_starttag(self, tag, attrs):
        assert tag == "mark", tag
        a = dict(attrs)
        self.stack.append(set(a["class"].split()))
        self.titles.append(a["title"])

    def handle_endtag(self, tag):
        assert tag == "mark" and self.stack, tag
        self.stack.pop()

    def handle_data(self, data):
        cls = set().union(*self.stack) if self.stack else set()
        self.text += data
        self.classes += [cls] * len(data)


def parse_marks(fragment: str) -> MarkParser:
    p = MarkParser()
    p.feed(fragment)
    p.close()
    assert not p.stack, "unclosed <mark>"
    return p


def test_highlight_overlapping_spans_exactly():
    text = "a<b & c"
    out = highlight(text, [Span(0, 3, "h-weak", "t1"), Span(2, 5, "h-ungrounded", 'x"y')])
    assert out == ('<mark class="h-weak" title="t1">a&lt;</mark>'
                   '<mark class="h-weak h-ungrounded" title="t1\nx&quot;y">b</mark>'
                   '<mark class="h-ungrounded" title="x&quot;y"> &amp;</mark> c')
    assert highlight(text, []) == "a&lt;b &amp; c"
    assert highlight(None, [Span(0, 3, "h-weak", "t")]) == ""
    # nested spans, a span past the end (clipped), empty and reversed spans (dropped), an unset offset
    out = highlight("0123456789", [Span(1, 9, "h-weak", "w"), Span(3, 5, "h-claim", "c"), Span(8, 50, "h-repeat", "r"),
                                   Span(4, 4, "h-claim", "e"), Span(7, 6, "h-claim", "v"), Span(None, 3, "h-claim", "n")])
    p = parse_marks(out)
    assert p.text == "0123456789"
    assert [sorted(c) for c in p.classes] == [[], ["h-weak"], ["h-weak"], ["h-claim", "h-weak"], ["h-claim", "h-weak"],
                                              ["h-weak"], ["h-weak"], ["h-weak"], ["h-repeat", "h-weak"], ["h-repeat"]]
    assert out.count("<mark") == 5  # adjacent pieces under the same spans are merged


def test_align_spans_moves_misplaced_spans_and_drops_foreign_ones():
    caption = "the cat sat by the cat door"
    spans, dropped = align_spans(caption, [
        Span(2, 5, "h-ungrounded", "a", "cat"), Span(18, 21, "h-ungrounded", "b", "cat"), Span(0, 3, "h-claim", "c", "dog"),
        Span(0, 3, "h-repeat", "d"), Span(4, 7, "h-weak", "e", " cat "), Span(None, None, "h-weak", "f", "cat")])
    assert dropped == 1
    assert [(s.start, s.end, s.tip) for s in spans] == [(4, 7, "a"), (19, 22, "b"), (0, 3, "d"), (4, 7, "e"), (None, None, "f")]


def test_highlight_random_spans_are_well_formed_and_cover_the_right_characters():
    rng = random.Random(7)
    alphabet = "ab <>&\"'é\n"
    for _ in range(300):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        spans = [Span(rng.randint(-3, 45), rng.randint(-3, 45), rng.choice(list(HIGHLIGHTS)), rng.choice(["s", "<t&>", '"q"']))
                 for _ in range(rng.randint(0, 6))]
        out = highlight(text, spans)
        assert "<" not in re.sub(r"</?mark[^>]*>", "", out), out  # every other '<' is escaped
        p = parse_marks(out)
        assert p.text == text
        for i, cls in enumerate(p.classes):
            assert cls == {s.cls for s in spans if max(0, s.start) <= i < min(len(text), s.end)}, (text, spans, i)


def test_page_highlights_captions_and_escapes_untrusted_text(built):
    page = built["page"]
    assert page.count("<script") == 1 and page.count("</script>") == 1  # only the page's own script
    assert "alert(&quot;pwned&quot;)" in page and 'alert("pwned")' not in page
    assert "<b>bold</b>" not in page and "&lt;b&gt;bold&lt;/b&gt;" in page
    assert "<h1>curate run: demo &lt;&amp;&gt; job</h1>" in page
    assert "&lt;same as k00&gt;" in page  # reject detail
    # The worst-caption card of k00 holds its caption with all four kinds of marks, and its text intact.
    card = re.search(r'<div class="worst" data-key="k00">.*?<p class="caption">(.*?)</p>', page, re.S).group(1)
    p = parse_marks(card)
    assert p.text == TRICKY
    at = {w: p.classes[TRICKY.index(w)] for w in ("bold", "red", "The", "STOP")}
    assert at["bold"] == {"h-weak"} and at["red"] == {"h-weak", "h-ungrounded"} and at["The"] == set()
    assert at["STOP"] == {"h-claim"}
    assert p.classes[TRICKY.rindex("STOP")] == {"h-weak", "h-repeat", "h-claim"}
    assert p.classes[TRICKY.index("sign")] == {"h-weak"}  # grounded phrase: not marked
    assert any("CLIP 0.050" in t for t in p.titles) and any("OCR read \u201cSLOW\u201d" in t for t in p.titles)
    # k01: the sentence ending past the caption is clipped, the script text is marked and escaped.
    card = re.search(r'<div class="worst" data-key="k01">.*?<p class="caption">(.*?)</p>', page, re.S).group(1)
    p = parse_marks(card)
    assert p.text == XSS and p.classes[0] == {"h-ungrounded"} and p.classes[-1] == {"h-weak"}
    assert p.classes[XSS.index("cat")] == {"h-weak", "h-ungrounded"}
    card = re.search(r'<div class="worst" data-key="k02">.*?<p class="caption">(.*?)</p>', page, re.S).group(1)
    assert card.endswith("[1 span(s) not in the caption]</span>")
    p = parse_marks(card.rsplit(" <span", 1)[0])
    assert {i for i, c in enumerate(p.classes) if c} == set(range(p.text.index("meadow"), p.text.index("meadow") + 6))
    for cls in HIGHLIGHTS:
        assert f'<mark class="{cls}"' in page.split('id="legend"')[1].split("</p>")[0]


def test_page_counts_and_sections(built):
    page = built["page"]

    def stat(name):
        return int(re.search(rf'data-stat="{re.escape(name)}"><div class="n">([\d,]+)</div>', page).group(1).replace(",", ""))

    assert (stat("inputs"), stat("written"), stat("rejected"), stat("failed"), stat("4K written"), stat("shards")) == (16, 12, 3, 1, 1, 3)
    assert stat("captions scored") == 11  # 10 with evidence + k10 from the index column
    assert stat("captions flagged") == 5
    acc = re.search(r'<p class="accounting ok" id="accounting">(.*?)</p>', page).group(1)
    assert re.sub(r"<[^>]+>", "", acc).startswith("inputs 16 = written 12 + rejected 3 + failed 1")
    assert "balanced" in acc
    for reason, n in (("duplicate", 2), ("too_small", 1), ("decode_error", 1)):
        assert re.search(rf"<td>{reason}</td><td class=num>{n}</td>", page)
    assert page.count("<svg") >= 8 and "data:image/jpeg;base64," in page
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "") and "https://" not in page
    # every row in the table; k11's image is missing: a placeholder with the reason
    assert len(re.findall(r"<tr data-bucket=", page)) == 12
    assert re.search(r'<img class="thumb missing" src="data:image/jpeg;base64,[^"]+" alt="k11" title="k11\.jpg not found in ar1024/1\.33/000000\.tar"', page)
    assert page.count('class="thumb missing"') == 1
    assert sorted(built["opened"]) == sorted(set(built["opened"])) == [f"ar1024/{b}/000000.tar" for b in BUCKETS]
    # table order: worst first; scored rows before unscored ones
    keys = re.findall(r'<tr data-bucket="[^"]*" data-flags="[^"]*" data-search="[^"]*"><td data-v="(k\d\d)"', page)
    assert keys[:3] == ["k00", "k01", "k02"] and keys[-1] == "k11"


def test_caps_big_tables_and_reads_streams(tmp_path):
    r = make_run(tmp_path / "run")
    members: list[str] = []

    class Stream(io.RawIOBase):  # a non-seekable body, like an S3 GetObject stream
        def __init__(self, data):
            self.buf = io.BytesIO(data)

        def readable(self):
            return True

        def readinto(self, b):
            n = self.buf.readinto(b)
            return n

    def open_shard(rel):
        members.append(rel)
        return io.BufferedReader(Stream((tmp_path / "run" / rel).read_bytes()))

    page = render_html(r["manifest"], r["index"], r["rejects"], r["hallucinations"], open_shard, max_rows=4)
    assert len(re.findall(r"<tr data-bucket=", page)) == 4
    assert "The table shows 4 of 12 written samples: the 2 with the highest hallucination score" in page
    assert "Capped for size" in page
    assert page.count("<img ") == 4 + 3 * 2 + 3 * 2 or page.count("<img ") >= 4  # table + worst cards
    assert len(members) == len(set(members))
    # many rejects: a few examples of every reason
    many = pa.concat_tables([r["rejects"]] * 300)
    page = render_html(r["manifest"], r["index"], many, r["hallucinations"], open_shard)
    listed = re.findall(r'<td data-v="(duplicate|too_small|decode_error)">', page)
    assert len(listed) == 3 * 166 and set(listed) == {"duplicate", "too_small", "decode_error"}
    assert "showing 498 of 1,200 (up to 166 per reason)" in page


def test_older_runs_without_scores_and_broken_shards(tmp_path):
    r = make_run(tmp_path / "run", hallucination_column=False, evidence=False)
    (tmp_path / "run" / "ar1024" / "0.75" / "000000.tar").write_bytes(b"not a tar")
    (tmp_path / "run" / "ar1024" / "1.0" / "000000.tar").unlink()
    page = rebuild_report(tmp_path / "run").read_text()
    assert "no hallucination scores in this run" in page
    assert len(re.findall(r"<tr data-bucket=", page)) == 12
    assert page.count('class="thumb missing"') == 1 + 4 + 4  # k11 + two unreadable shards
    assert "cannot read shard ar1024/0.75/000000.tar" in page
    empty = render_html(r["manifest"] | {"counts": {}}, r["index"].slice(0, 0), r["rejects"].slice(0, 0), None, None)
    assert "<h1>" in empty and "no data" in empty


# --------------------------------------------------------------------------- CLI


def test_cli_report_rebuilds_opens_and_refuses_unfinished_runs(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from curate.cli import app

    r = make_run(tmp_path / "run")
    opened = []
    monkeypatch.setattr("webbrowser.open", lambda url, *a, **k: opened.append(url) or True)
    res = CliRunner().invoke(app, ["report", str(tmp_path / "run"), "--open"])
    assert res.exit_code == 0, res.output
    path = r["run"].report / "index.html"
    assert res.output.strip() == str(path) and path.exists()
    assert opened == [path.resolve().as_uri()] and opened[0].startswith("file://")
    assert "k00" in path.read_text()
    assert not list(path.parent.glob(".*.tmp"))  # atomic write left no temporaries

    for setup, message in ((lambda p: p.mkdir(), "not a finished curate run"),
                           (lambda p: (p.mkdir(), (p / "manifest.json").write_text('{"status": "running"}')), "not finished"),
                           (lambda p: (p.mkdir(), (p / "manifest.json").write_text('{"status": "complete"}')), "no index"),
                           (lambda p: (shutil.copytree(tmp_path / "run", p), (p / "index" / "1.0" / "part-0.parquet").write_text("x")),
                            "cannot read the run's tables"),
                           (lambda p: None, "no such folder")):
        bad = tmp_path / f"bad{len(message)}"
        setup(bad)
        res = CliRunner().invoke(app, ["report", str(bad)])
        assert res.exit_code == 2, res.output
        assert message in res.output and "Traceback" not in res.output
        assert res.exception is None or isinstance(res.exception, SystemExit)


def _chromium() -> str | None:
    for cand in (os.environ.get("CURATE_CHROMIUM"), "/usr/lib/chromium/chromium", shutil.which("chromium"),
                 shutil.which("chromium-browser"), shutil.which("google-chrome")):
        if cand and Path(cand).exists():
            return cand
    return None


def _unavailable(message: str):
    if os.environ.get("CURATE_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{message} (CURATE_REQUIRE_BROWSER=1)")
    pytest.skip(f"{message}; set CURATE_REQUIRE_BROWSER=1 to make this a failure")


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright is not installed (pip install playwright)")
    exe = _chromium()
    if exe is None:
        _unavailable("no chromium found (apt-get install -y chromium)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                                                          "--no-first-run", "--disable-background-networking"])
        yield b
        b.close()


def test_page_in_a_headless_browser(built, browser, tmp_path):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
    page.goto(built["path"].resolve().as_uri(), wait_until="load")
    assert page.locator("h1").is_visible()
    assert page.locator("h1").inner_text() == "curate run: demo <&> job"
    rows = page.locator("#samples tbody tr")
    assert rows.count() == 12

    imgs = page.evaluate("Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth])")
    assert len(imgs) >= 12 and all(ok and w > 0 for _, ok, w in imgs), imgs
    assert page.locator("svg").count() >= 8
    assert page.evaluate("document.querySelectorAll('script').length") == 1  # the caption's script stayed text
    assert page.locator("#worst-bucket mark.h-claim").first.get_attribute("title").startswith("text claim \u201cSTOP\u201d")

    def visible_keys():
        return page.evaluate("Array.from(document.querySelectorAll('#samples tbody tr'))"
                             ".filter(tr => !tr.hidden).map(tr => tr.cells[0].getAttribute('data-v'))")

    def column(i):
        return page.evaluate(f"Array.from(document.querySelectorAll('#samples tbody tr')).map(tr => tr.cells[{i}].getAttribute('data-v'))")

    assert visible_keys()[:2] == ["k00", "k01"]
    head = page.locator("#samples thead th")
    head.filter(has_text="key").click()
    assert visible_keys() == sorted(f"k{i:02d}" for i in range(12))
    head.filter(has_text="key").click()
    assert visible_keys() == sorted((f"k{i:02d}" for i in range(12)), reverse=True)
    head.filter(has_text="tokens").click()
    tokens = [int(v) for v in column(6)]
    assert tokens == sorted(tokens) and tokens[0] == 10
    head.filter(has_text="halluc.").click()  # it starts descending: first click sorts ascending, unscored last
    scores = column(7)
    assert scores[-1] == "" and [float(s) for s in scores[:-1]] == sorted(float(s) for s in scores[:-1])

    page.fill("#filter-text", "zebra")
    assert visible_keys() == ["k03"] and page.locator("#shown-count").inner_text() == "1"
    page.fill("#filter-text", "PWNED")
    assert visible_keys() == ["k01"]
    page.fill("#filter-text", "")
    page.select_option("#filter-bucket", "1.0")
    keys = visible_keys()
    assert sorted(keys) == [f"k{i:02d}" for i in range(12) if BUCKETS[i % 3] == "1.0"]
    page.select_option("#filter-flag", "ungrounded")
    assert visible_keys() == ["k01"]
    page.select_option("#filter-bucket", "")
    page.select_option("#filter-flag", "(flagged)")
    assert sorted(visible_keys()) == ["k00", "k01", "k03", "k05", "k10"]
    page.fill("#filter-text", "no such text anywhere")
    assert visible_keys() == [] and page.locator("#no-rows").is_visible()
    page.fill("#filter-text", "")
    page.select_option("#filter-flag", "")
    assert len(visible_keys()) == 12

    page.evaluate("window.scrollTo(0, 0)")
    def shot():
        return np.asarray(Image.open(io.BytesIO(page.screenshot(full_page=False))).convert("RGB"))

    top = shot()
    colours = len(np.unique(top.reshape(-1, 3), axis=0))
    assert top.shape[:2] == (1000, 1400) and colours > 20 and top.mean(axis=2).var() > 100, (colours, top.var())
    page.locator("#worst-bucket").scroll_into_view_if_needed()
    worst = shot()
    assert len(np.unique(worst.reshape(-1, 3), axis=0)) > 50  # thumbnails in view
    Image.fromarray(worst).save(tmp_path / "worst.png")
    page.close()
    assert not problems, problems



def test_thumbnails_stream_from_s3(tmp_path, s3_server):
    r = make_run(tmp_path / "run")
    client = s3_server.client()
    client.create_bucket(Bucket="report-shards")
    for b in BUCKETS:
        rel = f"ar1024/{b}/000000.tar"
        client.upload_file(str(tmp_path / "run" / rel), "report-shards", f"out/{rel}")

    def open_shard(rel):
        return client.get_object(Bucket="report-shards", Key=f"out/{rel}")["Body"]

    page = render_html(r["manifest"], r["index"], r["rejects"], r["hallucinations"], open_shard)
    assert page.count('class="thumb missing"') == 1  # only k11, missing from its shard
    assert len(re.findall(r'<img class="thumb" src="data:image/jpeg;base64,', page)) >= 11
