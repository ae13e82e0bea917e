"""benchmarks/table3.py: the rows differ only where the ablation says, and the committed table is
the committed JSON rendered (no figure typed by hand)."""

from __future__ import annotations

import json

from conftest import REPO, load_script


def _table3():
    return load_script("benchmarks/table3.py", "table3_bench")


def test_rows_differ_only_in_model_norm_devsim_and_width():
    t3 = _table3()
    rows = t3.row_specs([40, 12])
    assert [r["options"]["width"] for r in rows] == [40, 40, 40, 40, 12, 12]
    assert {k for r in rows for k in r["options"]} == {"model", "norm", "devsim", "width"}
    assert [r["options"]["model"] for r in rows] == ["bcresnet"] + ["tfsepnet"] * 5
    norms = [None, "resnorm", "adaresnorm", "adaresnorm", "resnorm", "adaresnorm"]
    assert [r["options"].get("norm") for r in rows] == norms
    assert [r["options"]["devsim"] for r in rows] == ["none", "none", "none", "offline", "offline", "offline"]
    # each row that is one of the report's names the report's row, whose figures are the report's
    named = [r["report_row"] for r in rows if r["report_row"]]
    assert named == [
        "BC-ResNet, C=40 + ResNorm",
        "TF-SepNet, C=40 + ResNorm",
        "+ AdaResNorm (1)",
        "+ Device Simulation (2)",
        "TF-SepNet, C=12 + (1)(2)",
    ]
    assert all(n in t3.REPORT_ACCURACY and n in t3.REPORT_COUNTS for n in named)
    # another ablation width has no report row to stand beside
    assert not any(r["report_row"] for r in t3.row_specs([24])[:4])


def test_committed_table_is_the_committed_json_rendered():
    t3 = _table3()
    saved = json.loads((REPO / "benchmarks" / "results" / "table3.json").read_text())
    assert saved["synthetic_data"] is True
    assert (REPO / "benchmarks" / "results" / "table3.md").read_text() == t3.markdown(saved)
    text = t3.markdown(saved)
    assert "SYNTHETIC" in text and f"{saved['recipe']['epochs']} epochs" in text


def test_seeds_combine_runs_of_the_same_rows_only(tmp_path):
    """--combine puts runs that differ only in --seed side by side (mean, sd, each step per seed),
    and refuses runs of other rows or data, or a repeated seed."""
    import pytest

    t3 = _table3()
    saved = json.loads((REPO / "benchmarks" / "results" / "table3.json").read_text())
    other = json.loads(json.dumps(saved))
    other["recipe"]["seed"] = saved["recipe"]["seed"] + 1
    for row in other["rows"]:
        row["accuracy"] -= 0.02
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(saved))
    b.write_text(json.dumps(other))
    result = t3.combine([a, b])
    assert result["recipe"]["seed"] == [saved["recipe"]["seed"], saved["recipe"]["seed"] + 1]
    first = result["rows"][0]["accuracy"]
    assert first[0] - first[1] == pytest.approx(0.02)
    text = t3.seeds_markdown(result)
    assert "SYNTHETIC" in text and "| yes |" in text  # every step moved the same way in both (shifted) runs
    with pytest.raises(SystemExit, match="seeds"):
        t3.combine([a, a])
    other["data"] = "another set"
    b.write_text(json.dumps(other))
    with pytest.raises(SystemExit, match="not the same"):
        t3.combine([a, b])
    committed = REPO / "benchmarks" / "results" / "table3_seeds.json"
    if committed.is_file():
        seeds = json.loads(committed.read_text())
        assert (REPO / "benchmarks" / "results" / "table3_seeds.md").read_text() == t3.seeds_markdown(seeds)
