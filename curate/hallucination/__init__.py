"""Per-caption hallucination evidence: text degeneration, object phrases, claimed text checked
by OCR, and agreement with the source alt text. Each module feeds fields of
`schemas.record.HALLUCINATION`."""
