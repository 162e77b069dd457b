"""The whole run against img2dataset, on the same URL list and the same local HTTP server.

One generated corpus (seeded, cached on disk): 2,000 distinct JPEGs from 512 px to 4K (about
30 % with a short side under 1024) plus 700 planted near-duplicates (re-encoded, resized or
cropped copies), listed in shuffled order. One server (tests/servers/http_server: Range
support, a log of the bytes sent per request) serves it to both tools, back to back:

- img2dataset, installed into its own virtualenv under the bench cache (never the project's):
  `--min_image_size 1024 --resize_mode no --skip_reencode True`, 2 processes x 16 threads, six
  shards (with its default 10,000 per shard the whole list is one shard, done by one process);
- curate, the same gate (min_side 1024), aesthetics and hallucination scoring off, the tiny
  random VLM generating one token at 64 px (captioning costs next to nothing).

Printed for each: images written per second over the whole run (process start to exit), bytes
served in total and on the too-small images, and curate's seconds per phase (its manifest).
Then the folder variant: a folder of 3840x2160 JPEGs as curate's source, against a plain
Pillow loop that opens each file, checks its size and copies it into a tar.
Targets: curate >= 1.5x img2dataset images/s; curate's bytes on too-small images <= 10 % of
img2dataset's; folder variant >= 1.5x the Pillow loop.

Beside each comparison, the decode floor: the CPU seconds, in this one process, of the two decodes
no curate run can skip (ingest's working-size decode of every image passing the header gate, which
its hashes need, and the caption feed's decode of every written image), spread over this
machine's cores. No run here can be faster than that, whatever the engine's overhead; the line
says what images/s it would allow against the same-run baseline.

    python -m bench crawl                 # the whole comparison
    CRAWL_N=300 python -m bench crawl     # a smaller list (distinct images; duplicates scale along)
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from bench.common import cache_dir
from curate import imaging
from curate.sample import render

DISTINCT, DUPLICATES, FOLDER_4K = 2000, 700, 200
GATE = 1024
ROOT = Path(__file__).resolve().parents[1]


# ---- the corpus ------------------------------------------------------------------------------

def _size(rng: np.random.Generator) -> tuple[int, int]:
    """30 % short side 512-1023, 15 % 3840x2160, the rest 1024-2160 short side; random ratio and orientation."""
    u = rng.random()
    if u < 0.15:
        w, h = 3840, 2160
    else:
        short = int(rng.integers(512, GATE)) if u < 0.45 else int(rng.integers(GATE, 2161))
        w, h = min(round(short * float(rng.choice([1.0, 4 / 3, 1.5, 16 / 9]))), 3840), short
    return (w, h) if rng.random() < 0.7 else (h, w)


def _picture(rng: np.random.Generator, noise: np.ndarray, w: int, h: int) -> Image.Image:
    """A distinct picture (curate.sample.render at 1/8 size, enlarged) with photo-like grain,
    so files weigh what photographs weigh (a 4K one ~1.5 MB)."""
    small, _ = render(rng, max(w // 8, 16), max(h // 8, 16))
    grain = noise[:h, :w, None] if h <= noise.shape[0] else noise.T[:h, :w, None]
    pixels = np.asarray(small.resize((w, h), Image.BICUBIC)).astype(np.int16) + grain
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def _near_copy(img: Image.Image, kind: int) -> Image.Image:
    w, h = img.size
    if kind == 0:
        return img                                   # re-encoded at another quality below
    if kind == 1:
        return img.resize((round(w * 0.9), round(h * 0.9)), Image.BICUBIC)
    dx, dy = round(w * 0.03), round(h * 0.03)
    return img.crop((dx, dy, w - dx, h - dy))


def _jpeg(img: Image.Image, quality: int) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def corpus(distinct: int = DISTINCT, duplicates: int = DUPLICATES, seed: int = 0) -> tuple[Path, list[dict]]:
    """The generated images (cached) and their list: name, width, height, original (for copies)."""
    folder = cache_dir("crawl", f"corpus_{distinct}_{duplicates}_{seed}")
    listing = folder / "_list.json"
    if listing.exists():
        return folder, json.loads(listing.read_text())
    print(f"generating {distinct} + {duplicates} images into {folder} (once) ...", flush=True)
    rng = np.random.default_rng(seed)
    noise = rng.normal(0, 4, (2160, 3840)).astype(np.int16)
    copied = set(rng.choice(distinct, duplicates, replace=False).tolist())
    rows = []
    for i in range(distinct):
        w, h = _size(rng)
        img = _picture(rng, noise, w, h)
        (folder / f"d{i:05d}.jpg").write_bytes(_jpeg(img, 90))
        rows.append({"name": f"d{i:05d}.jpg", "width": w, "height": h, "original": None})
        if i in copied:
            kind = len(rows) % 3
            copy = _near_copy(img, kind)
            (folder / f"c{i:05d}.jpg").write_bytes(_jpeg(copy, 75 if kind == 0 else 90))
            rows.append({"name": f"c{i:05d}.jpg", "width": copy.width, "height": copy.height, "original": f"d{i:05d}.jpg"})
    order = rng.permutation(len(rows))
    rows = [rows[i] for i in order]
    listing.write_text(json.dumps(rows))
    return folder, rows


def folder_4k(n: int = FOLDER_4K, seed: int = 1, grain: bool = True) -> Path:
    """n distinct 3840x2160 JPEGs (cached). `grain=False`: smooth pictures (~0.4 MB, 5x quicker to make)."""
    folder = cache_dir("crawl", f"uhd_{n}_{seed}" + ("" if grain else "_smooth"))
    if len(list(folder.glob("*.jpg"))) == n:
        return folder
    rng = np.random.default_rng(seed)
    noise = rng.normal(0, 4, (2160, 3840)).astype(np.int16)
    for i in range(n):
        if grain:
            img = _picture(rng, noise, 3840, 2160)
        else:
            img = Image.fromarray((rng.random((9, 16, 3)) * 255).astype(np.uint8)).resize((3840, 2160), Image.BILINEAR)
        (folder / f"u{i:05d}.jpg").write_bytes(_jpeg(img, 90))
    return folder


# ---- the tools -------------------------------------------------------------------------------

def img2dataset_bin() -> Path:
    """img2dataset in its own virtualenv under the bench cache (created on first use)."""
    venv = cache_dir("img2dataset-venv")
    exe = venv / "bin" / "img2dataset"
    if not exe.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "img2dataset"], check=True)
    return exe


def tiny_models() -> Path:
    """The demo's tiny random VLM and T5 tokenizer (built once)."""
    folder = cache_dir("crawl", "models")
    if not (folder / "tiny-t5-tokenizer").exists():
        from curate.tinymodels import build_tiny_t5_tokenizer, build_tiny_vlm

        build_tiny_vlm(folder / "tiny-vlm", seed=0)
        build_tiny_t5_tokenizer(folder / "tiny-t5-tokenizer")
    return folder


