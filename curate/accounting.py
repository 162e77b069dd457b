"""The accounting invariant: every planned input is written, rejected or failed, exactly once,
per unit and in total. A violation fails the run loudly."""

from __future__ import annotations

from collections import Counter, defaultdict

import pyarrow as pa


class AccountingError(RuntimeError):
    pass


def account(units_plan: pa.Table, ingested: pa.Table, index: pa.Table, rejects: pa.Table) -> dict:
    """`ingested` has a row for every input read (staged or not): those are the inputs."""
    unit_of = dict(zip(ingested["key"].to_pylist(), ingested["unit"].to_pylist()))
    units: dict[str, Counter] = defaultdict(Counter)
    for u in ingested["unit"].to_pylist():
        units[u]["inputs"] += 1
    seen: Counter = Counter()
    problems = []
    if len(unit_of) != ingested.num_rows:
        problems.append(f"{ingested.num_rows - len(unit_of)} inputs share a key with another input")
    for plan in units_plan.to_pylist():
        units.setdefault(plan["unit"], Counter())
        if plan["kind"] == "slice" and units[plan["unit"]]["inputs"] != plan["stop"] - plan["start"]:
            problems.append(f"unit {plan['unit']}: {units[plan['unit']]['inputs']} inputs ingested of {plan['stop'] - plan['start']} listed")
    for key in index["key"].to_pylist():
        seen[key] += 1
        if key not in unit_of:
            problems.append(f"written key {key} was never an input")
            continue
        units[unit_of[key]]["written"] += 1
    rejected, failed = Counter(), Counter()
    for r in rejects.select(["key", "outcome", "reason"]).to_pylist():
        seen[r["key"]] += 1
        if r["key"] not in unit_of:
            problems.append(f"rejected key {r['key']} was never an input")
            continue
        units[unit_of[r["key"]]][r["outcome"]] += 1
        (failed if r["outcome"] == "failed" else rejected)[r["reason"]] += 1
    problems += [f"key {k} accounted {n} times" for k, n in seen.items() if n > 1]
    problems += [f"input {k} is neither written nor rejected nor failed" for k in unit_of if k not in seen]
    for u, c in units.items():
        if c["inputs"] != c["written"] + c["rejected"] + c["failed"]:
            problems.append(f"unit {u}: inputs {c['inputs']} != written {c['written']} + rejected {c['rejected']} + failed {c['failed']}")
    if problems:
        raise AccountingError("accounting invariant violated:\n  " + "\n  ".join(problems[:20]))
    return {
        "inputs": ingested.num_rows,
        "written": index.num_rows,
        "rejected": dict(sorted(rejected.items())),
        "failed": dict(sorted(failed.items())),
        "units": {u: {k: c[k] for k in ("inputs", "written", "rejected", "failed")} for u, c in sorted(units.items())},
    }
