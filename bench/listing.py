"""Folder listing: the safe walk (`curate.sources.folder.walk_folder`: every entry classified, links
resolved and checked, special files refused unopened) vs the plain listing it replaced
(`Path.rglob('*')` + `is_file()` + extension filter), on 20,000 files in 20 folders with 2% links."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from bench.common import rate, table
from curate.sources.folder import walk_folder

EXTS = ["jpg", "jpeg", "png", "webp"]


def make_tree(root: Path, n: int) -> None:
    for d in range(20):
        (root / f"d{d}").mkdir()
    for i in range(n):
        p = root / f"d{i % 20}" / f"img_{i}.{'jpg' if i % 3 else 'txt'}"
        if i % 50 == 7 and i > 20:
            os.symlink(root / "d0" / "img_20.jpg", p)   # created earlier (i = 20)
        else:
            p.write_bytes(b"x")


def main(n: int = 20_000) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_tree(root, n)
        wanted = {"." + e for e in EXTS}

        def safe():
            return sum(1 for _ in walk_folder(root, EXTS))

        def plain():
            return sum(1 for p in root.rglob("*") if p.is_file() and p.suffix.lower() in wanted)

        assert safe() == plain()
        table([("safe walk vs rglob + is_file (entries/s)", rate(safe, n), rate(plain, n))], "/s")


if __name__ == "__main__":
    main()
