"""Rows for `rejects/`: one per input that was not written, with its reason and outcome."""

from __future__ import annotations

import pyarrow as pa

from schemas.reasons import Reason
from schemas.record import REJECTS, rows_to_table


def rejects_from(rows: pa.Table, phase: str, reason_column: str = "status") -> pa.Table:
    out = []
    for r in rows.to_pylist():
        reason = Reason(r[reason_column])
        out.append({**r, "phase": phase, "reason": reason.value, "outcome": reason.outcome.value})
    return rows_to_table(out, REJECTS)
