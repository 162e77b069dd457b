"""Tiny random-weight models built offline, saved, and loaded back through the production
loading code (`from_pretrained`). Used by `make demo` and the tests: their captions are noise.
"""

from __future__ import annotations

import itertools
from pathlib import Path

CHAT_TEMPLATE = (
    "{% for message in messages %}{{ message['role'] }}: "
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for c in message['content'] %}{% if c['type'] == 'image' %}<image>{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}"
    "{% endif %} {% endfor %}{% if add_generation_prompt %}assistant:{% endif %}"
)

WORDS = (
    "a an the this image photo picture shows depicts scene of with and in on at near behind above below "
    "large small bright dark red green blue yellow purple orange teal grey white black circle square "
    "triangle stripe gradient texture background foreground word text letters sky water tree house "
    "street person dog cat car light shadow soft sharp smooth rough left right center top bottom corner "
    "pattern colour surface detail edge shape lines frame view close wide"
).split()


SHARE_WORDS = "Analyze the image in a comprehensive and detailed manner".lower().split()


def build_tiny_vlm(out: str | Path, seed: int = 0, image_size: int = 64) -> Path:
    """A Llava-architecture VLM (CLIP vision tower + Llama decoder) with a word-level tokenizer."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
        PreTrainedTokenizerFast,
    )

    out = Path(out)
    specials = ["<unk>", "<s>", "</s>", "<pad>", "<image>"]
    vocab = {t: i for i, t in enumerate(specials)}
    for w in [*WORDS, ".", ",", ":", "assistant", "user", *SHARE_WORDS]:
        vocab.setdefault(w, len(vocab))
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.normalizer = None
    core.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    core.decoder = decoders.WordPiece(prefix="##")
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token="<pad>",
        padding_side="left", extra_special_tokens={"image_token": "<image>"},
    )
    patch = 16
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                                       image_size=image_size, patch_size=patch, projection_dim=32),
        text_config=LlamaConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=1024,
                                bos_token_id=1, eos_token_id=2, pad_token_id=3),
        image_token_index=vocab["<image>"], vision_feature_layer=-1, vision_feature_select_strategy="default",
    )
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config).eval()
    processor = LlavaProcessor(
        image_processor=CLIPImageProcessor(size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}),
        tokenizer=tokenizer, patch_size=patch, vision_feature_select_strategy="default",
        chat_template=CHAT_TEMPLATE, num_additional_image_tokens=1,
    )
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


TINY_CLIP = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}


def build_tiny_clip(out: str | Path, seed: int = 0) -> tuple[Path, Path]:
    """An open_clip model config `tiny-clip.json` and a random checkpoint for it."""
    import json

    import open_clip
    import torch

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    config = out / "tiny-clip.json"
    config.write_text(json.dumps(TINY_CLIP))
    open_clip.add_model_config(str(config))
    torch.manual_seed(seed)
    model = open_clip.create_model("tiny-clip")
    ckpt = out / "tiny-clip.pt"
    torch.save(model.state_dict(), ckpt)
    return config, ckpt


def build_tiny_aesthetic_head(out: str | Path, dim: int = 32, seed: int = 0) -> Path:
    """A random head with the improved aesthetic predictor's published key names."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    layers = nn.Sequential(nn.Linear(dim, 1024), nn.Dropout(0.2), nn.Linear(1024, 128), nn.Dropout(0.2),
                           nn.Linear(128, 64), nn.Dropout(0.1), nn.Linear(64, 16), nn.Linear(16, 1))
    state = {f"layers.{k}": v for k, v in layers.state_dict().items()}
    state["layers.7.bias"] = state["layers.7.bias"] + 5.0  # centre scores on the AVA scale's middle
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, out)
    return out


