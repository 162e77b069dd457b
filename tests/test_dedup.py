"""Duplicate decisions: the two-hash band search against brute force, identical hashes
collapsed, leader clusters that cannot chain, the best-copy rule, semantic and earlier-run
dedup, the Ray shuffle engine, real photographs with planted copies, the 256-bit pHash that keeps
pictures on one background apart, and the kept copy nearest its group's consensus."""

import io
import itertools

import numpy as np
import pytest
from PIL import Image, ImageOps

from curate import imaging
from filters.dedup import deduplicate, leader_clusters, semantic_pairs
from filters.mih import Hashes, all_pairs, hashes_agree, near_pairs, plan
from filters.quality import signals


def random_hashes(rng, n):
    return rng.integers(0, 2**63, n, dtype=np.int64).astype(np.uint64) << np.uint64(1) | rng.integers(0, 2, n).astype(np.uint64)


def flip(rng, h, bits):
    """`h` with `bits` distinct random bits flipped."""
    return np.uint64(int(h) ^ sum(1 << int(b) for b in rng.choice(64, size=bits, replace=False)))


def planted(rng, clusters: int, size: int, k: int, kd: int, noise: int) -> Hashes:
    """Clusters whose members lie within (k, kd) of their centre, some mirrored, plus noise."""
    p, d, pm, dm = (list(random_hashes(rng, noise)) for _ in range(4))
    for _ in range(clusters):
        cp, cd, cpm, cdm = random_hashes(rng, 4)
        for m in range(size):  # member 0 is the centre itself
            bits = [int(rng.integers(0, r + 1)) if m else 0 for r in (k, kd, k, kd)]
            a, b, fa, fb = (flip(rng, c, n) for c, n in zip((cp, cd, cpm, cdm), bits))
            if m % 3 == 2:  # a mirrored copy: its hashes are the centre's mirrored ones
                a, b, fa, fb = fa, fb, a, b
            p.append(a), d.append(b), pm.append(fa), dm.append(fb)
    return Hashes(*(np.array(x, dtype=np.uint64) for x in (p, d, pm, dm)))


def brute_force(h: Hashes, k: int, kd: int, slack: bool = True) -> set[tuple[int, int]]:
    """Pairs whose hashes agree (`hashes_agree`; with slack=False: within (k, kd) exactly) as
    shown or with either one mirrored, by comparing every pair."""
    got = set()
    views = [(h.p, h.d, h.p, h.d), (h.p, h.d, h.pm, h.dm), (h.pm, h.dm, h.p, h.d)]
    for pa_, da, pb, db in views:
        pd, dd = np.bitwise_count(pa_[:, None] ^ pb[None, :]), np.bitwise_count(da[:, None] ^ db[None, :])
        close = hashes_agree(pd, dd, k, kd) if slack else (pd <= k) & (dd <= kd)
        i, j = np.nonzero(close)
        got |= {(min(a, b), max(a, b)) for a, b in zip(i.tolist(), j.tolist()) if a != b}
    return got


def as_set(pairs) -> set[tuple[int, int]]:
    return set(zip(pairs.i.tolist(), pairs.j.tolist()))


@pytest.mark.parametrize("k, kd", [(0, 0), (4, 6), (10, 12)])
def test_band_search_with_full_radius_bands_equals_brute_force(k, kd):
    rng = np.random.default_rng(k)
    h = planted(rng, clusters=40, size=4, k=k, kd=kd, noise=400)
    want = brute_force(h, k, kd)
    got = near_pairs(h, k, kd, m1=k + 2 if k == 0 else k + 1, m2=kd + 2 if kd == 0 else kd + 1)
    assert brute_force(h, k, kd, slack=False) <= as_set(got) <= want and len(want) >= 40 * 3
    assert np.all(hashes_agree(got.pdist, got.ddist, k, kd))


