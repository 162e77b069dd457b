"""vLLM offline engine backend (optional extra: `pip install curate[vllm]`).

Same prompt and generation settings as the transformers backend, through vLLM's chat API,
which applies the model's own chat template and image processing.
"""

from __future__ import annotations

from PIL import Image

from captioners.base import CaptionResult, split_on_failure
from captioners.presets import generation_kwargs
from schemas.job import CaptionerConfig


def sampling_params(cfg: CaptionerConfig):
    from vllm import SamplingParams

    gen = generation_kwargs(cfg.preset, cfg.generation)
    return SamplingParams(
        max_tokens=int(gen.get("max_new_tokens", 300)),
        min_tokens=int(gen.get("min_new_tokens", 0)),
        temperature=float(gen.get("temperature", 1.0)) if gen.get("do_sample") else 0.0,
        repetition_penalty=float(gen.get("repetition_penalty", 1.0)),
        top_p=float(gen.get("top_p", 1.0)),
    )


class VLLMCaptioner:
    def __init__(self, cfg: CaptionerConfig):
        try:
            from vllm import LLM
        except ImportError:
            raise ImportError(f"captioner {cfg.name!r}: backend vllm needs the vllm package (pip install 'curate[vllm]')") from None
        self.name, self.cfg = cfg.name, cfg
        dtype = {"auto": "auto", "float32": "float32", "bfloat16": "bfloat16", "float16": "float16"}[cfg.dtype]
        self.llm = LLM(model=cfg.model, dtype=dtype, limit_mm_per_prompt={"image": 1}, trust_remote_code=False)
        self.params = sampling_params(cfg)

    def _generate(self, images: list[Image.Image]) -> list[CaptionResult]:
        conversations = [[{"role": "user", "content": [{"type": "image_pil", "image_pil": img},
                                                        {"type": "text", "text": self.cfg.prompt}]}] for img in images]
        outputs = self.llm.chat(conversations, self.params, use_tqdm=False)
        return [CaptionResult(o.outputs[0].text) for o in outputs]

    def caption(self, images: list[Image.Image], metas: list[dict]) -> list[CaptionResult]:
        return split_on_failure(self._generate, images)
