"""Where a model runs: the GPU when one was asked for and is visible, else the CPU (with a warning)."""

from __future__ import annotations

import warnings


def pick_device(num_gpus: float, what: str) -> str:
    import torch

    if num_gpus > 0 and torch.cuda.is_available():
        return "cuda"
    if num_gpus > 0:
        warnings.warn(f"{what} asked for a GPU but none is visible: running on CPU (slow)", stacklevel=2)
    return "cpu"