def laion_nsfw_state(dim: int = 768, seed: int = 0) -> dict:
    """Random weights in the published layout of LAION's CLIP-based NSFW detector, torch port
    (filters/heads.py): norm.mean/variance [dim], linear_1 (64, dim), linear_2 (512, 64),
    linear_3 (256, 512), linear_4 (1, 256). dim 768 is the real ViT-L/14 head's size."""
    import torch

    g = torch.Generator().manual_seed(seed)
    sizes = [dim, 64, 512, 256, 1]
    state = {"norm.mean": torch.randn(dim, generator=g) * 0.02, "norm.variance": torch.rand(dim, generator=g) * 1e-3 + 1e-4}
    for n, (i, o) in enumerate(itertools.pairwise(sizes), start=1):
        state[f"linear_{n}.weight"] = torch.randn(o, i, generator=g) / i ** 0.5
        state[f"linear_{n}.bias"] = torch.zeros(o)
    return state


def mlp_head_state(sizes: list[int], seed: int = 0, bias: float = 0.0) -> dict:
    """Random weights of a generic head: layers.{0,2,4..}.weight/bias (Linear, ReLU, Linear ...)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    state = {}
    for n, (i, o) in enumerate(itertools.pairwise(sizes)):
        state[f"layers.{2 * n}.weight"] = torch.randn(o, i, generator=g) / i ** 0.5
        state[f"layers.{2 * n}.bias"] = torch.zeros(o)
    state[f"layers.{2 * (len(sizes) - 2)}.bias"] += bias
    return state


def save_state(state: dict, out: str | Path) -> Path:
    import torch

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, out)
    return out


def build_tiny_safety_heads(folder: str | Path, dim: int = 32, seed: int = 0) -> tuple[Path, Path]:
    """(NSFW head in the LAION port's layout, watermark head in the generic layers.N layout),
    random weights on a dim-sized embedding (the tiny CLIP's)."""
    folder = Path(folder)
    nsfw = save_state(laion_nsfw_state(dim, seed), folder / "tiny-nsfw-head.pth")
    watermark = save_state(mlp_head_state([dim, 16, 1], seed + 1), folder / "tiny-watermark-head.pth")
    return nsfw, watermark


def build_tiny_owlv2(out: str | Path, seed: int = 0) -> Path:
    """An OWLv2 open-vocabulary detector with a character-level CLIP BPE tokenizer.

    Token ids put the specials last: OWL masks a query whose first token id is 0.
    """
    import string

    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import (
        CLIPTokenizerFast,
        Owlv2Config,
        Owlv2ForObjectDetection,
        Owlv2ImageProcessor,
        Owlv2Processor,
    )

    chars = list(string.ascii_lowercase + string.digits + "'-.,")
    vocab = {t: i for i, t in enumerate([*chars, *[c + "</w>" for c in chars], "<unk>", "<|startoftext|>", "<|endoftext|>"])}
    core = Tokenizer(models.BPE(vocab, [], unk_token="<unk>", end_of_word_suffix="</w>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = CLIPTokenizerFast(tokenizer_object=core, unk_token="<unk>", bos_token="<|startoftext|>",
                                  eos_token="<|endoftext|>", pad_token="<|endoftext|>", model_max_length=64)
    config = Owlv2Config(
        text_config={"vocab_size": len(vocab), "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                     "num_attention_heads": 2, "max_position_embeddings": 64, "bos_token_id": vocab["<|startoftext|>"],
                     "eos_token_id": vocab["<|endoftext|>"], "pad_token_id": vocab["<|endoftext|>"]},
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
                       "image_size": 64, "patch_size": 16},
        projection_dim=32,
    )
    torch.manual_seed(seed)
    model = Owlv2ForObjectDetection(config).eval()
    processor = Owlv2Processor(image_processor=Owlv2ImageProcessor(size={"height": 64, "width": 64}), tokenizer=tokenizer)
    out = Path(out)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def build_tiny_t5_tokenizer(out: str | Path, vocab_size: int = 100) -> Path:
    """A T5 tokenizer the way google/t5-v1_1-* ship theirs (a SentencePiece unigram model,
    `spiece.model`, no tokenizer.json), trained on a few sentences: the caption token budget is
    counted in it through the same AutoTokenizer path a real T5 takes."""
    import io
    import json
    import random

    import sentencepiece as spm

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    text = "\n".join(" ".join(rng.choice(WORDS) for _ in range(12)) + "." for _ in range(400))
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(text.splitlines()), model_writer=model, vocab_size=vocab_size,
                                   model_type="unigram", pad_id=0, eos_id=1, unk_id=2, bos_id=-1, character_coverage=1.0,
                                   minloglevel=2)
    (out / "spiece.model").write_bytes(model.getvalue())
    # the files google/t5-v1_1-xxl ships beside spiece.model
    (out / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "T5Tokenizer", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>",
        "extra_ids": 0, "model_max_length": 512}))
    return out


