"""The run's log file and one-line error causes.

Each `curate run` attempt writes `<run>/logs/<UTC time>.log` (phases, timings, and the full
traceback of any error); the terminal gets one line naming the cause and that file.
"""

from __future__ import annotations

import logging
import re
import traceback
from datetime import UTC, datetime
from pathlib import Path

log = logging.getLogger("curate")


class RunFailed(Exception):
    """A run stopped by an error: the message is one line; the traceback is in `log_path`."""

    def __init__(self, cause: str, log_path: Path):
        super().__init__(f"{cause} (full traceback in {log_path})")
        self.cause, self.log_path = cause, log_path


def start_log(root: Path) -> Path:
    """Send the `curate` logger to a new file under `root/logs/` (replacing an earlier file
    handler of this process); returns the file's path."""
    path = Path(root) / "logs" / f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    for h in [h for h in log.handlers if isinstance(h, logging.FileHandler)]:
        log.removeHandler(h)
        h.close()
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    return path


def root_cause(exc: BaseException) -> BaseException:
    """The innermost cause: through Ray's task/actor wrappers and `raise ... from` chains."""
    seen = set()
    while id(exc) not in seen:
        seen.add(id(exc))
        inner = getattr(exc, "cause", None) if type(exc).__module__.startswith("ray.") else None
        inner = inner if isinstance(inner, BaseException) else exc.__cause__
        if inner is None:
            break
        exc = inner
    return exc


# "SomeError: message" lines of a traceback text (Ray ships a worker's traceback as text only)
_RAISED = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception|Exit|NotFound|Interrupt)): (.+)$")


def one_line(exc: BaseException) -> str:
    """The first cause of `exc` in one line: a worker's original error where Ray wrapped it."""
    cause = root_cause(exc)
    if type(cause).__module__.startswith("ray."):
        raised = [m for m in map(_RAISED.match, str(exc).splitlines()) if m and not m.group(1).startswith("ray.")]
        if raised:
            name, message = raised[0].groups()
            return f"{name.rsplit('.', 1)[-1]}: {message[:300]}"
    text = [line for line in str(cause).strip().splitlines() if line.strip()]
    return f"{type(cause).__name__}: {text[0][:300]}" if text else type(cause).__name__


def log_failure(exc: BaseException) -> None:
    log.error("run failed: %s\n%s", one_line(exc), "".join(traceback.format_exception(exc)))
