"""Hallucination scoring: CLIP mechanics on the tiny model, the combined score, the job's
actions (flag, drop, fall back) in the scoring actor, the optional detector, and the demo run's
stored evidence."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image, ImageDraw, ImageFont

from curate.hallucination.clipcheck import Baseline, ClipChecker, baseline
from curate.hallucination.combine import combine
from curate.hallucination.phrases import sentences
from schemas.job import HallucinationWeights
from tests.conftest import DEMO_JOB, demo_overrides

LONG = ("A red double-decker bus is parked beside a tall brick building. Two people stand near the curb. "
        + "The facade has " + ", ".join(f"window number {i}" for i in range(40)) + ". "
        + "A black umbrella leans on a lamp post. Rain falls on the wet pavement.")


def picture(colour: str, word: str | None = None, size=(640, 360)) -> Image.Image:
    img = Image.new("RGB", size, colour)
    if word:
        ImageDraw.Draw(img).text((60, 130), word, fill=(20, 20, 25), font=ImageFont.load_default(size=72))
    return img


def demo_job(corpus, tiny_vlm, tmp_path, *sets: str):
    from curate.jobs import load_job

    return load_job(DEMO_JOB, [*demo_overrides(corpus, tiny_vlm, tmp_path / "out"), *sets])


@pytest.fixture(scope="module")
def checker(corpus, tiny_vlm, tiny_clip, tmp_path_factory) -> ClipChecker:
    job = demo_job(corpus, tiny_vlm, tmp_path_factory.mktemp("clip"))
    return ClipChecker(job.filters.aesthetics, "cpu")


def test_clip_scores_each_sentence_of_a_caption_longer_than_the_window(checker):
    sents = [s.text for s in sentences(LONG)]
    assert len(sents) == 5 and len(checker.tokenizer([sents[2]])[0]) == 77  # the long one is cut, not an error
    images = [picture("white"), picture("navy"), picture("orange")]
    emb = checker.embed_images(images)
    assert emb.shape == (3, 32) and np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
    sent, weak, phr, grounded = checker.judge(emb[0], sents, ["a red bus", "a black umbrella"], 0.0, 0.0)
    assert sent.shape == weak.shape == (5,) and phr.shape == grounded.shape == (2,)
    # each score is that sentence alone against the image, whatever its neighbours
    alone = checker.embed_texts([sents[3]]) @ emb[0]
    assert np.isclose(sent[3], alone[0], atol=1e-5)
    rev, _, rphr, _ = checker.judge(emb[0], sents[::-1], ["a black umbrella", "a red bus"], 0.0, 0.0)
    assert np.allclose(rev, sent[::-1], atol=1e-5) and np.allclose(rphr, phr[::-1], atol=1e-5)


def test_clip_thresholds_are_relative_to_the_images_unrelated_scores(checker):
    emb = checker.embed_images([picture("white")])[0]
    sents, phrases = [s.text for s in sentences(LONG)], ["a red bus", "two people", "a lamp post"]
    _, weak, _, grounded = checker.judge(emb, sents, phrases, -1e6, -1e6)
    assert not weak.any() and grounded.all()
    _, weak, _, grounded = checker.judge(emb, sents, phrases, 1e6, 1e6)
    assert weak.all() and not grounded.any()
    base = baseline(emb, checker.unrelated)
    _, _, _, grounded = checker.judge(emb, [], phrases, 0.0, 0.5)
    assert grounded.tolist() == [s >= base.mean + 0.5 * base.sd for s in (checker.embed_texts([f"a photo of {p}" for p in phrases]) @ emb)]
    assert Baseline(0.2, 0.05).above(np.array([0.19, 0.25, 0.31]), 1.0).tolist() == [False, True, True]


def evidence(**changes) -> dict:
    ev = {"sentences": [{"clip": 0.3, "weak": False}, {"clip": 0.1, "weak": False}],
          "phrases": [{"clip": 0.3, "grounded": True}], "text_claims": [], "repeated_ngrams": 0.0,
          "loop": False, "truncated": False, "boilerplate": "", "language": "en", "alt_agreement": None}
    return ev | changes


def test_combined_score_is_the_weighted_mean_of_the_measured_signals():
    w = HallucinationWeights()
    assert combine(evidence(), w, "en")[:2] == (0.0, [])
    ev = evidence(sentences=[{"clip": 0.3, "weak": True}, {"clip": 0.1, "weak": False}],
                  phrases=[{"clip": 0.1, "grounded": False}, {"clip": 0.1, "grounded": False}])
    score, flags, signals = combine(ev, w, "en")   # CLIP shares over n items count n/(n+1)
    assert score == pytest.approx((0.25 * 0.5 * 2 / 3 + 0.3 * 1 * 2 / 3) / 0.7, abs=1e-4)
    assert flags == ["weak_sentences", "ungrounded_phrases"]
    assert signals[:2] == [{"name": "weak_sentences", "value": 0.5, "confidence": 0.6667},
                           {"name": "ungrounded_phrases", "value": 1.0, "confidence": 0.6667}]
    # a missing alt text is left out, a disagreeing one counts at half confidence
    assert combine(evidence(alt_agreement=0.0), w, "en")[0] == pytest.approx(0.1 * 0.5 / 0.8, abs=1e-4)
    assert "alt_disagreement" in combine(evidence(alt_agreement=0.05), w, "en")[1]
    # claims checked by OCR: one of two not found, read with confidence 0.99
    claims = [{"text": "OPEN", "outcome": "found", "confidence": 0.99}, {"text": "SALE", "outcome": "not_found", "confidence": 0.99}]
    assert combine(evidence(text_claims=claims), w, "en")[:2] == (pytest.approx(0.2 * 0.5 * 0.99 / 0.9, abs=1e-4), ["text_not_found"])
    # degeneration: a loop or the wrong language is the worst, truncation half of it
    assert combine(evidence(loop=True), w, "en")[0] == pytest.approx(0.15 / 0.7, abs=1e-4)
    assert combine(evidence(language="de"), w, "en")[1] == ["language"]
    assert combine(evidence(truncated=True, boilerplate="The image shows"), w, "en")[:2] == (
        pytest.approx(0.15 * 0.5 / 0.7, abs=1e-4), ["truncated", "boilerplate"])
    only_text = HallucinationWeights(weak_sentences=0, ungrounded_phrases=0, text_not_found=0, alt_disagreement=0)
    assert combine(evidence(loop=True, sentences=[{"clip": 0, "weak": True}]), only_text, "en")[0] == 1.0


def caption_batch(dense: list[str], short: list[str], prep_errors: list[str]):
    """What the last captioner actor hands the scorer: pixels plus every captioner's raw text."""
    from curate.phases.caption import prepared_row, with_columns
    from schemas.record import PREPARED, rows_to_table

    n = len(dense)
    rows = [prepared_row("u", f"k{i}", None, None if err else picture(c), err or None)
            for i, (c, err) in enumerate(zip(("white", "navy", "orange"), prep_errors))]
    return with_columns(rows_to_table(rows, PREPARED), {"raw_dense": dense, "err_dense": [""] * n, "finish_dense": ["stop"] * n,
                                                        "raw_short": short, "err_short": [""] * n, "finish_short": ["stop"] * n})


