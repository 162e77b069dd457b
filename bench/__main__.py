"""`make bench`: run every benchmark (or those named: `python -m bench ingest`)."""

import importlib
import sys

BENCHES = ["ingest", "dedup", "caption", "ocr", "halluc", "listing", "crawl", "memory", "staging", "datapath", "embedreuse"]


def main(names: list[str]) -> None:
    for name in names or BENCHES:
        print(f"\n=== bench/{name} ===", flush=True)
        importlib.import_module(f"bench.{name}").main()


if __name__ == "__main__":
    main(sys.argv[1:])
