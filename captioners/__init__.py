"""VLM caption backends behind one interface (`captioners.base.Captioner`)."""

from schemas.job import CaptionerConfig


def build_captioner(cfg: CaptionerConfig):
    """The backend the job names; each loads its model (or connects) once."""
    if cfg.backend == "transformers":
        from captioners.hf import TransformersCaptioner

        return TransformersCaptioner(cfg)
    if cfg.backend == "vllm":
        from captioners.vllm_offline import VLLMCaptioner

        return VLLMCaptioner(cfg)
    if cfg.backend == "openai":
        from captioners.openai_api import OpenAICaptioner

        return OpenAICaptioner(cfg)
    raise ValueError(f"unknown captioner backend {cfg.backend!r}")
