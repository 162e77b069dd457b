"""CLIP image embeddings (open_clip) and a LAION aesthetic predictor head.

The head loads the published state-dict layouts: the improved aesthetic predictor
(`layers.{0,2,4,6,7}.{weight,bias}`: Linear(D,1024) Dropout Linear(1024,128) Dropout
Linear(128,64) Dropout Linear(64,16) Linear(16,1)) or the v1 linear head (`weight`, `bias`).
Its input is the L2-normalised CLIP image embedding. D is read from the weights, so the same
code loads a real ViT-L/14 head (768) and the tests' tiny one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from curate.devices import pick_device
from schemas.job import AestheticsConfig


class ModelLoadError(Exception):
    pass


def load_clip(cfg: AestheticsConfig, device: str):
    """(model, preprocess, tokenizer) through open_clip's own factory."""
    import open_clip

    if cfg.clip_config:
        open_clip.add_model_config(cfg.clip_config)
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(cfg.clip_model, pretrained=cfg.clip_pretrained, device=device)
    except (RuntimeError, OSError, ValueError) as exc:
        raise ModelLoadError(
            f"open_clip model {cfg.clip_model!r} with pretrained {cfg.clip_pretrained!r}: {exc}. Give a checkpoint path, "
            "or a tag reachable from every node (set HF_HOME to a shared cache on offline clusters)."
        ) from None
    return model.eval(), preprocess, open_clip.get_tokenizer(cfg.clip_model)


def load_head(path: str | Path):
    import torch
    from torch import nn

    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"aesthetic head weights not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    if "layers.0.weight" in state:
        dim = state["layers.0.weight"].shape[1]
        head = nn.Sequential(nn.Linear(dim, 1024), nn.Dropout(0.2), nn.Linear(1024, 128), nn.Dropout(0.2),
                             nn.Linear(128, 64), nn.Dropout(0.1), nn.Linear(64, 16), nn.Linear(16, 1))
        head.load_state_dict({k.removeprefix("layers."): v for k, v in state.items()})
    elif set(state) == {"weight", "bias"}:
        head = nn.Linear(state["weight"].shape[1], 1)
        head.load_state_dict(state)
    else:
        raise ModelLoadError(f"{path}: not an aesthetic head layout (keys: {sorted(state)[:8]})")
    return head.eval()


class AestheticScorer:
    """Embeds decoded images and scores them; free of Ray (the ingest phase wraps it in an actor)."""

    def __init__(self, cfg: AestheticsConfig):
        import torch

        self.device = pick_device(cfg.num_gpus, "aesthetics")
        self.model, self.preprocess, self.tokenizer = load_clip(cfg, self.device)
        self.head = load_head(cfg.head).to(self.device)
        self.torch = torch

    def embed(self, images: list[Image.Image]) -> np.ndarray:
        torch = self.torch
        if not images:
            return np.zeros((0, 0), np.float32)
        batch = torch.stack([self.preprocess(im) for im in images]).to(self.device)
        with torch.inference_mode():
            emb = self.model.encode_image(batch).float()
            emb = emb / emb.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        return emb.cpu().numpy()

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        """L2-normalised text embeddings (the tokenizer truncates to CLIP's 77-token window)."""
        torch = self.torch
        if not texts:
            return np.zeros((0, 0), np.float32)
        with torch.inference_mode():
            emb = self.model.encode_text(self.tokenizer(texts).to(self.device)).float()
            emb = emb / emb.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        return emb.cpu().numpy()

    def score(self, embeddings: np.ndarray) -> np.ndarray:
        torch = self.torch
        if len(embeddings) == 0:
            return np.zeros(0, np.float32)
        with torch.inference_mode():
            out = self.head(torch.from_numpy(embeddings).to(self.device)).float().squeeze(-1)
        return out.cpu().numpy()