QWEN_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                 "<|image_pad|>", "<|video_pad|>"]
QWEN_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for c in message['content'] %}{% if c['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# Qwen2.5-VL-7B-Instruct's shapes (config.json of the released model).
QWEN25_VL_7B = {
    "text": {"vocab_size": 152064, "hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28,
             "num_attention_heads": 28, "num_key_value_heads": 4, "max_position_embeddings": 128000},
    "vision": {"depth": 32, "hidden_size": 1280, "intermediate_size": 3420, "num_heads": 16, "out_hidden_size": 3584,
               "fullatt_block_indexes": [7, 15, 23, 31], "window_size": 112},
    "mrope_section": [16, 24, 24],
}
QWEN25_VL_TINY = {
    "text": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
             "num_key_value_heads": 1, "max_position_embeddings": 4096},
    "vision": {"depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2, "out_hidden_size": 32,
               "fullatt_block_indexes": [1], "window_size": 56},
    "mrope_section": [2, 3, 3],
}


def build_tiny_qwen25_vl(out: str | Path, seed: int = 0, shape: dict = QWEN25_VL_TINY, device: str = "cpu",
                         dtype: str = "float32") -> Path:
    """A Qwen2.5-VL (the shipped jobs' architecture: dynamic resolution, 28x28 px per image token,
    min/max_pixels on the processor) with a word-level tokenizer and random weights.

    `shape=QWEN25_VL_7B` builds the 7B model's shapes (for the GPU benchmark)."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import (
        PreTrainedTokenizerFast,
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
        Qwen2VLImageProcessor,
        Qwen2VLVideoProcessor,
    )

    out = Path(out)
    vocab = {t: i for i, t in enumerate(["<unk>", *QWEN_SPECIALS])}
    for w in [*WORDS, ".", ",", ":", "assistant", "user", "\n", *SHARE_WORDS]:
        vocab.setdefault(w, len(vocab))
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    core.decoder = decoders.WordPiece(prefix="##")
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>", eos_token="<|im_end|>",
                                        pad_token="<|endoftext|>", padding_side="left",
                                        additional_special_tokens=QWEN_SPECIALS[1:])
    text = {"vocab_size": len(vocab), **shape["text"]}
    rope = {"rope_type": "default", "mrope_section": shape["mrope_section"], "rope_theta": 1000000.0}
    config = Qwen2_5_VLConfig(
        text_config={**text, "rope_parameters": rope, "bos_token_id": vocab["<|endoftext|>"],
                     "eos_token_id": vocab["<|im_end|>"], "pad_token_id": vocab["<|endoftext|>"]},
        vision_config={**shape["vision"], "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2},
        image_token_id=vocab["<|image_pad|>"], video_token_id=vocab["<|video_pad|>"],
        vision_start_token_id=vocab["<|vision_start|>"], vision_end_token_id=vocab["<|vision_end|>"],
    )
    torch.manual_seed(seed)
    default = torch.get_default_dtype()
    torch.set_default_dtype(getattr(torch, dtype))  # build in the target dtype (7B in fp32 would need 33 GB)
    try:
        with torch.device(device):
            model = Qwen2_5_VLForConditionalGeneration(config).eval()
    finally:
        torch.set_default_dtype(default)
    processor = Qwen2_5_VLProcessor(image_processor=Qwen2VLImageProcessor(), video_processor=Qwen2VLVideoProcessor(),
                                    tokenizer=tokenizer, chat_template=QWEN_CHAT_TEMPLATE)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out