def test_planned_bands_find_every_pair_inside_their_exact_region_and_nothing_unconfirmed():
    rng = np.random.default_rng(7)
    k, kd = 10, 12
    h = planted(rng, clusters=60, size=4, k=k, kd=kd, noise=3000)
    m1, m2 = plan(len(h), k, kd)
    got = as_set(near_pairs(h, k, kd))
    inner = brute_force(h, m1 - 1, m2 - 1, slack=False)
    assert inner <= got <= brute_force(h, k, kd)
    assert len(inner) >= 60


def test_planner_narrows_the_exact_region_as_inputs_grow():
    assert plan(1_000, 10, 12) == (10, 9)      # 6 + 7 bit keys for 2,000 records (as shown + mirrored)
    assert plan(10_000_000, 10, 12) == (5, 4)  # 12 + 16 bits for 20M records


def test_a_long_bucket_is_compared_in_a_window_and_still_finds_its_near_pairs():
    rng = np.random.default_rng(3)
    base_p, base_d = random_hashes(rng, 2)
    n = 3000  # one picture in 3,000 slightly different versions: one bucket of every table
    p = np.array([flip(rng, base_p, 1) if i % 2 else base_p ^ np.uint64(i << 40) for i in range(n)], dtype=np.uint64)
    d = np.full(n, base_d, dtype=np.uint64) ^ np.arange(n, dtype=np.uint64)
    got = near_pairs(Hashes(p, d), 2, 12, m1=3, m2=2, window=64)
    assert got.stats["candidates"] <= 2 * 6 * 64 * n  # bounded by the window, not n^2 / 2
    brute = set(zip(*[a.tolist() for a in all_pairs(Hashes(p, d), 2, 12)]))
    assert as_set(got) <= brute and len(got.i) >= n


def decide(h: Hashes, k=10, kd=12, **kw):
    n = len(h)
    keys = np.array([f"k{i:05d}" for i in range(n)], dtype=object)
    shas = kw.pop("sha", np.array([f"sha{i}" for i in range(n)], dtype=object))
    return deduplicate(keys, shas, h, kw.pop("pixels", np.ones(n)), kw.pop("aesthetic", np.full(n, np.nan)),
                       kw.pop("letterbox", None), kw.pop("jpeg_quality", None), k=k, kd=kd, **kw).to_pylist()


def test_identical_hashes_collapse_before_the_search():
    rng = np.random.default_rng(5)
    other = random_hashes(rng, 4)
    n = 50_000  # one placeholder image 50,000 times, plus 4 other pictures
    p = np.concatenate([np.full(n, other[0]), random_hashes(rng, 4)])
    d = np.concatenate([np.full(n, other[1]), random_hashes(rng, 4)])
    seen = []

    def finder(h, k, kd):
        seen.append(len(h))
        return near_pairs(h, k, kd)
    keys = np.array([f"k{i:06d}" for i in range(n + 4)])
    rows = deduplicate(keys, keys, Hashes(p, d, p, d), np.ones(n + 4), np.full(n + 4, np.nan), pair_finder=finder).to_pylist()
    assert seen == [5]
    kept = [r["key"] for r in rows if r["keep"]]
    assert kept == ["k000000", *[f"k{i:06d}" for i in range(n, n + 4)]]
    assert {r["near_duplicate_of"] for r in rows if not r["keep"]} == {"k000000"}
    assert {r["distance"] for r in rows if not r["keep"]} == {0}


def test_leader_clusters_do_not_chain_past_the_radius():
    # 0 ~ 1 ~ 2 ~ 3 in a line, ranked 0 best: 1 joins 0; 2 is near only 1 (not a
    # representative), so it leads its own cluster and 3 joins it.
    rep = leader_clusters(4, np.array([0, 1, 2]), np.array([1, 2, 3]), np.arange(4))
    assert rep.tolist() == [0, 0, 2, 2]
    # ranked 1 best: 0 and 2 join 1; 3 is near only 2, a member, so it stands alone
    rep = leader_clusters(4, np.array([0, 1, 2]), np.array([1, 2, 3]), np.array([1, 0, 2, 3]))
    assert rep.tolist() == [1, 1, 1, 3]


