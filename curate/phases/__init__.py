"""The pipeline phases: ingest, dedup, caption, write, report."""
