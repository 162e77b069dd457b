"""All hallucination checks of a batch of captions, free of Ray (the caption phase wraps it in
an actor). Models load once: CLIP (the job's aesthetics model; only its text tower when the
images' embeddings come from ingest), OCR, the alt-text embedder and
an optional open-vocabulary detector; each is skipped when the job turns it off.
"""

from __future__ import annotations

import hashlib

from PIL import Image

from curate.hallucination.claims import text_claims
from curate.hallucination.combine import combine
from curate.hallucination.degeneration import degeneration
from curate.hallucination.ocr import OcrReader
from curate.hallucination.phrases import noun_phrases, sentences
from curate.hallucination.textmatch import judge_all
from schemas.job import Job

READINGS_KEPT = 256   # images whose OCR readings the scorer remembers


class CaptionScorer:
    def __init__(self, job: Job, device: str = "cpu", image_tower: bool = True):
        """`image_tower=False`: every call to `score` brings ingest's image embeddings (same CLIP
        model), so CLIP's visual tower is not kept and no image is embedded again."""
        cfg = job.hallucination
        self.cfg = cfg
        self.clip = None
        if job.filters.aesthetics.enabled:
            from curate.hallucination.clipcheck import ClipChecker

            self.clip = ClipChecker(job.filters.aesthetics, device, image_tower)
        self.ocr = None
        if cfg.ocr:
            self.ocr = OcrReader(max_side=cfg.ocr_side)
        self._readings: dict[str, list] = {}   # image digest -> OCR passes, oldest first
        self.alt = None
        if cfg.alt_agreement:
            from curate.hallucination.alttext import AltTextAgreement

            self.alt = AltTextAgreement(device=device)
        self.detector = None
        if cfg.detector is not None:
            from curate.hallucination.detector import PhraseDetector

            self.detector = PhraseDetector(cfg.detector, device)

    def score(self, images: list[Image.Image], captions: list[str], alts: list[str | None], embeddings=None) -> list[dict]:
        """One evidence row (HALLUCINATION fields except key and captioner) per caption.
        `embeddings`: the images' L2-normalised CLIP embeddings from ingest (else embedded here)."""
        rows = [self._text_evidence(c) for c in captions]
        if self.clip is not None and images:
            if embeddings is None:
                embeddings = self.clip.embed_images(images)
            for row, emb in zip(rows, embeddings):
                self._clip_evidence(row, emb)
        if self.detector is not None:
            for row, image in zip(rows, images):
                hits = self.detector.detected(image, [p["text"] for p in row["phrases"]])
                for p, hit in zip(row["phrases"], hits):
                    p["grounded"] = hit
        if self.ocr is not None:
            for row, image in zip(rows, images):
                if row["text_claims"]:
                    self._check_claims(row, image)
        agreement = self.alt.score(captions, alts) if self.alt is not None else [None] * len(captions)
        for row, a in zip(rows, agreement):
            row["alt_agreement"] = a
            row["score"], row["flags"], row["signals"] = combine(row, self.cfg.weights, self.cfg.language)
        return rows

    def _text_evidence(self, caption: str) -> dict:
        d = degeneration(caption)
        return {
            "sentences": [{"text": s.text, "start": s.start, "end": s.end, "clip": None, "weak": None} for s in sentences(caption)],
            "phrases": [{"text": p.text, "start": p.start, "end": p.end, "clip": None, "grounded": None} for p in noun_phrases(caption)],
            "text_claims": [{"text": c.text, "start": c.start, "end": c.end, "found": None, "outcome": None, "confidence": None, "read": None}
                            for c in text_claims(caption)],
            "ocr_text": None, "repeated_ngrams": d.repeated_ngrams,
            "repeated_spans": [{"start": a, "end": b} for a, b in d.repeated_spans],
            "loop": d.loop, "duplicate_sentences": [{"start": a, "end": b} for a, b in d.duplicate_sentences],
            "truncated": d.truncated, "boilerplate": d.boilerplate, "language": d.language,
            "language_confidence": d.language_confidence, "other_languages": d.other_languages,
        }

    def _check_claims(self, row: dict, image: Image.Image) -> None:
        """Each claim against the image's first OCR pass, and against the tile pass too when
        the first did not find every claim. Readings are kept per image (by pixel digest), so an
        image scored again (the fallback captioner's text) or shared by captions is read once."""
        digest = hashlib.blake2b(image.tobytes(), digest_size=16).hexdigest() + f"{image.size}{image.mode}"
        readings = self._readings.pop(digest, None) or [self.ocr.read(image)]
        verdicts = [judge_all(c["text"], readings) for c in row["text_claims"]]
        if self.cfg.ocr_tiles and len(readings) == 1 and any(v.outcome != "found" for v in verdicts):
            readings.append(self.ocr.read_tiles(image))
            verdicts = [judge_all(c["text"], readings) for c in row["text_claims"]]
        self._readings[digest] = readings
        while len(self._readings) > READINGS_KEPT:
            self._readings.pop(next(iter(self._readings)))
        row["ocr_text"] = "\n".join(dict.fromkeys(line.text for reading in readings for line in reading))
        for claim, v in zip(row["text_claims"], verdicts):
            claim.update(outcome=v.outcome, confidence=v.confidence, read=v.read,
                         found={"found": True, "not_found": False}.get(v.outcome))

    def _clip_evidence(self, row: dict, image_emb) -> None:
        sent_scores, weak, phrase_scores, grounded = self.clip.judge(
            image_emb, [s["text"] for s in row["sentences"]], [p["text"] for p in row["phrases"]],
            self.cfg.sentence_z, self.cfg.phrase_z)
        for s, score, w in zip(row["sentences"], sent_scores, weak):
            s["clip"], s["weak"] = float(score), bool(w)
        for p, score, g in zip(row["phrases"], phrase_scores, grounded):
            p["clip"], p["grounded"] = float(score), bool(g)
