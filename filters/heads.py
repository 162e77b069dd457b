"""Classifier heads on the CLIP image embedding (NSFW, watermark, or any small MLP), loaded
from a torch state dict (`.pth`/`.pt` via `torch.load(weights_only=True)`, or `.safetensors`).

Every head reads the L2-normalised image embedding the ingest actor already computed, so a
head costs one small matrix product per batch, not another pass over the pixels. Layouts,
recognised by their key names (D, the embedding size, is read from the weights):

- **LAION NSFW detector, torch port** (LAION-AI/CLIP-based-NSFW-Detector; the Keras model
  `clip_autokeras_binary_nsfw` converted as in that repo's issue #7, the layout NeMo Curator
  loads): `norm.mean [D]`, `norm.variance [D]`, `linear_1 (64,D)`, `linear_2 (512,64)`,
  `linear_3 (256,512)`, `linear_4 (1,256)` (`.weight`/`.bias`); forward
  `(x - mean) / sqrt(variance)` -> Linear+ReLU x3 -> Linear -> sigmoid. D = 768 for OpenAI
  ViT-L/14 (`clip_autokeras_binary_nsfw`), 512 for ViT-B/32 (`clip_autokeras_nsfw_b32`).
  `python -m filters.heads convert-laion-nsfw SAVED_MODEL_DIR OUT.pth` converts the Keras
  SavedModel from the repo's zip (needs tensorflow, not a curate dependency).
- **Generic MLP**: `layers.N.weight (out,in)` / `layers.N.bias (out)` for N in ascending order
  (any gaps, as nn.Sequential numbers them), Linear layers joined by the head's `activation`
  (`relu` by default; `none` for affine heads such as the improved aesthetic predictor),
  the last with 1 output; optional `norm.mean`/`norm.variance` in front as above.
- **Linear**: `weight (1,D)` and `bias (1)` (a logistic-regression probe).

A sigmoid is applied to the output when the head's `sigmoid` is true, or, left unset, when the
layout ends in one (the LAION NSFW port); generic and linear heads give their raw output.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np

from schemas.job import HeadConfig

LAION_NSFW_LINEAR = ("linear_1", "linear_2", "linear_3", "linear_4")


class HeadLoadError(Exception):
    pass


def read_state(path: str | Path) -> dict:
    """A state dict of tensors from a torch or safetensors file."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise HeadLoadError(f"head weights not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated file, a pickle with objects, not a tensor file at all
        raise HeadLoadError(f"{path}: not a torch state dict ({type(exc).__name__}: {exc})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise HeadLoadError(f"{path}: expected a state dict of tensors")
    return state


class EmbeddingHead:
    """An MLP over the embedding: optional normalisation, Linear layers, activations, sigmoid."""

    def __init__(self, linears: list, activation: str, norm: tuple | None, sigmoid: bool):
        import torch

        self.torch = torch
        self.linears, self.activation, self.norm, self.sigmoid = linears, activation, norm, sigmoid
        self.dim = linears[0][0].shape[1]

    def to(self, device: str) -> EmbeddingHead:
        move = self.torch.Tensor.to
        self.linears = [(move(w, device), move(b, device)) for w, b in self.linears]
        self.norm = tuple(move(t, device) for t in self.norm) if self.norm else None
        return self

    def __call__(self, embeddings: np.ndarray) -> np.ndarray:
        torch = self.torch
        if len(embeddings) == 0:
            return np.zeros(0, np.float32)
        w0 = self.linears[0][0]
        x = torch.from_numpy(np.asarray(embeddings, np.float32)).to(w0.device)
        with torch.inference_mode():
            if self.norm:
                x = (x - self.norm[0]) / self.norm[1].clamp_min(0).sqrt().clamp_min(1e-12)
            for i, (w, b) in enumerate(self.linears):
                x = torch.nn.functional.linear(x, w, b)
                if i < len(self.linears) - 1 and self.activation == "relu":
                    x = torch.relu(x)
            if self.sigmoid:
                x = torch.sigmoid(x)
        return x.squeeze(-1).float().cpu().numpy()


def load_embedding_head(cfg: HeadConfig) -> EmbeddingHead:
    return head_from_state(read_state(cfg.path), cfg, str(cfg.path))


def head_from_state(state: dict, cfg: HeadConfig, where: str = "head") -> EmbeddingHead:
    """The head a state dict describes, checked layer by layer (shapes must chain, one output)."""
    state = {k: v.float() for k, v in state.items()}
    norm = (state["norm.mean"], state["norm.variance"]) if "norm.mean" in state and "norm.variance" in state else None
    layer_keys = sorted({int(m.group(1)) for k in state if (m := re.fullmatch(r"layers\.(\d+)\.weight", k))})
    if all(f"{n}.weight" in state for n in LAION_NSFW_LINEAR):
        names, activation, default_sigmoid = list(LAION_NSFW_LINEAR), "relu", True
    elif layer_keys:
        names, activation, default_sigmoid = [f"layers.{n}" for n in layer_keys], cfg.activation, False
    elif set(state) == {"weight", "bias"}:
        names, activation, default_sigmoid = [""], "none", False
    else:
        raise HeadLoadError(f"{where}: not a known head layout (keys: {sorted(state)[:8]}); expected the LAION NSFW "
                            "port (norm.*, linear_1..4), layers.N.weight/bias, or weight/bias (see filters/heads.py)")
    linears = []
    for name in names:
        prefix = f"{name}." if name else ""
        w, b = state.get(f"{prefix}weight"), state.get(f"{prefix}bias")
        if w is None or b is None or w.ndim != 2 or b.shape != (w.shape[0],):
            raise HeadLoadError(f"{where}: {prefix}weight/bias missing or not a Linear layer's shapes")
        if linears and linears[-1][0].shape[0] != w.shape[1]:
            raise HeadLoadError(f"{where}: {prefix}weight takes {w.shape[1]} inputs but the layer before gives "
                                f"{linears[-1][0].shape[0]}")
        linears.append((w, b))
    if linears[-1][0].shape[0] != 1:
        raise HeadLoadError(f"{where}: the last layer gives {linears[-1][0].shape[0]} outputs, expected 1 (a score)")
    dim = linears[0][0].shape[1]
    if norm and (norm[0].shape != (dim,) or norm[1].shape != (dim,)):
        raise HeadLoadError(f"{where}: norm.mean/norm.variance must have the embedding's size {dim}")
    sigmoid = default_sigmoid if cfg.sigmoid is None else cfg.sigmoid
    return EmbeddingHead(linears, activation, norm, sigmoid)


def laion_nsfw_state_from_keras(variables: dict[str, np.ndarray]) -> dict:
    """The torch port's state dict from the Keras SavedModel's checkpoint variables (as
    `tf.train.load_checkpoint(DIR/variables/variables)` names them): the Normalization layer is
    `layer_with_weights-1` (mean, variance), the four Dense layers `layer_with_weights-2..5`
    (kernel (in,out), transposed here; bias)."""
    import torch

    def var(i: int, name: str) -> torch.Tensor:
        return torch.from_numpy(np.asarray(variables[f"layer_with_weights-{i}/{name}/.ATTRIBUTES/VARIABLE_VALUE"], np.float32))

    state = {"norm.mean": var(1, "mean").reshape(-1), "norm.variance": var(1, "variance").reshape(-1)}
    for n, layer in enumerate(LAION_NSFW_LINEAR, start=2):
        state[f"{layer}.weight"] = var(n, "kernel").T.contiguous()
        state[f"{layer}.bias"] = var(n, "bias")
    return state


def _convert_laion_nsfw(saved_model: str, out: str) -> None:
    import tensorflow as tf  # only for this one-off conversion
    import torch

    reader = tf.train.load_checkpoint(str(Path(saved_model) / "variables" / "variables"))
    variables = {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}
    state = laion_nsfw_state_from_keras(variables)
    head_from_state(state, HeadConfig(path=out), out)  # check before writing
    torch.save(state, out)
    print(f"wrote {out}: " + ", ".join(f"{k} {tuple(v.shape)}" for k, v in state.items()))


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] != "convert-laion-nsfw":
        sys.exit("usage: python -m filters.heads convert-laion-nsfw SAVED_MODEL_DIR OUT.pth")
    _convert_laion_nsfw(sys.argv[2], sys.argv[3])
