"""Image-text agreement with CLIP, per sentence and per object noun phrase.

Dense captions run past CLIP's 77-token window, so each sentence is scored on its own, and
each noun phrase as "a photo of {phrase}". Raw CLIP cosines are not comparable across images
(some images score high with any text), so every score is judged against the same image's
scores for a fixed set of unrelated objects: a phrase is grounded when it beats their mean by
`phrase_z` standard deviations; a sentence is weak when it does not beat their mean by
`sentence_z` standard deviations.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from filters.aesthetics import load_clip
from schemas.job import AestheticsConfig

UNRELATED = [
    "a giraffe", "a submarine", "a violin", "a snowman", "a tractor", "a jellyfish", "a cactus", "a lighthouse",
    "a saxophone", "a pineapple", "a helicopter", "a penguin", "a typewriter", "a volcano", "a windmill", "a kangaroo",
    "a chandelier", "a skateboard", "a hot air balloon", "a microscope", "a zebra", "a cathedral", "a lobster",
    "a canoe", "a traffic cone", "a harp", "a igloo", "a parrot", "a bulldozer", "a chess board", "a teapot",
    "a tornado", "a space shuttle", "a scarecrow", "a cello", "a rhinoceros", "a fire hydrant", "a wedding cake",
    "a suit of armour", "a hamster",
]
TEMPLATE = "a photo of {}"


@dataclass
class Baseline:
    """An image's CLIP scores against unrelated objects: what "no agreement" looks like."""

    mean: float
    sd: float

    def above(self, scores: np.ndarray, z: float) -> np.ndarray:
        return scores >= self.mean + z * self.sd


def baseline(image_emb: np.ndarray, unrelated_emb: np.ndarray) -> Baseline:
    scores = unrelated_emb @ image_emb
    return Baseline(float(scores.mean()), float(scores.std()) or 1e-6)


class ClipChecker:
    """Scores sentences and phrases of captions against their images (free of Ray)."""

    def __init__(self, cfg: AestheticsConfig, device: str, image_tower: bool = True):
        """Without `image_tower` the images' embeddings come from ingest (the same model), so the
        visual tower is freed right after loading and only text is embedded here."""
        import torch

        self.torch, self.device, self.cfg = torch, device, cfg
        self.model, self.preprocess, self.tokenizer = load_clip(cfg, device)
        if not image_tower:
            self.model.visual = None
        self.unrelated = self.embed_texts([TEMPLATE.format(o) for o in UNRELATED])

    def embed_images(self, images: list[Image.Image]) -> np.ndarray:
        if not images:
            return np.zeros((0, 0), np.float32)
        if self.model.visual is None:   # a row without ingest's embedding (e.g. staged by an older run): load it all
            self.model = load_clip(self.cfg, self.device)[0]
        with self.torch.no_grad():
            batch = self.torch.stack([self.preprocess(im.convert("RGB")) for im in images]).to(self.device)
            return self._normalise(self.model.encode_image(batch))

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, 0), np.float32)
        with self.torch.no_grad():   # the tokenizer truncates to the model's context length
            return self._normalise(self.model.encode_text(self.tokenizer(texts).to(self.device)))

    def _normalise(self, x) -> np.ndarray:
        x = x.float()
        return (x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)).cpu().numpy()

    def judge(self, image_emb: np.ndarray, sentences: list[str], phrases: list[str],
              sentence_z: float, phrase_z: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(sentence scores, weak per sentence, phrase scores, grounded per phrase), in input order."""
        base = baseline(image_emb, self.unrelated)
        texts = sentences + [TEMPLATE.format(p) for p in phrases]
        scores = self.embed_texts(texts) @ image_emb if texts else np.zeros(0, np.float32)
        sent, phr = scores[: len(sentences)], scores[len(sentences):]
        return sent, ~base.above(sent, sentence_z), phr, base.above(phr, phrase_z)
