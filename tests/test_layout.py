"""The import rule of tfsep_edge (README, "Layout"), read from the source with ast:

- each stage imports only stages below it in STAGES (the root package counts as core);
- `cli` and `demo` sit on top and nothing in the package imports them;
- signal, datasets, runtime, bench, core and cli never import torch at module level, and the
  runtime reaches torch models (model, quant, budget) only lazily, in runtime/torch_models.py;
- the modules form no import cycle (lazy imports included).
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "tfsep_edge"
STAGES = ("core", "signal", "model", "datasets", "train", "quant", "budget", "runtime", "export", "bench", "top")
TOP = ("cli", "demo")
TORCH_FREE = ("core", "signal", "datasets", "runtime", "bench", "top")
TORCH_STAGES = ("model", "quant", "budget", "train", "export")
RUNTIME_TORCH_GATE = "tfsep_edge.runtime.torch_models"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def stage_of(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "top"  # tfsep_edge itself: the public API (TFSepNet, load_model), lazily
    return "top" if parts[1] in TOP else parts[1]


def imports(path: Path) -> list[tuple[str, bool]]:
    """(imported module, at module level?) for every import of the file."""
    tree = ast.parse(path.read_text())
    top_level = {id(n) for n in tree.body} | {
        id(c)
        for n in tree.body
        if isinstance(n, ast.If)
        for c in n.body  # `if TYPE_CHECKING:`-style blocks
    }
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name, id(node) in top_level) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, id(node) in top_level))
            if node.module == "tfsep_edge" or node.module.count(".") == 1:  # `from tfsep_edge.<stage> import module`
                found += [(f"{node.module}.{a.name}", id(node) in top_level) for a in node.names]
    return found


@functools.cache
def package_modules() -> dict[str, list[tuple[str, bool]]]:
    return {module_name(p): imports(p) for p in sorted(PACKAGE.rglob("*.py"))}


def test_no_relative_imports():
    """Absolute imports only: the stage of every import is visible in its text."""
    for path in PACKAGE.rglob("*.py"):
        rel = [n.lineno for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.ImportFrom) and n.level]
        assert not rel, f"{path}: relative imports at lines {rel}"


def test_stages_import_only_stages_below():
    mods = package_modules()
    bad = []
    for mod, found in mods.items():
        mine = STAGES.index(stage_of(mod))
        for target, _ in found:
            if target.startswith("tfsep_edge") and target in mods:
                theirs = STAGES.index(stage_of(target))
                if theirs > mine:
                    bad.append(f"{mod} -> {target}")
    assert not bad, "imports upward:\n" + "\n".join(bad)


def test_nothing_imports_the_cli_or_the_demo():
    bad = [
        f"{mod} -> {t}"
        for mod, found in package_modules().items()
        for t, _ in found
        if stage_of(mod) != "top" and t.split(".")[:2] in (["tfsep_edge", "cli"], ["tfsep_edge", "demo"])
    ]
    assert not bad, bad


def test_light_stages_never_import_torch_at_module_level():
    bad = [
        f"{mod} imports {t}"
        for mod, found in package_modules().items()
        if stage_of(mod) in TORCH_FREE
        for t, top_level in found
        if top_level and (t.split(".")[0] == "torch" or (t in package_modules() and stage_of(t) in TORCH_STAGES))
    ]
    assert not bad, bad


def test_runtime_and_bench_reach_torch_models_through_one_place():
    mods = package_modules()
    bad = []
    for mod, found in mods.items():
        if stage_of(mod) not in ("runtime", "bench") or mod == RUNTIME_TORCH_GATE:
            continue
        bad += [f"{mod} -> {t}" for t, _ in found if t in mods and stage_of(t) in TORCH_STAGES]
    for t, top_level in mods[RUNTIME_TORCH_GATE]:
        if t in mods and stage_of(t) in TORCH_STAGES and top_level:
            bad.append(f"{RUNTIME_TORCH_GATE} imports {t} at module level")
    assert not bad, bad


def test_no_import_cycles():
    mods = package_modules()
    graph = {m: {t for t, _ in found if t in mods and t != m} for m, found in mods.items()}
    state: dict[str, int] = {}  # 1 on the stack, 2 done

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for t in sorted(graph[m]):
            if t in path or state.get(t) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*path[path.index(t) :], t]))
            if state.get(t) != 2:
                visit(t, [*path, t])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])


def test_every_stage_is_a_package_of_the_layout():
    on_disk = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    assert on_disk == set(STAGES) - {"top"}, on_disk


def test_the_readme_layout_table_lists_every_module():
    import re

    readme = (PACKAGE.parent / "README.md").read_text()
    table = readme[readme.index("## Layout") :]
    for stage in set(STAGES) - {"top"}:
        row = next(line for line in table.splitlines() if line.startswith(f"| `{stage}/`"))
        listed = set(re.findall(r"`([a-z_0-9]+)`", row.split("|")[2]))
        on_disk = {p.stem for p in (PACKAGE / stage).glob("*.py") if p.stem != "__init__"}
        assert listed == on_disk, (stage, sorted(listed ^ on_disk))
