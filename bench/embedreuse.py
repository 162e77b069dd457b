"""One embedding pass: the caption phase before (the hallucination scorer loads its own CLIP and
embeds every image again) and after (it reads the embedding ingest stored, float16, and keeps
only CLIP's text tower), measured in the same run on the same rows.

What runs is the caption phase's actor work, in process (no Ray scheduling): per batch of
`hallucination.batch_size` prepared rows (the demo job's 1280-px caption decode), the demo's two
captioner actors (tiny random VLM) and the scoring actor (finish the captions, then every check).
Before = the job with `filters.aesthetics.keep_embeddings: false` and rows without embeddings (the
code path before this change); after = `true`, with ingest's stored embedding in each row
(computed beforehand from the 512-px working decode, as ingest does; not timed). Timed in CPU
seconds of this process (`time.process_time`, torch on one thread): the shared dev machine's
load moves wall-clock times by several x, CPU time far less.

1. demo: the `make demo` corpus (`curate sample --n 12 --seed 0`), every image that decodes.
2. N images (default 500): generated 1280x720 pictures (16 distinct, cycled).
Both with the demo's tiny CLIP, and the N-image scoring once more with a real CLIP architecture
(`CLIP_MODEL`, default open_clip ViT-L-14, the shipped jobs' model, random weights: no download)
on `N_REAL` images (default 8).

`python -m bench embedreuse` (defaults), or `python -m bench.embedreuse [N] [CLIP_MODEL] [N_REAL]`.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CAPTIONS = ["A wide landscape with a gradient sky over rolling shapes. A bright disc sits near the top edge. "
            "Soft textures cover the lower half, and a dark band crosses the middle.",
            "Several coloured rectangles overlap on a pale background. The largest one is blue and sits on the left. "
            "Thin lines run diagonally across the picture."]


def _models(folder: Path, dim: int) -> dict:
    from curate.tinymodels import (
        build_tiny_aesthetic_head,
        build_tiny_clip,
        build_tiny_safety_heads,
        build_tiny_t5_tokenizer,
        build_tiny_vlm,
    )

    config, ckpt = build_tiny_clip(folder / "tiny-clip")
    build_tiny_safety_heads(folder)
    return {"vlm": build_tiny_vlm(folder / "tiny-vlm"), "t5": build_tiny_t5_tokenizer(folder / "tiny-t5-tokenizer"),
            "clip_config": config, "clip_ckpt": ckpt, "head": build_tiny_aesthetic_head(folder / "tiny-aesthetic-head.pth"),
            "head_n": build_tiny_aesthetic_head(folder / f"head-{dim}.pth", dim=dim), "folder": folder}


def _sets(m: dict, clip_model: str | None, keep: bool) -> list[str]:
    """The demo job on the bench's tiny models (and another CLIP architecture when named)."""
    f = m["folder"]
    sets = [f"sources.0.path={f}", f"out={f / 'unused'}", f"caption.captioners.0.model={m['vlm']}",
            f"caption.captioners.1.model={m['vlm']}", f"caption.tokenizer={m['t5']}",
            f"filters.aesthetics.clip_config={m['clip_config']}", f"filters.aesthetics.clip_pretrained={m['clip_ckpt']}",
            f"filters.aesthetics.head={m['head']}", "filters.safety.nsfw_head=null", "filters.safety.watermark_head=null",
            f"filters.aesthetics.keep_embeddings={str(keep).lower()}"]
    if clip_model:
        sets += [f"filters.aesthetics.clip_model={clip_model}", "filters.aesthetics.clip_config=null",
                 "filters.aesthetics.clip_pretrained=null", f"filters.aesthetics.head={m['head_n']}"]
    return sets


def demo_pictures() -> list:
    """The demo corpus's images that decode, upright RGB (what the caption phase prepares)."""
    from PIL import Image, ImageOps

    from curate.sample import make_corpus

    folder = Path(tempfile.mkdtemp()) / "sample"
    make_corpus(folder, n=12, seed=0)
    out = []
    for path in sorted(folder.iterdir()):
        try:
            with Image.open(path) as im:
                out.append(ImageOps.exif_transpose(im).convert("RGB"))
        except Exception:
            continue
    return out


