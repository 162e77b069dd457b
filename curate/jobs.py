"""Load a job file: YAML -> `--set` overrides -> pydantic validation -> path checks.

Every problem becomes a `JobError` whose message names the file, the field path and what
was expected; the CLI prints it and exits 2.
"""

from __future__ import annotations

import glob
import hashlib
import json
from pathlib import Path
from typing import Any, get_args

import yaml
from pydantic import ValidationError

from captioners import preflight
from schemas.job import Job, Source


class JobError(Exception):
    """A job file problem a user must fix; its message is complete and meant to be printed."""


def load_job(path: str | Path, overrides: list[str] = (), out: str | None = None) -> Job:
    path = Path(path)
    if not path.is_file():
        raise JobError(f"{path}: job file not found")
    with open(path, "rb") as fh:
        text = fh.read(MAX_JOB_BYTES + 1)
    if len(text) > MAX_JOB_BYTES:
        raise JobError(f"{path}: larger than {MAX_JOB_BYTES >> 10} KiB; a job file is a page of settings")
    raw = parse_yaml(text.decode(errors="replace"), path)
    if not isinstance(raw, dict):
        raise JobError(f"{path}: expected a mapping of job settings at the top level")
    for item in overrides:
        apply_override(raw, item, path)
    if out is not None:
        raw["out"] = out
    try:
        return Job.model_validate(raw)
    except ValidationError as exc:
        raise JobError(format_validation_error(path, exc)) from None


MAX_JOB_BYTES = 1 << 20
MAX_YAML_NODES = 100_000