# only degeneration decides, and the random tiny CLIP neither weakens nor ungrounds anything
TEXT_ONLY = ["hallucination.weights.weak_sentences=0", "hallucination.weights.ungrounded_phrases=0",
             "hallucination.weights.text_not_found=0", "hallucination.weights.alt_disagreement=0",
             "hallucination.sentence_z=-1000000", "hallucination.phrase_z=-1000000"]
# post-processing repairs loops before scoring; a caption in the wrong language survives it
WRONG_LANGUAGE = "Eine graue Katze schläft auf einer Matte und der Hund ist nicht im Garten."
CLEAN = "A grey cat sleeps on a woven mat."


@pytest.mark.parametrize("action", ["flag", "drop", "fallback"])
def test_scoring_actor_applies_the_jobs_action(action, corpus, tiny_vlm, tiny_clip, tmp_path):
    from curate.phases.caption import ScoreActor
    from schemas.reasons import Reason

    sets = [*TEXT_ONLY, f"hallucination.action={action}", "hallucination.threshold=0.5", "hallucination.alt_agreement=false"]
    if action == "fallback":
        sets.append("hallucination.fallback_captioner=short")
    job = demo_job(corpus, tiny_vlm, tmp_path, *sets)
    rows = ScoreActor(job.model_dump_json())(caption_batch([WRONG_LANGUAGE, CLEAN, CLEAN], [CLEAN, WRONG_LANGUAGE, CLEAN], ["", "", "OSError: gone"])).to_pylist()
    looped, clean, unreadable = rows
    assert unreadable["status"] == Reason.READ_ERROR and unreadable["hallucination"] is None
    assert clean["status"] == "captioned" and clean["hallucination"] == {"score": 0.0, "flags": []}
    assert clean["evidence"]["captioner"] == "dense"
    if action == "flag":
        assert looped["status"] == "captioned" and looped["hallucination"]["score"] == 1.0 and "language" in looped["hallucination"]["flags"]
    elif action == "drop":
        assert looped["status"] == Reason.HALLUCINATION and "hallucination score 1.00 > 0.5 (language" in looped["detail"]
    else:
        assert looped["status"] == "captioned" and looped["caption"] == CLEAN and looped["hallucination"]["score"] == 0.0
        assert looped["evidence"]["captioner"] == "short" and "used short's caption" in looped["detail"]
    assert [s["text"] for s in clean["evidence"]["sentences"]] == [CLEAN]