def test_chained_hashes_split_where_single_link_would_merge():
    rng = np.random.default_rng(11)
    p, d = (int(x) for x in random_hashes(rng, 2))
    bits = [1 << int(b) for b in rng.choice(64, size=18, replace=False)]
    b = p ^ sum(bits[:9])       # 9 bits from a
    c = b ^ sum(bits[9:])       # 9 more from b: 18 from a, past k = 10 and its slack (same dHash: 16)
    rows = decide(Hashes(np.array([p, b, c], dtype=np.uint64), np.full(3, d, dtype=np.uint64)), pixels=np.array([300, 200, 100]))
    assert [r["keep"] for r in rows] == [True, False, True]
    assert rows[1]["near_duplicate_of"] == "k00000" and rows[2]["dup_cluster"] is None


def test_best_copy_has_no_border_then_best_quality_then_most_pixels():
    rng = np.random.default_rng(2)
    p, d = random_hashes(rng, 2)
    h = Hashes(np.array([flip(rng, p, i) for i in range(5)]), np.array([d] * 5, dtype=np.uint64))
    rows = decide(h, pixels=np.array([4e6, 4e6, 1e6, 2e6, 9e6]), letterbox=np.array([0, 0, 0, 0, 0.2]),
                  jpeg_quality=np.array([40, 95, 92, np.nan, 98]))
    # 4 has most pixels but a border; 1 (q95) and 3 (PNG) count as top quality: 1 has more pixels
    assert [r["keep"] for r in rows] == [False, True, False, False, False]
    assert {r["near_duplicate_of"] for r in rows if not r["keep"]} == {"k00001"}


def test_exact_duplicates_and_earlier_runs():
    b = np.uint64(0xFF << 8)
    p = np.uint64(0xFFFF << 48)
    ph = np.array([p, p ^ np.uint64(1), b, b, b ^ np.uint64(3), np.uint64(0xFF0F << 20)], dtype=np.uint64)
    dh = np.array([7, 7, 9, 9, 9, 1 << 40], dtype=np.uint64)
    sha = np.array(["old", "a", "same", "same", "d", "e"], dtype=object)
    rows = decide(Hashes(ph, dh), k=2, kd=2, sha=sha, prior=1)
    assert len(rows) == 5  # no row for the earlier run's sample
    assert [r["keep"] for r in rows] == [False, True, False, False, True]
    assert rows[0]["reason"] == "earlier_run_duplicate" and rows[0]["near_duplicate_of"] == "k00000"
    assert rows[2]["reason"] == "exact_duplicate" and rows[2]["near_duplicate_of"] == "k00002"
    assert rows[3]["reason"] == "near_duplicate" and rows[3]["distance"] == 2


def test_semantic_pairs_match_brute_force_on_clustered_embeddings():
    rng = np.random.default_rng(4)
    centres = rng.normal(size=(30, 16))
    emb = np.concatenate([c + rng.normal(scale=0.02, size=(5, 16)) for c in centres])
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    sims = emb @ emb.T
    want = {(i, j) for i, j in itertools.combinations(range(len(emb)), 2) if sims[i, j] >= 0.98}
    got = set(zip(*[a.tolist() for a in semantic_pairs(emb, 0.98, partitions=6)]))
    assert got == want and len(want) >= 30 * 10 * 0.9


def photo_hashes(img: Image.Image, quality: int = 92) -> dict:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return imaging.dedup_hashes(imaging.decode_working(buf.getvalue(), 512))