def parse_yaml(text: str, path: Path):
    """YAML, bounded in time and memory: PyYAML builds an alias once and shares it, so a
    "billion laughs" document loads small and explodes only when walked (validation, hashing).
    The walk here counts every value as often as it is reached and stops at MAX_YAML_NODES."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise JobError(f"{path}: not valid YAML: {exc}") from None
    except RecursionError:
        raise JobError(f"{path}: YAML nested too deeply") from None
    seen, stack = 0, [raw]
    while stack:
        node = stack.pop()
        seen += 1
        if seen > MAX_YAML_NODES:
            raise JobError(f"{path}: more than {MAX_YAML_NODES} values once aliases are expanded (an alias bomb?)")
        if isinstance(node, dict):
            stack += [*node.keys(), *node.values()]
        elif isinstance(node, list):
            stack += node
    return raw


def apply_override(raw: dict, item: str, path: Path) -> None:
    """`a.b.0.c=value`: value parsed as YAML (so numbers, booleans and lists work)."""
    dotted, sep, value = item.partition("=")
    if not sep or not dotted:
        raise JobError(f"{path}: --set {item!r}: expected dotted.path=value")
    parts = dotted.split(".")
    node: Any = raw
    for i, part in enumerate(parts[:-1]):
        node = _step(node, part, parts[: i + 1], path, create=True)
    last = parts[-1]
    parsed = parse_yaml(value, path) if value else ""
    if isinstance(node, list):
        index = _index(last, parts, path, len(node))
        node[index] = parsed
    elif isinstance(node, dict):
        node[last] = parsed
    else:
        raise JobError(f"{path}: --set {dotted}: {'.'.join(parts[:-1])} is not a mapping or list")


def _step(node: Any, part: str, so_far: list[str], path: Path, create: bool) -> Any:
    if isinstance(node, list):
        return node[_index(part, so_far, path, len(node))]
    if isinstance(node, dict):
        if part not in node or node[part] is None:
            node[part] = {}
        return node[part]
    raise JobError(f"{path}: --set {'.'.join(so_far)}: parent is not a mapping or list")


def _index(part: str, so_far: list[str], path: Path, length: int) -> int:
    if not part.isdigit() or int(part) >= length:
        raise JobError(f"{path}: --set {'.'.join(so_far)}: expected a list index below {length}")
    return int(part)


def format_validation_error(path: Path, exc: ValidationError) -> str:
    lines = [f"{path}: {exc.error_count()} problem(s) in the job file:"]
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"] if not _is_union_tag(p)) or "(top level)"
        kind = err["type"]
        if kind == "extra_forbidden":
            msg = "unknown field (check the spelling; `curate schema` lists the fields)"
        elif kind == "missing":
            msg = "required field is missing"
        else:
            got = err.get("input")
            msg = f"{err['msg']} (got {json.dumps(got, default=str)[:80]})"
        lines.append(f"  {loc}: {msg}")
    return "\n".join(lines)


SOURCE_TYPES = {get_args(m.model_fields["type"].annotation)[0] for m in get_args(get_args(Source)[0])}


def _is_union_tag(part: Any) -> bool:
    return part in SOURCE_TYPES  # discriminated-union tags pydantic inserts in error locations


def check_paths(job: Job, job_path: str | Path) -> list[str]:
    """Local inputs the job names that do not exist, and captioner backends this machine cannot
    run, as 'field: path: what is expected'."""
    problems = []
    for i, src in enumerate(job.sources):
        if src.type == "folder" and not Path(src.path).is_dir():
            problems.append(f"sources.{i}.path: {src.path}: expected an existing folder of images")
        if src.type == "url_list" and not src.path.startswith("s3://") and not Path(src.path).is_file():
            problems.append(f"sources.{i}.path: {src.path}: expected an existing URL list file")
        if src.type == "webdataset":
            for j, p in enumerate(src.paths):
                if not p.startswith("s3://") and not glob.glob(p):
                    problems.append(f"sources.{i}.paths.{j}: {p}: expected existing tar shard(s)")
    for i, cap in enumerate(job.caption.captioners):
        if cap.backend != "openai" and looks_local(cap.model) and not Path(cap.model).is_dir():
            problems.append(
                f"caption.captioners.{i}.model: {cap.model}: expected a model folder "
                "(config.json + weights); `curate tiny-models DIR` builds a tiny one for trials"
            )
    problems += preflight(job.caption.captioners)  # e.g. backend vllm without vllm installed
    for i, prior in enumerate(job.dedup.against):
        if not Path(prior).is_file() and not (Path(prior) / "hashes.parquet").is_file():
            problems.append(f"dedup.against.{i}: {prior}: expected an earlier run's folder (with hashes.parquet) or a hashes.parquet file")
    aes = job.filters.aesthetics
    if aes.enabled:
        if not Path(aes.head).is_file():
            problems.append(f"filters.aesthetics.head: {aes.head}: expected the aesthetic head weights file "
                            "(e.g. sac+logos+ava1-l14-linearMSE.pth)")
        if aes.clip_pretrained and _path_like(aes.clip_pretrained) and not Path(aes.clip_pretrained).is_file():
            problems.append(f"filters.aesthetics.clip_pretrained: {aes.clip_pretrained}: expected a checkpoint file "
                            "(or an open_clip pretrained tag such as 'openai')")
        if aes.clip_config and not Path(aes.clip_config).exists():
            problems.append(f"filters.aesthetics.clip_config: {aes.clip_config}: expected a model config JSON file or folder")
    for name in ("nsfw_head", "watermark_head"):
        head = getattr(job.filters.safety, name)
        if head is not None and not Path(head.path).is_file():
            problems.append(f"filters.safety.{name}.path: {head.path}: expected the head's state dict file (see filters/heads.py)")
    problem = budget_tokenizer_problem(job.caption.tokenizer)
    if problem:
        problems.append(f"caption.tokenizer: {problem}")
    return [f"{job_path}: {p}" for p in problems]


def budget_tokenizer_problem(name: str) -> str | None:
    """Why the caption budget's tokenizer cannot be loaded here, in one line (None: it loads).
    The budget is never counted in another tokenizer instead."""
    if looks_local(name) and not Path(name).exists():
        return f"{name}: expected an existing tokenizer folder (the text encoder's, e.g. T5's spiece.model + tokenizer_config.json)"
    try:
        from captioners.postprocess import token_counter

        token_counter(name)
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        return (f"{name}: cannot load the text encoder's tokenizer ({type(exc).__name__}: {first}); download it "
                "(huggingface-cli download, with HF_HUB_OFFLINE unset) or name a local folder")
    return None


def looks_local(name: str) -> bool:
    """A model reference is a local path unless it has the `owner/name` shape of a hub id."""
    if Path(name).exists() or name.startswith(("/", "./", "../", "~")):
        return True
    return name.count("/") != 1


def _path_like(name: str) -> bool:
    return "/" in name or name.endswith((".pt", ".pth", ".bin", ".safetensors"))


def config_hash(job: Job) -> str:
    """Hash of what decides the output (not where Ray runs or how it reports progress)."""
    data = job.model_dump(mode="json", exclude={"ray": True, "out": True})
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]