def test_scorer_checks_claimed_text_with_ocr(corpus, tiny_vlm, tiny_clip, tmp_path):
    from curate.hallucination.scorer import CaptionScorer

    scorer = CaptionScorer(demo_job(corpus, tiny_vlm, tmp_path, "hallucination.alt_agreement=false"))
    image = picture("white", "BAKERY")
    right, wrong, none = scorer.score([image] * 3, ['A shop sign reads "BAKERY".', 'A shop sign reads "PHARMACY".', "A white wall."],
                                      [None] * 3)
    assert [c["found"] for c in right["text_claims"]] == [True] and "text_not_found" not in right["flags"]
    assert [c["found"] for c in wrong["text_claims"]] == [False] and "text_not_found" in wrong["flags"]
    assert "BAKERY" in wrong["ocr_text"] and none["text_claims"] == [] and none["ocr_text"] is None


def test_detector_decides_grounding_when_the_job_names_one(corpus, tiny_vlm, tiny_clip, tmp_path):
    from curate.hallucination.detector import PhraseDetector
    from curate.hallucination.scorer import CaptionScorer
    from curate.tinymodels import build_tiny_owlv2
    from schemas.job import DetectorConfig

    owl = build_tiny_owlv2(tmp_path / "owl")
    image = picture("orange")
    assert PhraseDetector(DetectorConfig(model=str(owl), threshold=0.5), "cpu").detected(image, ["a red bus", "a dog"]) == [True, True]
    assert PhraseDetector(DetectorConfig(model=str(owl), threshold=1.0), "cpu").detected(image, ["a red bus", "a dog"]) == [False, False]
    job = demo_job(corpus, tiny_vlm, tmp_path, f"hallucination.detector.model={owl}", "hallucination.detector.threshold=1.0",
                   "hallucination.phrase_z=-1000", "hallucination.ocr=false", "hallucination.alt_agreement=false")
    ev, = CaptionScorer(job).score([image], ["A red bus passes a dog."], [None])
    # CLIP alone would ground everything at z=-1000; the detector (finding nothing) decides
    assert [p["text"] for p in ev["phrases"]] == ["A red bus", "a dog"] and not any(p["grounded"] for p in ev["phrases"])
    assert all(p["clip"] is not None for p in ev["phrases"]) and "ungrounded_phrases" in ev["flags"]


