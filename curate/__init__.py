"""curate: raw image sources -> training-ready shards for text-to-image models.

The Python API (`curate.load`, `curate.validate`, `curate.run`, `curate.status`) is in
`curate.api`; it is imported on first use, so `import curate` stays light.
"""

__version__ = "0.1.0"

_API = {"load", "validate", "run", "status", "JobError", "AccountingError"}


def __getattr__(name: str):
    if name in _API:
        from curate import api

        return getattr(api, name)
    raise AttributeError(f"module 'curate' has no attribute {name!r}")
