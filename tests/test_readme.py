"""The README's figures come from committed benchmark results, not typed by hand."""

from __future__ import annotations

from conftest import REPO, load_script


def _readme_tables():
    return load_script("benchmarks/readme_tables.py", "readme_tables")


def test_readme_tables_match_committed_results():
    tables = _readme_tables()
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    blocks = tables.MARKER.findall(readme)
    assert len(blocks) >= 3, "the README should show the latency, quantization and export tables"
    assert tables.render(readme) == readme, "README tables drifted: run python benchmarks/readme_tables.py"


def test_readme_opens_with_the_two_setup_commands():
    head = (REPO / "README.md").read_text(encoding="utf-8").split("\n## ")[0]
    assert "make demo" in head and "make test" in head