def test_demo_run_stores_the_evidence_of_every_written_caption(demo_run):
    from curate.jobs import load_job

    root = demo_run.run_dir
    index = {r["key"]: r for r in pq.read_table(root / "index").to_pylist()}
    table = pq.read_table(root / "report" / "hallucinations.parquet")
    evidence = {r["key"]: r for r in table.to_pylist()}
    assert evidence.keys() == index.keys()
    job = load_job(DEMO_JOB)
    for key, ev in evidence.items():
        caption = index[key]["caption"]
        assert index[key]["hallucination"] == {"score": pytest.approx(ev["score"]), "flags": ev["flags"]}
        assert 0.0 <= ev["score"] <= 1.0 and (ev["score"], ev["flags"]) == (pytest.approx(combine(ev, job.hallucination.weights, "en")[0], abs=1e-4),
                                                                           combine(ev, job.hallucination.weights, "en")[1])
        for span in [*ev["sentences"], *ev["phrases"], *ev["text_claims"]]:
            assert caption[span["start"]:span["end"]] == span["text"]
        assert all(s["clip"] is not None for s in ev["sentences"])
    flagged = sum(bool(ev["flags"]) for ev in evidence.values())
    summary = demo_run.manifest["hallucination"]
    assert summary["scored"] == len(index) and flagged >= max(summary["flags"].values(), default=0)


def test_a_run_that_drops_hallucinated_captions_accounts_for_them(corpus, tiny_vlm, tiny_clip, ray_cluster, tmp_path):
    from curate.runner import run_job

    job = demo_job(corpus, tiny_vlm, tmp_path, "hallucination.action=drop", "hallucination.threshold=0.3")
    result = run_job(job, DEMO_JOB, limit=20)
    counts = result.manifest["counts"]
    dropped = [r for r in pq.read_table(result.run_dir / "rejects").to_pylist() if r["reason"] == "hallucination"]
    assert dropped and counts["rejected"]["hallucination"] == len(dropped)
    assert all(r["phase"] == "caption" and r["outcome"] == "rejected" and "> 0.3" in r["detail"] for r in dropped)
    index = pq.read_table(result.run_dir / "index").to_pylist()
    assert index and all(r["hallucination"]["score"] <= 0.3 for r in index)
    assert counts["inputs"] == counts["written"] + sum(counts["rejected"].values()) + sum(counts["failed"].values())


def test_scorer_reads_ingest_embeddings_without_an_image_tower(checker, corpus, tiny_vlm, tiny_clip, tmp_path):
    """Given ingest's embeddings, the scorer's CLIP keeps only its text tower and its evidence is
    the same as when it embeds the images itself."""
    from curate.hallucination.scorer import CaptionScorer

    job = demo_job(corpus, tiny_vlm, tmp_path, "hallucination.alt_agreement=false", "hallucination.ocr=false")
    images = [picture("navy"), picture("orange")]
    captions = ["A navy square. It has no text.", "An orange field under a grey sky."]
    full = CaptionScorer(job)
    text_only = CaptionScorer(job, image_tower=False)
    assert text_only.clip.model.visual is None and full.clip.model.visual is not None
    embeddings = checker.embed_images(images).astype(np.float16).astype(np.float32)   # as stored: float16
    assert text_only.score(images, captions, [None, None], embeddings) == full.score(images, captions, [None, None], embeddings)
    assert text_only.clip.model.visual is None, "the image tower was loaded although embeddings were given"
    mine = full.score(images, captions, [None, None])
    theirs = text_only.score(images, captions, [None, None], embeddings)
    for a, b in zip(mine, theirs):
        assert [s["clip"] for s in a["sentences"]] == pytest.approx([s["clip"] for s in b["sentences"]], abs=2e-3)


def test_demo_run_scored_captions_against_the_stored_ingest_embedding(demo_run, checker):
    """The evidence's sentence scores are cosines with the embedding ingest stored (float16): the
    caption phase did not embed the image again."""
    root = demo_run.run_dir
    stored = {r["key"]: r["embedding"] for f in (root / "_work" / "ingest").glob("*.parquet")
              for r in pq.read_table(f, columns=["key", "embedding"]).to_pylist()}
    ev = next(r for r in pq.read_table(root / "report" / "hallucinations.parquet").to_pylist() if r["sentences"])
    emb = np.asarray(stored[ev["key"]], np.float32)
    expected = checker.embed_texts([s["text"] for s in ev["sentences"]]) @ emb
    assert [s["clip"] for s in ev["sentences"]] == pytest.approx(expected.tolist(), abs=1e-4)
