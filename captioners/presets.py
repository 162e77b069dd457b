"""Decoding presets that mean one thing on every backend.

A preset states every decoding parameter; a captioner's `generation:` replaces single values.
Nothing is taken from a model's `generation_config` or from a server's defaults. A backend that
cannot honour a setting refuses the job at validation with one line (`refusal`), and each
captioner's effective parameters go into the manifest (`describe`).

- `share-captioner`: ShareGPT4V's `share-cap_batch_infer.py` (3-beam sampling, temperature 1,
  repetition penalty 1.5 over the generated tokens); only transformers can run it exactly.
- `greedy`: the throughput preset the shipped jobs use: one beam, argmax, no penalty. The same
  decoding on transformers, vLLM and any OpenAI-compatible server, and no seed needed.
- `sample`: plain temperature-1 sampling, one beam, seeded per sample (every backend).
"""

from __future__ import annotations

import hashlib

PARAMS = ("max_new_tokens", "min_new_tokens", "do_sample", "temperature", "top_p", "top_k", "num_beams",
          "repetition_penalty", "length_penalty")

_NEUTRAL = {"temperature": 1.0, "top_p": 1.0, "top_k": 0}  # top_k 0: no top-k cut

PRESETS: dict[str, dict] = {
    "share-captioner": {
        # max_length=500, min_length=1 in ShareGPT4V (its prompt went in as embeddings, so both count new tokens)
        "max_new_tokens": 500, "min_new_tokens": 1, "do_sample": True, "temperature": 1.0,
        "top_p": 1.0, "top_k": 50,  # ShareGPT4V set neither: transformers' defaults were in effect
        "num_beams": 3, "repetition_penalty": 1.5, "length_penalty": 1.0,
    },
    "greedy": {"max_new_tokens": 300, "min_new_tokens": 0, "do_sample": False, **_NEUTRAL, "num_beams": 1,
               "repetition_penalty": 1.0, "length_penalty": 1.0},
    "sample": {"max_new_tokens": 300, "min_new_tokens": 0, "do_sample": True, **_NEUTRAL, "num_beams": 1,
               "repetition_penalty": 1.0, "length_penalty": 1.0},
}

# What a backend cannot do, as (parameter, value it must keep, why).
_LIMITS: dict[str, list[tuple[str, object, str]]] = {
    "transformers": [],
    "vllm": [
        ("num_beams", 1, "vLLM's beam search is a separate API that neither samples nor penalises"),
        ("repetition_penalty", 1.0, "vLLM applies repetition_penalty to the prompt tokens too"),
        ("length_penalty", 1.0, "it only applies to beam search"),
    ],
    "openai": [
        ("num_beams", 1, "not an OpenAI API parameter"),
        ("repetition_penalty", 1.0, "not an OpenAI API parameter (vLLM's extension also penalises the prompt)"),
        ("length_penalty", 1.0, "not an OpenAI API parameter"),
        ("top_k", 0, "not an OpenAI API parameter"),
        ("min_new_tokens", 0, "not an OpenAI API parameter"),
    ],
}


def effective(preset: str, overrides: dict) -> dict:
    """Every decoding parameter, the preset's value unless `overrides` sets it."""
    return {**PRESETS[preset], **{k: v for k, v in overrides.items() if v is not None}}


def refusal(backend: str, preset: str, overrides: dict) -> str | None:
    """One line saying which settings `backend` cannot honour, or None when it honours them all."""
    gen = effective(preset, overrides)
    problems = [f"{name}={gen[name]} ({why})" for name, keep, why in _LIMITS[backend] if gen[name] != keep]
    if not gen["do_sample"]:
        problems += [f"{name}={gen[name]} (used only when do_sample is true)"
                     for name, neutral in _NEUTRAL.items() if gen[name] != neutral]
    if gen["min_new_tokens"] > gen["max_new_tokens"]:
        problems.append(f"min_new_tokens={gen['min_new_tokens']} (above max_new_tokens={gen['max_new_tokens']})")
    if not problems:
        return None
    return (f"backend {backend} cannot honour preset {preset!r} with {'; '.join(problems)}: "
            "change generation, or use preset greedy or sample" + (", or backend transformers" if backend != "transformers" else ""))


def row_seed(seed: int, key: str) -> int:
    """The sampling seed of one sample: from the run's seed and the sample's key only, so a
    sample draws the same tokens whatever batch it lands in (63 bits, a valid int64)."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{key}".encode()).digest()[:8], "big") >> 1


def describe(cfg, seed: int) -> dict:
    """A captioner's effective settings, for the manifest."""
    gen = effective(cfg.preset, cfg.generation.model_dump())
    out = {"backend": cfg.backend, "model": cfg.model, "preset": cfg.preset, "generation": gen,
           "seed": seed if gen["do_sample"] else None, "prompt": cfg.prompt,
           "min_pixels": cfg.min_pixels, "max_pixels": cfg.max_pixels}
    if cfg.backend == "vllm":
        from captioners.vllm_batch import engine_kwargs

        out["engine"] = engine_kwargs(cfg)
    return out
