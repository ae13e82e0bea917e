"""Shared fixtures. Test data lives in tests/data (bundled, small): CI has no ../shared."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"
REPO = Path(__file__).resolve().parents[1]


def load_script(relative: str, name: str):
    """A script of the repository that is not a package module (benchmarks/, deploy/), as a module."""
    spec = importlib.util.spec_from_file_location(name, REPO / relative)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# Keep the suite within 2 cores and repeatable.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA


@pytest.fixture()
def no_torch(tmp_path) -> dict:
    """Environment whose PYTHONPATH puts first a `torch` package that fails to import, as on a
    Raspberry Pi with only the light runtime."""
    fake = tmp_path / "blocker" / "torch"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('torch is blocked in this test')\n")
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(fake.parent), os.environ.get("PYTHONPATH")]))}


def run_cli(*args: str, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run `tfsep-edge ARGS` in a subprocess, as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "tfsep_edge.cli", *map(str, args)],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=timeout,
        cwd=REPO,
    )