def phase_seconds(m: dict, pictures: list, n: int, clip_model: str | None, captioners: bool) -> dict[bool, float]:
    """CPU seconds of the caption phase's actor work over n rows, after (True) and before (False)."""
    from curate.jobs import load_job
    from curate.phases.caption import PREPARED, CaptionActor, ScoreActor, prepared_row, with_columns
    from filters.aesthetics import AestheticScorer
    from schemas.record import rows_to_table

    side = 1280   # the demo's caption decode (OCR's side)
    shrunk = [p.copy() for p in pictures]
    for p in shrunk:
        p.thumbnail((side, side))
    seconds = {}
    for keep in (True, False):
        job = load_job(REPO / "jobs" / "demo.yaml", _sets(m, clip_model, keep))
        stored = None
        if keep:   # what ingest stored: the embedding of the 512-px working decode, float16
            working = [p.copy() for p in pictures]
            for p in working:
                p.thumbnail((512, 512))
            stored = AestheticScorer(job.filters.aesthetics).embed(working).astype(np.float16)
        t0 = time.process_time()
        actors = ([CaptionActor(c.model_dump_json(), drop_pixels=False) for c in job.caption.captioners] if captioners else [])
        scorer = ScoreActor(job.model_dump_json())
        loaded = time.process_time() - t0

        def one_batch(start: int, size: int = job.hallucination.batch_size, stored=stored, actors=actors, scorer=scorer) -> float:
            idx = range(start, min(n, start + size))
            rows = [prepared_row("u", f"k{i:05d}", "A synthetic picture", shrunk[i % len(shrunk)],
                                 embedding=None if stored is None else stored[i % len(shrunk)]) for i in idx]
            batch = rows_to_table(rows, PREPARED)
            if not captioners:
                k = len(idx)
                batch = with_columns(batch, {"raw_dense": [CAPTIONS[i % 2] for i in idx], "err_dense": [""] * k,
                                             "finish_dense": ["stop"] * k, "raw_short": ["A picture."] * k,
                                             "err_short": [""] * k, "finish_short": ["stop"] * k})
            t = time.process_time()
            for actor in actors:
                batch = actor(batch)
            out = scorer(batch)
            assert out.num_rows == len(idx)
            return time.process_time() - t

        starts = range(0, n, job.hallucination.batch_size)
        one_batch(0, 1)   # untimed: lazy loads on first use (py3langid, MiniLM) would count against one side only
        work = sum(one_batch(start) for start in starts)
        seconds[keep] = work
        print(f"  {n} rows, CLIP {clip_model or 'tiny-clip'}, captioners {'on' if captioners else 'off'}, "
              f"keep_embeddings={keep}: {work:.1f} CPU s ({1000 * work / n:.0f} ms/row); actors loaded in {loaded:.1f} CPU s; "
              f"scorer's CLIP image tower loaded: {scorer.scorer.clip.model.visual is not None}", flush=True)
    return seconds


def main(n: int = 500, clip_model: str = "ViT-L-14", n_real: int = 8) -> None:
    import open_clip
    import torch

    torch.set_num_threads(1)
    dim = open_clip.get_model_config(clip_model)["embed_dim"]
    with tempfile.TemporaryDirectory() as tmp:
        m = _models(Path(tmp) / "models", dim)
        demo = demo_pictures()
        from curate.sample import render

        rng = np.random.default_rng(0)
        generated = [render(rng, 1280, 720)[0] for _ in range(16)]
        rows = [(f"demo corpus ({len(demo)} images), caption + score", phase_seconds(m, demo, len(demo), None, True)),
                (f"{n} images, caption + score", phase_seconds(m, generated, n, None, True)),
                (f"{n_real} images, score only, {clip_model}", phase_seconds(m, generated, n_real, clip_model, False))]
    print(f"\n{'measure (CPU seconds, same run)':<52}{'after':>9}{'before':>9}{'before/after':>14}")
    for what, sec in rows:
        print(f"{what:<52}{sec[True]:>9.1f}{sec[False]:>9.1f}{sec[False] / sec[True]:>13.2f}x")


if __name__ == "__main__":
    args = sys.argv[1:]
    main(int(args[0]) if args else 500, args[1] if len(args) > 1 else "ViT-L-14", int(args[2]) if len(args) > 2 else 8)
