"""Sampling that a batch cannot change: each row's draws come from (seed, key, step) alone.

`SeededGumbel` adds Gumbel noise to the processed scores and lets greedy decoding take the
argmax: argmax(scores + Gumbel) is an exact draw from softmax(scores) (the Gumbel-max trick).
The noise is a counter-based hash (splitmix64) of (row seed, step, token id), computed on the
scores' device in one vectorised pass, so it is the same on CPU and GPU and needs no generator
state: a row sampled alone, in another batch, or after a resume draws the same tokens.
"""

from __future__ import annotations

import torch
from transformers import LogitsProcessor

_GOLDEN = -7046029254386353131      # 0x9E3779B97F4A7C15 as int64
_MIX1 = -4658895280553007687        # 0xBF58476D1CE4E5B9
_MIX2 = -7723592293110705685        # 0x94D049BB133111EB


def _srl(x: torch.Tensor, n: int) -> torch.Tensor:
    """Logical right shift of int64 (torch's >> is arithmetic)."""
    return (x >> n) & ((1 << (64 - n)) - 1)


def _mix(x: torch.Tensor) -> torch.Tensor:
    """splitmix64's finaliser (int64 arithmetic wraps)."""
    x = (x ^ _srl(x, 30)) * _MIX1
    x = (x ^ _srl(x, 27)) * _MIX2
    return x ^ _srl(x, 31)


def uniforms(seeds: torch.Tensor, step: int, vocab: int) -> torch.Tensor:
    """(rows, vocab) float64 uniforms in (0, 1), a pure function of (seed, step, token id)."""
    counter = torch.arange(vocab, device=seeds.device, dtype=torch.int64) + step * vocab + 1
    bits = _mix(_mix(seeds)[:, None] + counter[None, :] * _GOLDEN)
    return (_srl(bits, 11).to(torch.float64) + 0.5) / float(1 << 53)


class SeededGumbel(LogitsProcessor):
    """Last logits processor of a seeded single-beam sample (with greedy decoding after it)."""

    def __init__(self, row_seeds: list[int], prompt_len: int):
        self.seeds = torch.tensor(row_seeds, dtype=torch.int64)
        self.prompt_len = prompt_len

    def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor) -> torch.Tensor:
        seeds = self.seeds.to(scores.device)
        u = uniforms(seeds, input_ids.shape[1] - self.prompt_len, scores.shape[-1])
        return (scores.to(torch.float64) - torch.log(-torch.log(u))).to(torch.float32)
