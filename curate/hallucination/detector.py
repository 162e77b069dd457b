"""Optional open-vocabulary detector (OWLv2, OWL-ViT, Grounding DINO ... through transformers'
zero-shot object detection): a noun phrase is grounded when some box for it scores at least
the threshold. Used instead of the CLIP decision when a job names a detector."""

from __future__ import annotations

from PIL import Image

from schemas.job import DetectorConfig


class PhraseDetector:
    def __init__(self, cfg: DetectorConfig, device: str):
        from transformers import pipeline

        self.threshold = cfg.threshold
        self.pipe = pipeline("zero-shot-object-detection", model=cfg.model, device=device)

    def detected(self, image: Image.Image, phrases: list[str]) -> list[bool]:
        if not phrases:
            return []
        boxes = self.pipe(image.convert("RGB"), candidate_labels=phrases, threshold=self.threshold)
        found = {b["label"] for b in boxes if b["score"] >= self.threshold}
        return [p in found for p in phrases]
