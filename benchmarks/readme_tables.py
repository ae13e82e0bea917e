"""Copy result tables from benchmarks/results/ into README.md, between marker comments.

    <!-- from benchmarks/results/FILE.md: HEADING -->
    ...generated, do not edit...
    <!-- end -->

HEADING names a `#`/`##` heading of FILE; its body (up to the next heading) is copied. The
README's figures therefore always come from committed benchmark results, never typed by hand;
tests/test_readme.py fails when they drift. Run after a benchmark: python benchmarks/readme_tables.py
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MARKER = re.compile(r"<!-- from (?P<file>\S+): (?P<heading>.+?) -->\n.*?<!-- end -->", re.S)


def section(file: Path, heading: str) -> str:
    lines = file.read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        if line.lstrip("#").strip() == heading and line.startswith("#"):
            body = []
            for nxt in lines[i + 1 :]:
                if nxt.startswith("#"):
                    break
                body.append(nxt)
            return "\n".join(body).strip()
    raise SystemExit(f"{file}: no heading {heading!r}")


def render(readme: str) -> str:
    def fill(m: re.Match) -> str:
        body = section(REPO / m["file"], m["heading"])
        return f"<!-- from {m['file']}: {m['heading']} -->\n{body}\n<!-- end -->"

    return MARKER.sub(fill, readme)


def main() -> int:
    path = REPO / "README.md"
    text = path.read_text(encoding="utf-8")
    new = render(text)
    if new != text:
        path.write_text(new, encoding="utf-8")
        print("README.md updated from benchmarks/results/")
    else:
        print("README.md already matches benchmarks/results/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