def curate_job(work: Path, name: str, source: dict, models: Path) -> Path:
    job = {
        "name": name, "out": str(work / "out"),
        "sources": [source],
        "fetch": {"allow_private_networks": True},
        "units": {"size": 64},
        "filters": {"resolution": {"min_side": GATE}, "aesthetics": {"enabled": False}},
        "caption": {"captioners": [{"name": "tiny", "model": str(models / "tiny-vlm"), "preset": "greedy",
                                    "generation": {"max_new_tokens": 1}, "image_side": 64, "batch_size": 16}],
                    "tokenizer": str(models / "tiny-t5-tokenizer")},
        "hallucination": {"enabled": False},
        "output": {"format": "keep"},
    }
    path = work / "job.json"   # JSON is YAML
    path.write_text(json.dumps(job))
    return path


def run_timed(cmd: list[str], log: Path, env: dict | None = None) -> float:
    start = time.perf_counter()
    with open(log, "w") as f:
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}, cwd=ROOT, check=False)
    seconds = time.perf_counter() - start
    if proc.returncode:
        sys.exit(f"{cmd[0]} failed ({proc.returncode}); see {log}")
    return seconds


def curate_cmd(job: Path) -> list[str]:
    return [str(Path(sys.executable).parent / "curate"), "run", str(job), "--fresh"]


