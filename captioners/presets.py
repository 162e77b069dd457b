"""Generation presets. `share-captioner` follows ShareGPT4V's share-cap_batch_infer.py."""

PRESETS: dict[str, dict] = {
    "share-captioner": {
        "max_new_tokens": 500, "min_new_tokens": 1, "num_beams": 3, "do_sample": True,
        "temperature": 1.0, "repetition_penalty": 1.5, "length_penalty": 1.0,
    },
    "greedy": {"max_new_tokens": 300, "num_beams": 1, "do_sample": False},
}


def generation_kwargs(preset: str, overrides: dict) -> dict:
    return {**PRESETS[preset], **overrides}
