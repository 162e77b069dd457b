"""A testing hook: named points in the pipeline where a test kills the process (`kill -9`) at a
chosen moment, so crash-resume is tested in every phase without racing the clock.

    CURATE_FAILPOINT=caption.commit:2        SIGKILL this process at the 2nd pass of that point
    CURATE_FAILPOINT=ingest.input,write.index   several points (each at its 1st pass)
    CURATE_FAILPOINT_ONCE=/tmp/x/fired       a folder: each point kills only the first process
                                             to create fired/<point> (a Ray worker's retry runs on)

Passes are counted per process. `init_ray` hands both variables to the job's Ray workers.
Unset (every real run), `hit` is one dictionary lookup. Tests running the pipeline in-process
may instead register a function to call at a point (`on`), e.g. to remove a cluster node.
"""

from __future__ import annotations

import os
import signal
from collections import Counter
from collections.abc import Callable

ENV = "CURATE_FAILPOINT"
ONCE_ENV = "CURATE_FAILPOINT_ONCE"
_passes: Counter[str] = Counter()
_actions: dict[str, Callable[[int], None]] = {}


def hit(name: str) -> None:
    """Pass point `name`: die here if the environment says so, or run the registered action."""
    if name in _actions:
        _passes[name] += 1
        _actions[name](_passes[name])
        return
    spec = os.environ.get(ENV)
    if not spec:
        return
    wanted = dict([*part.split(":"), "1"][:2] for part in spec.split(",") if part)
    if name not in wanted:
        return
    _passes[name] += 1
    if _passes[name] == int(wanted[name]) and _first(name):
        os.kill(os.getpid(), signal.SIGKILL)


def _first(name: str) -> bool:
    folder = os.environ.get(ONCE_ENV)
    if not folder:
        return True
    try:
        os.close(os.open(os.path.join(folder, name), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        return True
    except FileExistsError:
        return False


def on(name: str, action: Callable[[int], None] | None) -> None:
    """Call `action(n)` at the n-th pass of point `name` in this process (None: stop)."""
    _passes.pop(name, None)
    if action is None:
        _actions.pop(name, None)
    else:
        _actions[name] = action


def worker_env() -> dict[str, str]:
    """The failpoint variables of this process, for the job's Ray workers."""
    return {k: os.environ[k] for k in (ENV, ONCE_ENV) if os.environ.get(k)}