def test_real_photographs_with_planted_copies():
    from sklearn.datasets import load_sample_images

    photos = [Image.fromarray(a) for a in load_sample_images().images]  # china.jpg, flower.jpg: real photos
    rows = []
    for photo in photos:
        w, h = photo.size
        bordered = Image.new("RGB", (w, h + 120), (0, 0, 0))
        bordered.paste(photo, (0, 60))
        copies = [photo, ImageOps.mirror(photo), bordered, photo.resize((w // 2, h // 2), Image.LANCZOS), photo]
        rows += [photo_hashes(c, q) for c, q in zip(copies, [92, 92, 92, 92, 40])]
        # tiles of the same photo: different pictures that share colours and texture
        rows += [photo_hashes(photo.crop((x, y, x + w // 2, y + h // 2))) for x in (0, w // 2) for y in (0, h // 2)]
    h = ingest_hashes(rows)
    n = len(rows)
    letterbox = np.array([0.0, 0.0, 0.28, 0.0, 0.0, 0, 0, 0, 0] * 2)
    quality = np.array([92, 92, 92, 92, 40, 92, 92, 92, 92] * 2)
    pixels = np.array([6, 6, 7.2, 1.5, 6, 1.5, 1.5, 1.5, 1.5] * 2)
    keys = np.array([f"k{i:02d}" for i in range(n)])
    out = deduplicate(keys, keys, h, pixels, np.full(n, np.nan), letterbox, quality).to_pylist()
    assert [r["keep"] for r in out] == [True, False, False, False, False, True, True, True, True] * 2
    assert [r["near_duplicate_of"] for r in out if not r["keep"]] == ["k00"] * 4 + ["k09"] * 4


def ingest_hashes(rows: list[dict]) -> Hashes:
    """The hashes dedup compares, as the dedup phase builds them from ingest rows."""
    import pyarrow as pa

    from curate.phases.dedup import dedup_hashes
    from schemas.record import INGESTED

    columns = ["phash_core", "dhash_core", "phash_mirror", "dhash_mirror", "phash_long", "thumb", "windows"]
    table = pa.table({c: pa.array([r[c] for r in rows], INGESTED.field(c).type) for c in columns})
    return dedup_hashes(table.append_column("phash", table["phash_core"]).append_column("dhash", table["dhash_core"]))


def test_pictures_sharing_a_background_are_kept_apart_and_their_copies_are_not():
    from curate.sample import render

    # two different pictures on one background (seeds found to be within both 64-bit radii)
    a, b = (render(np.random.default_rng(10_396 + s), 320, 240, layout=np.random.default_rng(20_198))[0] for s in (0, 1))
    brighter = Image.fromarray((np.asarray(a, np.float32) * [1.1, 1.0, 0.9]).clip(0, 255).astype(np.uint8))
    rows = [photo_hashes(a), photo_hashes(b), photo_hashes(a, 40), photo_hashes(brighter)]
    h = ingest_hashes(rows)
    assert (np.bitwise_count(h.p[0] ^ h.p[1]), np.bitwise_count(h.d[0] ^ h.d[1])) == (8, 1)
    assert h.long_distance(np.array([0]), np.array([1]), np.array([False])).tolist() == [87]
    keys = np.array(["a", "b", "a_q40", "a_brighter"])
    pixels, quality = np.full(4, 76_800.0), np.array([92, 92, 40, 92])
    out = deduplicate(keys, keys, h, pixels, np.full(4, np.nan), np.zeros(4), quality).to_pylist()
    assert [(r["keep"], r["near_duplicate_of"]) for r in out] == [(True, None), (True, None), (False, "a"), (False, "a")]
    merged = deduplicate(keys, keys, Hashes(h.p, h.d, h.pm, h.dm), pixels, np.full(4, np.nan), np.zeros(4), quality).to_pylist()
    assert [r["keep"] for r in merged] == [True, False, False, False]  # the 64-bit hashes alone merge b into a


def test_crops_turns_and_logos_of_real_photographs_join_the_clean_photo():
    import skimage.data
    from PIL import ImageDraw

    names = ["astronaut", "coffee", "chelsea", "rocket"]
    kinds = ["photo", "crop", "turned", "logo", "half", "q40"]
    rows = []
    for name in names:
        photo = Image.fromarray(getattr(skimage.data, name)()).convert("RGB")
        w, h = photo.size
        crop = photo.crop((round(0.10 * w), round(0.02 * h), w - round(0.04 * w), h - round(0.09 * h)))  # uneven, up to 10 %
        m = round(np.sin(np.radians(4)) * max(w, h) / 2) + 1
        turned = photo.rotate(-4, Image.BICUBIC).crop((m, m, w - m, h - m))
        logo = photo.copy()
        ImageDraw.Draw(logo).rectangle([w - w // 5 - 10, 10, w - 10, 10 + h // 8], fill=(20, 200, 240))
        copies = [(photo, 92), (crop, 92), (turned, 92), (logo, 92), (photo.resize((w // 2, h // 2), Image.LANCZOS), 92), (photo, 40)]
        rows += [photo_hashes(img, quality) for img, quality in copies]
    n = len(rows)
    keys = np.array([f"{name}_{kind}" for name in names for kind in kinds])
    pixels, quality = np.array([4.0, 3.0, 3.0, 4.0, 1.0, 4.0] * len(names)), [92, 92, 92, 92, 92, 40] * len(names)

    def merged_into(**kw):
        out = deduplicate(keys, keys, ingest_hashes(rows), pixels, np.full(n, np.nan), np.zeros(n), np.array(quality), **kw)
        return {r["key"]: r["near_duplicate_of"] for r in out.to_pylist()}
    assert merged_into() == {f"{name}_{kind}": None if kind == "photo" else f"{name}_photo" for name in names for kind in kinds}
    # the whole-picture hashes alone find none of the crops and turns (nor rocket's logo)
    alone = merged_into(kw=None)
    assert [key for key, of in alone.items() if of is None] == [
        f"{name}_{kind}" for name in names for kind in ("photo", "crop", "turned", *(["logo"] if name == "rocket" else []))]


def test_the_kept_copy_is_the_one_nearest_its_groups_consensus():
    from PIL import ImageDraw
    from sklearn.datasets import load_sample_images

    photo = Image.fromarray(load_sample_images().images[1])  # flower.jpg
    logo = photo.copy()
    ImageDraw.Draw(logo).rectangle([470, 20, 620, 90], fill=(230, 30, 30))
    shifted = Image.fromarray((np.asarray(photo, np.float32) * [1.15, 1.0, 0.85]).clip(0, 255).astype(np.uint8))
    copies = [(logo, 92), (shifted, 92), (ImageOps.mirror(logo), 92), (photo.resize((320, 214), Image.LANCZOS), 92), (photo, 40),
              (photo, 92)]
    rows, colour = [], []
    for img, quality in copies:
        rows.append(photo_hashes(img, quality))
        q = signals(img)
        colour.append((q["brightness"], q["colourfulness"]))
    keys = np.array(["a_logo", "b_shifted", "c_logo_mirrored", "d_small", "e_q40", "f_original"])
    pixels = np.array([640 * 427] * 3 + [320 * 214] + [640 * 427] * 2, np.float64)
    quality = np.array([92] * 4 + [40, 92])
    out = deduplicate(keys, keys, ingest_hashes(rows), pixels, np.full(6, np.nan), np.zeros(6), quality,
                      colour=np.array(colour)).to_pylist()
    assert [r["keep"] for r in out] == [False] * 5 + [True]
    assert {r["near_duplicate_of"] for r in out if not r["keep"]} == {"f_original"}
    # without the colour, the colour-shifted copy is as near the 256-bit consensus as the original
    out = deduplicate(keys, keys, ingest_hashes(rows), pixels, np.full(6, np.nan), np.zeros(6), quality).to_pylist()
    assert [r["keep"] for r in out] == [False, True, False, False, False, False]


def test_content_box_finds_a_real_photo_inside_added_borders():
    from sklearn.datasets import load_sample_images

    photo = Image.fromarray(load_sample_images().images[0])  # china.jpg, 640 x 427
    framed = Image.new("RGB", (640 + 2 * 30, 427 + 2 * 60), (255, 255, 255))
    framed.paste(photo, (30, 60))
    assert imaging.content_box(framed) == (30, 60, 670, 487)
    assert imaging.content_box(photo) == (0, 0, 640, 427)
    assert imaging.content_box(Image.new("RGB", (200, 100), (9, 9, 9))) == (0, 0, 200, 100)  # all flat: untouched


def test_a_mirrored_picture_swaps_its_hashes_as_shown_and_mirrored():
    from sklearn.datasets import load_sample_images

    photo = Image.fromarray(load_sample_images().images[1])  # flower.jpg
    a, b = imaging.dedup_hashes(photo), imaging.dedup_hashes(ImageOps.mirror(photo))
    assert (b["phash_core"], b["dhash_core"]) == (a["phash_mirror"], a["dhash_mirror"])
    assert (b["phash_mirror"], b["dhash_mirror"]) == (a["phash_core"], a["dhash_core"])
    assert bin(a["phash_core"] ^ a["phash_mirror"]).count("1") > 20  # the photo is not symmetric
    h = ingest_hashes([a, b])
    assert h.long_distance(np.array([0]), np.array([1]), np.array([True])).tolist() == [0]  # a fixed bit flip
    assert h.long_distance(np.array([0]), np.array([1]), np.array([False])).tolist()[0] > 80


def test_earlier_run_indexes_without_the_dedup_hashes(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from curate.phases.dedup import dedup_hashes, prior_hashes

    base = {"key": ["a"], "sha256": ["s"], "phash": pa.array([5], pa.uint64()), "pixels": [4], "aesthetic": pa.array([None], pa.float32()),
            "run": ["old"]}
    pq.write_table(pa.table(base), tmp_path / "oldest.parquet")
    with pytest.raises(ValueError, match="has no dhash column"):
        prior_hashes([str(tmp_path / "oldest.parquet")])
    pq.write_table(pa.table({**base, "dhash": pa.array([7], pa.uint64())}), tmp_path / "older.parquet")
    h = dedup_hashes(prior_hashes([str(tmp_path / "older.parquet")]))
    assert (h.p.tolist(), h.d.tolist(), h.pm.tolist(), h.dm.tolist()) == ([5], [7], [5], [7])  # whole-picture hashes stand in
    assert h.long_known.tolist() == [False]  # no 256-bit pHash: pairs with it are confirmed on the 64-bit ones


def test_ray_shuffle_engine_equals_the_local_engine(ray_cluster):
    from curate.phases.dedup import ray_near_pairs

    rng = np.random.default_rng(8)
    h = planted(rng, 50, 4, 10, 12, 2000)
    local = near_pairs(h, 10, 12)
    shuffled = ray_near_pairs(h, 10, 12, blocks=4)
    assert as_set(shuffled) == as_set(local) and len(local.i) >= 150
    assert shuffled.mirrored.tolist() == local.mirrored.tolist() and shuffled.pdist.tolist() == local.pdist.tolist()


def test_the_window_column_holds_every_window():
    import pyarrow as pa

    from filters.windows import WINDOW_BYTES, WINDOWS, window_hashes
    from schemas.record import INGESTED

    assert INGESTED.field("windows").type == pa.binary(WINDOWS * WINDOW_BYTES)
    assert len(window_hashes(Image.new("RGB", (300, 200), (40, 90, 200)))) == WINDOWS * WINDOW_BYTES


def test_the_ray_window_search_finds_the_local_pairs(ray_cluster):
    from bench.dedup import uniform
    from curate.phases.dedup import ray_window_pairs
    from filters.mih import window_pairs
    from filters.windows import INSERTS, MIRRORED

    h, planted, _ = uniform(1_000)
    local = window_pairs(h, 10, 12, 72, len(INSERTS), MIRRORED)
    spread = ray_window_pairs(h, 10, 12, 72, len(INSERTS), MIRRORED, blocks=2)
    assert as_set(spread) == as_set(local) and {tuple(sorted(p)) for p in planted[-5:].tolist()} <= as_set(local)
