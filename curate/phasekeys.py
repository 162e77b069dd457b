"""Which settings each phase's committed work depends on, so a changed job re-runs only the
phases downstream of the change.

A phase's key hashes its own settings and the key of the phase before it. A resumed run whose
ingest key changed is refused (everything would be redone: that is `--fresh`); a later change
drops that phase's work and everything after it, and keeps the rest. Raw captions are kept per
captioner key, so a caption phase that re-runs asks only the captioners whose settings changed.
"""

from __future__ import annotations

import hashlib
import json

from schemas.job import Job

PHASES = ("ingest", "dedup", "caption", "write")
SETTINGS = {"ingest": ("sources", "fetch", "units", "ingest", "filters"), "dedup": ("dedup",),
            "caption": ("caption", "hallucination"), "write": ("output", "name")}
# caption settings that do not change what a captioner writes (they act on its text afterwards)
_AFTER_CAPTIONING = {"captioners", "use", "fallback_to_alt", "max_tokens", "tokenizer"}


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def phase_keys(job: Job, limit: int | None = None) -> dict[str, str]:
    data = job.model_dump(mode="json")
    keys, previous = {}, f"limit={limit}"
    for phase in PHASES:
        previous = keys[phase] = _digest([previous, {name: data[name] for name in SETTINGS[phase]}])
    return keys


def captioner_keys(job: Job) -> dict[str, str]:
    """Per captioner: what decides its raw text for a given image (its settings, and the caption
    settings shared by all captioners, such as a seed)."""
    shared = job.caption.model_dump(mode="json", exclude=_AFTER_CAPTIONING)
    return {c.name: _digest([c.model_dump(mode="json"), shared]) for c in job.caption.captioners}


def first_changed(old: dict[str, str], new: dict[str, str]) -> str | None:
    return next((p for p in PHASES if old.get(p) != new.get(p)), None)


def changed_settings(old: dict, new: dict, prefix: str = "") -> list[str]:
    """Dotted paths of the leaf settings that differ between two job dumps."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in sorted(set(old) | set(new)):
            out += changed_settings(old.get(k), new.get(k), f"{prefix}{k}.")
        return out
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        return [p for i, (a, b) in enumerate(zip(old, new)) for p in changed_settings(a, b, f"{prefix}{i}.")]
    return [] if old == new else [prefix.rstrip(".")]


def describe(old: dict, new: dict, phase: str, limit: int = 4) -> str:
    """'caption.captioners.0.model: 'a' -> 'b'' for the first few changed settings of the phases
    from `phase` on."""
    groups = [name for p in PHASES[PHASES.index(phase):] for name in SETTINGS[p]]
    paths = changed_settings({g: old.get(g) for g in groups}, {g: new.get(g) for g in groups})

    def value(job: dict, path: str):
        for part in path.split("."):
            job = job.get(part) if isinstance(job, dict) else job[int(part)] if isinstance(job, list) and part.isdigit() and int(part) < len(job) else None
        return job

    shown = [f"{p}: {value(old, p)!r} -> {value(new, p)!r}" for p in paths[:limit]]
    return ", ".join(shown) + (f" (and {len(paths) - limit} more)" if len(paths) > limit else "") if shown else "the run limit"
