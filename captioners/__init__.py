"""VLM caption backends behind one interface (`captioners.base.Captioner`)."""

from schemas.job import CaptionerConfig


def build_captioner(cfg: CaptionerConfig, seed: int = 0):
    """The backend the job names; each loads its model (or connects) once. `seed` is the run's
    (sampling presets draw per sample from it and the key). vLLM is not an actor-held captioner:
    it runs as Ray Data LLM stages (`captioners.vllm_batch.apply`)."""
    if cfg.backend == "transformers":
        from captioners.hf import TransformersCaptioner

        return TransformersCaptioner(cfg, seed)
    if cfg.backend == "openai":
        from captioners.openai_api import OpenAICaptioner

        return OpenAICaptioner(cfg, seed)
    raise ValueError(f"captioner {cfg.name!r}: backend {cfg.backend!r} runs as Ray Data LLM stages "
                     "(captioners.vllm_batch.apply), not as a captioner object")


def preflight(captioners: list[CaptionerConfig]) -> list[str]:
    """What this machine lacks to run the job's captioners, one line each."""
    from captioners import vllm_batch

    return [vllm_batch.missing_line(i, c) for i, c in enumerate(captioners)
            if c.backend == "vllm" and not vllm_batch.available()]
