"""curate: raw image sources -> training-ready shards for text-to-image models."""

__version__ = "0.1.0"