def curate_env() -> dict:
    return {"RAY_AUTH_MODE": "disabled", "RAY_DATA_LOG_LEVEL": "ERROR", "RAY_BACKEND_LOG_LEVEL": "fatal",
            "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "TRANSFORMERS_VERBOSITY": "error",
            "PYTHONPATH": str(ROOT)}


def img2dataset_written(out: Path) -> int:
    return sum(json.loads(p.read_text())["successes"] for p in out.glob("*_stats.json"))


def served(log: Path, start_line: int, small: set[str]) -> tuple[int, int, int]:
    """(requests, bytes sent, bytes sent for too-small images) in the server log after `start_line`."""
    lines = log.read_text().splitlines()[start_line:]
    total = on_small = 0
    for line in lines:
        r = json.loads(line)
        total += r["sent"]
        if r["path"].rsplit("/", 1)[-1] in small:
            on_small += r["sent"]
    return len(lines), total, on_small


def decode_floor(folder: Path, gated: list[str], out: Path, job: Path) -> tuple[float, int]:
    """(CPU seconds of the decodes every run must do, images written): ingest's working decode of
    each file in `gated` and the caption feed's decode of each file the run wrote (its index)."""
    import pyarrow.dataset as ds

    settings = json.loads(job.read_text())
    side = settings["caption"]["captioners"][0]["image_side"]
    written = [url.rsplit("/", 1)[-1] for url in ds.dataset(out / "index", format="parquet").to_table(columns=["url"])["url"].to_pylist()]
    start = time.process_time()
    for name in gated:
        imaging.decode_working((folder / name).read_bytes(), 512)
    for name in written:
        imaging.decode_for_model((folder / name).read_bytes(), side)
    return time.process_time() - start, len(written)


def print_floor(cpu_s: float, written: int, baseline_rate: float) -> None:
    cores = os.cpu_count() or 1
    best = written / (cpu_s / cores)
    print(f"decode floor: {cpu_s:.1f} CPU s of decodes = {cpu_s / cores:.1f} s on {cores} cores: at most "
          f"{best:.1f} images/s, {best / baseline_rate:.2f}x the baseline, before any other work", flush=True)


# ---- the comparisons -------------------------------------------------------------------------

