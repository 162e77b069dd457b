"""Claims compared as text (found / not found / unsure), the tile pass of real RapidOCR on small
text, the scorer reading an image once, the confidence-weighted score, and the report's marks."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from curate.hallucination.combine import combine
from curate.hallucination.ocr import OcrLine
from curate.hallucination.textmatch import judge, judge_all
from schemas.job import HallucinationWeights


def line(text: str, score: float = 0.99, low: dict[int, float] | None = None) -> OcrLine:
    """An OCR line as RapidOCR reports it; `low` gives some characters (index among the
    non-space characters) a lower score."""
    scores = [score] * len(text.replace(" ", ""))
    for i, s in (low or {}).items():
        scores[i] = s
    return OcrLine(text, score, tuple(scores))


# --- the comparison ---------------------------------------------------------------------------

def test_word_boundaries_are_respected():
    read = [line("History of Bedrooms")]
    assert judge("history", read).outcome == "found"
    story = judge("story", read)   # inside a longer word is not found
    assert (story.outcome, story.read, story.distance) == ("not_found", "History", 2)
    assert judge("room", read).outcome == "not_found"
    assert judge("History of", read).outcome == "found"


@pytest.mark.parametrize(("claim", "outcome", "distance"), [
    ("BAKERY", "found", 0),
    ("bakery", "found", 0),          # case and punctuation do not count
    ("Bakery!", "found", 0),
    ("BAKERI", "not_found", 1),      # one letter changed
    ("BAKRY", "not_found", 1),       # one letter dropped
    ("BAKERY OPEN", "not_found", 4),  # an extra word
])
def test_one_letter_errors_of_confidently_read_words_are_caught(claim, outcome, distance):
    v = judge(claim, [line("BAKERY")])
    assert (v.outcome, v.distance) == (outcome, distance)
    assert v.confidence == pytest.approx(0.99)


def test_low_confidence_where_they_differ_is_unsure_not_a_flag():
    read = [line("Exxt", 0.8, low={2: 0.55})]   # OCR unsure of the third letter
    v = judge("Exit", read)
    assert (v.outcome, v.confidence, v.read) == ("unsure", pytest.approx(0.55), "Exxt")
    # the same difference read confidently is a wrong claim
    assert judge("Exit", [line("Exxt")]).outcome == "not_found"


def test_nothing_read_is_unsure_and_other_text_is_not_found_less_surely():
    assert judge("OPEN", []).outcome == "unsure"
    assert judge("OPEN", []).confidence == 0.0
    elsewhere = judge("Pharmacy", [line("Fresh Bread")])
    assert elsewhere.outcome == "not_found" and elsewhere.confidence == pytest.approx(0.7)
    assert judge("Pharmacy", [line("Fresh Bread", 0.6)]).outcome == "unsure"


def test_merged_and_multiline_readings():
    assert judge("Fresh Bread", [line("FreshBread")]).outcome == "found"   # OCR merged the words
    assert judge("Bread", [line("FreshBread")]).outcome == "found"        # at a case change
    assert judge("Brooklyn Bridge Library", [line("Brooklyn"), line("Bridge Library")]).outcome == "found"
    assert judge("咖啡", [line("欢迎光临咖啡店")]).outcome == "found"   # no spaces between Chinese words
    assert judge("茶馆", [line("欢迎光临咖啡店")]).outcome == "not_found"
    # the best of two passes decides: found in either is found
    assert judge_all("Harbour Hotel", [[line("Harbour")], [line("Harbour Hotel")]]).outcome == "found"
    assert judge_all("Harbour Hotel", [[], [line("Harbor Hotel")]]).outcome == "not_found"


# --- real OCR: the tile pass ------------------------------------------------------------------

def _small_text(word: str) -> Image.Image:
    """12 px grey text in a corner of a 1280x720 photo-like picture."""
    rng = np.random.default_rng(3)
    img = Image.fromarray((rng.random((6, 10, 3)) * 90 + 120).astype(np.uint8)).resize((1280, 720), Image.BICUBIC)
    ImageDraw.Draw(img).text((1040, 640), word, fill=(40, 40, 40), font=ImageFont.load_default(size=12))
    return img


@pytest.fixture(scope="module")
def reader():
    from curate.hallucination.ocr import OcrReader

    return OcrReader()


def test_tile_pass_reads_small_text_the_whole_image_pass_misses(reader):
    image = _small_text("Harbour Hotel")
    first, tiles = reader.read(image), reader.read_tiles(image)
    assert judge("Harbour Hotel", first).outcome != "found"
    assert judge("Harbour Hotel", tiles).outcome == "found"
    assert judge_all("Harbour Hotel", [first, tiles]).outcome == "found"


# --- the scorer ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def scorer():
    from curate.hallucination.scorer import CaptionScorer
    from curate.jobs import load_job
    from tests.conftest import DEMO_JOB, NO_EMBEDDING

    return CaptionScorer(load_job(DEMO_JOB, [*NO_EMBEDDING, "hallucination.alt_agreement=false"]))


def test_scorer_reads_an_image_once_for_all_its_claiming_captions(scorer, monkeypatch):
    runs = []
    real = scorer.ocr._run
    monkeypatch.setattr(scorer.ocr, "_run", lambda image: runs.append(image.size) or real(image))
    image = Image.new("RGB", (640, 360), (235, 232, 225))
    ImageDraw.Draw(image).text((60, 130), "BAKERY", fill=(25, 25, 30), font=ImageFont.load_default(size=64))
    right, wrong, plain = scorer.score([image] * 3, ['A sign reads "BAKERY".', 'A sign reads "BAKERI".', "A wall."], [None] * 3)
    assert len(runs) == 1 + 4   # the whole image, then the 2x2 tiles once (for the unconfirmed claim)
    assert [c["outcome"] for c in right["text_claims"]] == ["found"] and right["flags"] == []
    (claim,) = wrong["text_claims"]
    assert (claim["outcome"], claim["found"], claim["read"]) == ("not_found", False, "BAKERY")
    assert wrong["flags"] == ["text_not_found"] and plain["ocr_text"] is None
    # the fallback path scores the same image again: no new reading
    again = scorer.score([image.copy()], ['A sign reads "BAKERY".'], [None])
    assert len(runs) == 5 and again[0]["text_claims"][0]["outcome"] == "found"
    # the confidently wrong claim alone (CLIP and alt text off) crosses the default threshold
    assert wrong["score"] > 0.5 and {s["name"] for s in wrong["signals"]} == {"text_not_found", "degeneration"}


# --- the combined score -----------------------------------------------------------------------

def evidence(**changes) -> dict:
    ev = {"sentences": [], "phrases": [], "text_claims": [], "repeated_ngrams": 0.0, "loop": False,
          "duplicate_sentences": [], "truncated": False, "boilerplate": "", "language": "en",
          "language_confidence": 0.99, "other_languages": [], "alt_agreement": None}
    return ev | changes


def claim(outcome: str, confidence: float) -> dict:
    return {"text": "OPEN", "outcome": outcome, "confidence": confidence,
            "found": {"found": True, "not_found": False}.get(outcome)}


W = HallucinationWeights()


def test_no_single_uncertain_signal_crosses_the_default_threshold():
    unsure, *_ = combine(evidence(text_claims=[claim("unsure", 0.0)]), W, "en")
    assert unsure == pytest.approx(0.2 * 0.3 / 0.35, abs=1e-4) and unsure < 0.5
    elsewhere, *_ = combine(evidence(text_claims=[claim("not_found", 0.7)]), W, "en")
    assert elsewhere == pytest.approx(0.2 * 0.7 / 0.35, abs=1e-4) and elsewhere < 0.5
    sure, flags, signals = combine(evidence(text_claims=[claim("not_found", 0.98)]), W, "en")
    assert sure == pytest.approx(0.2 * 0.98 / 0.35, abs=1e-4) and sure > 0.5 and flags == ["text_not_found"]
    assert signals == [{"name": "text_not_found", "value": 1.0, "confidence": 0.98},
                       {"name": "degeneration", "value": 0.0, "confidence": 1.0}]
    # CLIP on one weak sentence, without phrases: confidence 1/2
    one_weak, *_ = combine(evidence(sentences=[{"clip": 0.1, "weak": True}]), W, "en")
    assert one_weak == pytest.approx(0.25 * 0.5 / 0.4, abs=1e-4) and one_weak < 0.5
    alt, *_ = combine(evidence(alt_agreement=-0.2), W, "en")
    assert alt == pytest.approx(0.1 * 1.0 * 0.5 / 0.25, abs=1e-4) and alt < 0.5


def test_agreeing_signals_cross_together():
    ev = evidence(text_claims=[claim("not_found", 0.7)], truncated=True, alt_agreement=0.0)
    score, flags, _ = combine(ev, W, "en")
    assert score == pytest.approx((0.2 * 0.7 + 0.15 * 0.5 + 0.1 * 0.5) / 0.45, abs=1e-4)
    assert flags == ["text_not_found", "truncated", "alt_disagreement"]


def test_unsure_claims_are_flagged_apart_and_mixed_languages_flag_language():
    _, flags, _ = combine(evidence(text_claims=[claim("found", 0.99), claim("unsure", 0.4)]), W, "en")
    assert flags == ["text_unsure"]
    _, flags, signals = combine(evidence(other_languages=["pl"]), W, "en")
    assert flags == ["language"] and signals[-1] == {"name": "degeneration", "value": 1.0, "confidence": 0.9}


# --- the report ---------------------------------------------------------------------------------

def test_report_marks_unsure_claims_apart_with_what_ocr_read():
    from curate.report.highlight import caption_spans, highlight

    caption = 'A sign reads "OPEN" and a label says "SALE".'
    ev = evidence(ocr_text="OPFN", text_claims=[
        {"text": "OPEN", "start": 14, "end": 18, "found": False, "outcome": "not_found", "confidence": 0.97, "read": "OPFN"},
        {"text": "SALE", "start": 39, "end": 43, "found": None, "outcome": "unsure", "confidence": 0.0, "read": ""}])
    spans = caption_spans(ev)
    assert [(s.cls, s.text) for s in spans] == [("h-claim", "OPEN"), ("h-unsure", "SALE")]
    assert "nearest OCR reading \u201cOPFN\u201d (confidence 0.97)" in spans[0].tip
    assert "unsure: OCR read \u201cOPFN\u201d" in spans[1].tip
    page = highlight(caption, spans)
    assert '<mark class="h-claim"' in page and '<mark class="h-unsure"' in page


def test_a_real_photograph_without_legible_text_gives_unsure_not_a_flag(scorer):
    """scikit-image's coffee photograph (shipped in its wheel): OCR reads a stray '8' with a low
    score. A claimed word on it is not confidently "not found", so it cannot drop the sample alone."""
    import skimage.data

    (row,) = scorer.score([Image.fromarray(skimage.data.coffee())],
                          ['A cup of coffee on a saucer, the foam spelling "LATTE".'], [None])
    (claim,) = row["text_claims"]
    assert claim["outcome"] == "unsure" and claim["found"] is None
    assert "text_unsure" in row["flags"] and "text_not_found" not in row["flags"] and row["score"] < 0.5
