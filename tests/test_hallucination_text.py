"""Hallucination evidence from text: degeneration, noun phrases, OCR-checked text claims (real
RapidOCR on rendered images) and alt-text agreement (real all-MiniLM-L6-v2, offline)."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from curate.hallucination.claims import text_claims
from curate.hallucination.degeneration import degeneration
from curate.hallucination.ocr import OcrReader
from curate.hallucination.phrases import noun_phrases, sentences
from curate.hallucination.textmatch import judge

os.environ["HF_HUB_OFFLINE"] = "1"

DENSE = ("A red double-decker bus is parked beside a tall brick building on a rainy afternoon. "
         "Two people in yellow jackets stand near the curb, one holding a black umbrella, while "
         "warm light spills from the shop windows onto the wet pavement.")


# --- degeneration -------------------------------------------------------------------------

def test_clean_dense_caption_is_clean():
    d = degeneration(DENSE)
    assert d.repeated_ngrams == 0 and d.repeated_spans == []
    assert not d.loop and not d.truncated and d.boilerplate == "" and d.language == "en"


def test_loops_and_repeats_are_found_and_located():
    text = "A cat sits on a mat. The cat is grey and the cat is grey and the cat is grey and the cat is grey."
    d = degeneration(text)
    assert d.loop and d.repeated_ngrams > 0.3
    (start, end), = d.repeated_spans
    assert text[start:end].startswith("the cat is grey") and end == len(text) - 1
    assert degeneration("The sign is red red red red.").loop
    assert not degeneration("A red, red apple.").loop  # twice is language
    assert not degeneration("Two chairs stand side by side by the window.").loop


def test_loops_of_long_phrases_with_small_changes():
    phrase = "a small wooden boat rests on the calm water near the".split()   # 11 words
    reps = []
    for i, word in enumerate(["old", "quiet", "grey"]):   # one word changed in each repetition
        rep = list(phrase)
        rep[1 + i] = word
        reps += rep
    text = "The harbour is quiet at dawn, and " + " ".join(reps) + " shore."
    d = degeneration(text)
    assert d.loop and d.duplicate_sentences == []
    assert not degeneration(DENSE).loop


def test_near_duplicate_sentences():
    text = "A dog runs on the beach. The sky is clear and blue. A dog runs along the beach."
    d = degeneration(text)
    assert d.duplicate_sentences == [(text.index("A dog runs along"), len(text))] and not d.loop
    parallel = "The left wall is painted white. The right wall is covered with framed maps."
    assert degeneration(parallel).duplicate_sentences == []


@pytest.mark.parametrize("text", [
    "A woman holds a cup of coffee and",      # dangling conjunction
    "A woman holds a cup of cof",             # mid-word
    "A man sits on a bench next to a",        # dangling article
    'A sign that reads "OPEN.',               # unclosed quote
    "The table is set for dinner...",         # trailing off
    "A brass plaque by the door names Dr.",   # a title abbreviation (pysbd's list)
    "The house on the corner is No.",
    "Items on the shelf: 1. a teapot, 2. a stack of plates, 3.",   # the next item number
])
def test_truncated(text):
    assert degeneration(text).truncated


@pytest.mark.parametrize("text", ['A sign reads "OPEN."', "A dog (a beagle) runs!", "Is it a cat?",
                                  "The house number is 3.", "A bench to sit on.", "It opens at 9 a.m."])
def test_not_truncated(text):
    assert not degeneration(text).truncated


@pytest.mark.parametrize(("text", "opener"), [
    ("The image shows a cat on a sofa.", "The image shows"),
    ("In this image, a cat sleeps.", "In this image"),
    ("This image depicts a harbour at dawn.", "This image depicts"),
    ("The picture features two dogs.", "The picture features"),
    ("Sure! Here is a detailed description: a dog.", "Sure! Here is a detailed description:"),
    ("As an AI, I cannot see images.", "As an AI"),
    ("An image.", "An image."),
    ("Image description: a dog on a lawn.", "Image description:"),
    ("The photo you provided shows a dog.", "The photo you provided"),
    ("A dog on a lawn. I hope this helps!", "I hope this helps!"),
    ("A dog on a lawn. Let me know if you need more details.", "Let me know if you need more details."),
    ("A cat on a sofa.", ""),
])
def test_boilerplate(text, opener):
    assert degeneration(text).boilerplate == opener


@pytest.mark.parametrize(("text", "lang"), [
    ("Ein roter Bus steht vor einem hohen Gebäude, und zwei Menschen warten auf den Bus.", "de"),
    ("Un bus rouge est garé devant un grand bâtiment, et deux personnes attendent sur le trottoir.", "fr"),
    ("一辆红色的双层巴士停在一座高大的砖砌建筑旁边。", "zh"),
    ("Czerwony autobus stoi przed wysokim budynkiem, a dwie osoby czekają na przystanku.", "pl"),
    ("Red bus.", "und"),
])
def test_language(text, lang):
    d = degeneration(text)
    assert d.language == lang and d.other_languages == []
    assert d.language_confidence >= 0.9 or lang == "und"


@pytest.mark.parametrize(("text", "other"), [
    (DENSE + " Dwie osoby czekają na przystanku autobusowym, a niebo jest pochmurne i szare.", ["pl"]),
    ("A red double-decker bus is parked beside a tall brick building, 两个人站在路边等车 while rain falls.", ["zh"]),
])
def test_mixed_language(text, other):
    d = degeneration(text)
    assert {d.language, *d.other_languages} == {"en", *other}


# --- sentences and noun phrases -----------------------------------------------------------

SHARE = ("The image shows a red double-decker bus parked beside a tall brick building. "
         "Two people in yellow jackets stand near the curb. In the background, a shop sign that "
         "reads 'OPEN' hangs above a framed window, and the overall atmosphere is calm and serene. "
         "A red double-decker bus is visible in the foreground.")


def test_sentences_keep_offsets():
    spans = sentences(SHARE)
    assert len(spans) == 4 and spans[1].text == "Two people in yellow jackets stand near the curb."
    assert all(SHARE[s.start:s.end] == s.text for s in spans)


def test_noun_phrases_of_a_dense_caption():
    phrases = noun_phrases(SHARE)
    texts = [p.text for p in phrases]
    for expected in ["a red double-decker bus", "a tall brick building", "Two people", "yellow jackets",
                     "the curb", "a shop sign", "a framed window"]:
        assert expected in texts
    assert all(SHARE[p.start:p.end] == p.text for p in phrases)
    lowered = " ".join(texts).lower()
    for abstract in ["image", "background", "foreground", "atmosphere", "calm", "serene", "open"]:
        assert abstract not in lowered
    # deduplicated case-insensitively, first occurrence kept
    buses = [p for p in phrases if p.text.lower() == "a red double-decker bus"]
    assert len(buses) == 1 and buses[0].start == SHARE.index("a red double-decker bus")


def test_noun_phrases_stop_at_verbs_and_participles():
    texts = [p.text for p in noun_phrases(
        "A woman wearing a long blue coat walks a small white dog along the sidewalk, "
        "while a hanging lamp casts soft light over a table covered with dishes.")]
    assert texts == ["A woman", "a long blue coat", "a small white dog", "the sidewalk",
                     "a hanging lamp", "soft light", "a table", "dishes"]


# --- text claims and OCR ------------------------------------------------------------------

def test_text_claims_patterns():
    cases = {
        'A sign that reads "BAKERY" over the door.': ["BAKERY"],
        "A mug with “Good Morning” and a box labeled Fragile.": ["Good Morning", "Fragile"],
        "A banner with the words Happy Birthday. The sign says OPEN.": ["Happy Birthday", "OPEN"],
        "A sticker with the text: SALE 50% OFF, and the word hello.": ["SALE 50% OFF", "hello"],
        "A menu reading Soup of the Day beside a ‘Café’ logo.": ["Soup of the Day", "Café"],
        "The man’s dog chases the cats' ball near a brick building.": [],
        "The word on the sign is blurry.": [],
        "The word printed on the front is hard to read.": [],     # a participle, not the word
        "A cozy room with a 'vintage' feel.": [],                 # scare quotes
        "A girl reads a book under a tree.": [],
        "A mug printed with 'World's Best Dad' on it.": ["World's Best Dad"],
        "Her shirt has the word love written across it.": ["love"],
        "A novel titled The Silent Forest lies open.": ["The Silent Forest"],
    }
    for caption, expected in cases.items():
        claims = text_claims(caption)
        assert [c.text for c in claims] == expected, caption
        assert all(caption[c.start:c.end] == c.text for c in claims)


def _render(word: str, size=(640, 360), font=64, xy=(60, 130), noisy=False) -> Image.Image:
    if noisy:  # photo-like: smooth colour blobs plus grain, white text with a dark outline
        rng = np.random.default_rng(0)
        img = Image.fromarray((rng.random((9, 16, 3)) * 255).astype(np.uint8)).resize(size, Image.BICUBIC)
        grain = rng.integers(-25, 25, (size[1], size[0], 3))
        img = Image.fromarray((np.asarray(img).astype(np.int16) + grain).clip(0, 255).astype(np.uint8))
        fill, stroke = (255, 255, 255), (0, 0, 0)
    else:
        img, fill, stroke = Image.new("RGB", size, (235, 232, 225)), (25, 25, 30), None
    ImageDraw.Draw(img).text(xy, word, fill=fill, font=ImageFont.load_default(size=font),
                             stroke_width=3 if noisy else 0, stroke_fill=stroke)
    return img


@pytest.fixture(scope="module")
def reader() -> OcrReader:
    return OcrReader()


def test_ocr_flags_the_wrong_word_not_the_right_one(reader):
    lines = reader.read(_render("BAKERY"))
    assert [line.text for line in lines] == ["BAKERY"]
    assert len(lines[0].char_scores) == 6 and min(lines[0].char_scores) >= 0.9
    assert judge("Bakery", lines).outcome == "found"
    one_letter = judge("BAKERI", lines)   # a one-letter error in a confidently read word
    assert (one_letter.outcome, one_letter.read, one_letter.distance) == ("not_found", "BAKERY", 1)
    assert one_letter.confidence >= 0.9
    assert judge("PHARMACY", lines).outcome == "not_found"


def test_ocr_on_a_noisy_photo_background(reader):
    lines = reader.read(_render("Garden Market", noisy=True))
    assert [judge(c, lines).outcome for c in ["Garden Market", "Harbour Hotel", "Garden"]] == ["found", "not_found", "found"]


def test_ocr_blank_and_big_images(reader):
    assert reader.read(Image.new("RGB", (500, 300), "white")) == []
    assert judge("OPEN", []).outcome == "unsure"   # nothing read is not "not found"
    big = _render("STATION", size=(3840, 2160), font=260, xy=(900, 900))
    assert [judge(c, reader.read(big)).outcome for c in ["STATION", "MUSEUM"]] == ["found", "not_found"]


# --- alt-text agreement -------------------------------------------------------------------

def test_alt_text_agreement():
    from curate.hallucination.alttext import AltTextAgreement

    captions = ["A red double-decker bus parked beside a tall brick building in London.",
                "A bowl of tomato soup on a wooden table next to a silver spoon.",
                "A cat asleep on a sofa.", "A dog."]
    alts = ["London double decker bus on Oxford Street", "homemade tomato soup recipe", None, "  "]
    agreement = AltTextAgreement(batch_size=2)  # batches of 2: the batching is exercised
    own = agreement.score(captions, alts)
    swapped = agreement.score(captions[:2], alts[1::-1])
    assert own[2] is None and own[3] is None
    assert own[0] > swapped[0] + 0.2 and own[1] > swapped[1] + 0.2
    assert all(-1.0 <= s <= 1.0 for s in own[:2] + swapped)