def crawl(work: Path, distinct: int, duplicates: int) -> None:
    from tests.servers.http_server import serve

    folder, rows = corpus(distinct, duplicates)
    small = {r["name"] for r in rows if min(r["width"], r["height"]) < GATE}
    i2d, models = img2dataset_bin(), tiny_models()
    for stale in ("port", "requests.jsonl"):
        (folder / stale).unlink(missing_ok=True)
    with serve(folder) as web:
        urls = [f"{web.base}/img/{r['name']}" for r in rows]
        url_list = work / "urls.parquet"
        pq.write_table(pa.table({"URL": urls, "TEXT": [f"picture {r['name']}" for r in rows]}), url_list)
        print(f"{len(urls)} URLs ({distinct} distinct + {len(urls) - distinct} near-copies; {len(small)} under {GATE} px), "
              f"{sum((folder / r['name']).stat().st_size for r in rows) / 1e6:.0f} MB, served from {web.base}", flush=True)

        i2d_out = work / "img2dataset"
        t_i2d = run_timed([str(i2d), "--url_list", str(url_list), "--input_format", "parquet", "--url_col", "URL",
                           "--caption_col", "TEXT", "--output_folder", str(i2d_out), "--output_format", "webdataset",
                           "--processes_count", "2", "--thread_count", "16", "--min_image_size", str(GATE),
                           "--resize_mode", "no", "--skip_reencode", "True", "--enable_wandb", "False",
                           # several shards, so that both processes work (one shard is one process's job)
                           "--number_sample_per_shard", str(max(1, len(urls) // 6))],
                          work / "img2dataset.log", {"NO_ALBUMENTATIONS_UPDATE": "1"})
        n_log = len(web.log.read_text().splitlines())
        i2d_req, i2d_bytes, i2d_small = served(web.log, 0, small)

        cur_work = work / "curate"
        cur_work.mkdir()
        job = curate_job(cur_work, "crawl", {"type": "url_list", "path": str(url_list)}, models)
        t_cur = run_timed(curate_cmd(job), work / "curate.log", curate_env())
        cur_req, cur_bytes, cur_small = served(web.log, n_log, small)

    manifest = json.loads((cur_work / "out" / "manifest.json").read_text())
    w_i2d, w_cur = img2dataset_written(i2d_out), manifest["counts"]["written"]
    print(f"{'':<34}{'curate':>14}{'img2dataset':>14}{'ratio':>9}")
    for what, ours, base, fmt in [
        ("images written", w_cur, w_i2d, "{:>14,}"),
        ("seconds, whole run", t_cur, t_i2d, "{:>14.1f}"),
        ("images written / s", w_cur / t_cur, w_i2d / t_i2d, "{:>14.1f}"),
        ("requests served", cur_req, i2d_req, "{:>14,}"),
        ("MB served", cur_bytes / 1e6, i2d_bytes / 1e6, "{:>14.1f}"),
        (f"MB served on the {len(small)} too-small", cur_small / 1e6, i2d_small / 1e6, "{:>14.2f}"),
    ]:
        print(f"{what:<34}" + fmt.format(ours) + fmt.format(base) + f"{ours / base if base else float('nan'):>8.2f}x")
    print("curate rejected:", manifest["counts"]["rejected"], " failed:", manifest["counts"]["failed"])
    print("curate seconds per phase:", ", ".join(f"{k} {v}" for k, v in manifest["timings_s"].items()))
    print("targets: images/s >= 1.5x img2dataset; bytes on too-small <= 0.10x img2dataset's", flush=True)
    gated = [r["name"] for r in rows if min(r["width"], r["height"]) >= GATE]
    print_floor(*decode_floor(folder, gated, cur_work / "out", job), w_i2d / t_i2d)


def pillow_loop(folder: Path, tar_path: Path) -> int:
    """The plain baseline: open each file, check its size, copy it into a tar."""
    kept = 0
    with tarfile.open(tar_path, "w") as tar:
        for path in sorted(folder.glob("*.jpg")):
            with Image.open(path) as img:
                if min(img.size) < GATE:
                    continue
            tar.add(path, arcname=path.name)
            kept += 1
    return kept


def folder_variant(work: Path, n: int) -> None:
    folder, models = folder_4k(n), tiny_models()
    start = time.perf_counter()
    kept = pillow_loop(folder, work / "pillow.tar")
    t_loop = time.perf_counter() - start
    cur_work = work / "curate_folder"
    cur_work.mkdir()
    job = curate_job(cur_work, "crawl-folder", {"type": "folder", "path": str(folder), "alt_text": "none"}, models)
    t_cur = run_timed(curate_cmd(job), work / "curate_folder.log", curate_env())
    manifest = json.loads((cur_work / "out" / "manifest.json").read_text())
    written = manifest["counts"]["written"]
    print(f"\nfolder of {n} JPEGs of 3840x2160 (no HTTP)")
    print(f"{'':<34}{'curate':>14}{'Pillow loop':>14}{'ratio':>9}")
    print(f"{'images written':<34}{written:>14,}{kept:>14,}")
    print(f"{'seconds, whole run':<34}{t_cur:>14.1f}{t_loop:>14.1f}")
    print(f"{'images written / s':<34}{written / t_cur:>14.1f}{kept / t_loop:>14.1f}{(written / t_cur) / (kept / t_loop):>8.2f}x")
    print("curate seconds per phase:", ", ".join(f"{k} {v}" for k, v in manifest["timings_s"].items()))
    print("target: >= 1.5x the Pillow loop", flush=True)
    print_floor(*decode_floor(folder, sorted(p.name for p in folder.glob("*.jpg")), cur_work / "out", job), kept / t_loop)


def main() -> None:
    distinct = int(os.environ.get("CRAWL_N", DISTINCT))
    duplicates = round(distinct * DUPLICATES / DISTINCT)
    work = cache_dir("crawl", "runs", time.strftime("%Y%m%d-%H%M%S"))
    print(f"work folder: {work} (logs of both tools)")
    crawl(work, distinct, duplicates)
    folder_variant(work, int(os.environ.get("CRAWL_FOLDER_N", FOLDER_4K)))


if __name__ == "__main__":
    main()
