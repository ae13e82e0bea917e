"""An integer .tflite's `--micro` pair on an emulated Cortex-M4: TFLite Micro compiled for the core
(arm-none-eabi-g++) and run in QEMU's mps2-an386 (benchmarks/cortex_m.py). Its logits must equal
TFLM's on this host bit for bit (integer arithmetic: no CPU may differ), and its smallest arena,
found on the core, is the device's figure: below the x86-64 host's (4-byte pointers).

Needs a tensorflow/tflite-micro checkout with its Makefile's downloads, named by TFSEP_TFLM_ROOT,
arm-none-eabi-g++ with newlib and qemu-system-arm; skipped otherwise (CI has no TFLM sources).
The TFLM library is compiled once into TFSEP_TFLM_LIB (default ~/.cache/tfsep-edge/tflm-cortex-m4,
rebuilt when TFLM's commit, the compiler or the flags change).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ai_edge_litert")
pytest.importorskip("tflite_micro")

from conftest import REPO  # noqa: E402

sys.path.insert(0, str(REPO))  # benchmarks/ is a folder of scripts beside the package
from benchmarks import cortex_m, models  # noqa: E402

TFLM = Path(os.environ["TFSEP_TFLM_ROOT"]) if os.environ.get("TFSEP_TFLM_ROOT") else None
WHY = cortex_m.missing(TFLM)
pytestmark = [pytest.mark.slow, pytest.mark.skipif(WHY is not None, reason=f"no Cortex-M4 build here: {WHY}")]


@pytest.fixture(scope="module")
def integer_tflite(tmp_path_factory) -> Path:
    from tfsep_edge.export.tflite_export import export_tflite

    work = tmp_path_factory.mktemp("m4")
    quantized = models.make_quantized(models.make_checkpoint(12, work / "c12.pt"), work / "q12", integer=True)
    out = work / "integer.tflite"
    export_tflite(quantized, out, int8=True, io="int8", echo=lambda _s: None, timing=False)
    return out


def test_integer_pair_runs_on_a_cortex_m4_as_on_the_host(integer_tflite, tmp_path_factory):
    from tfsep_edge.export.micro_source import write_micro_source
    from tfsep_edge.runtime import micro

    work = tmp_path_factory.mktemp("m4run")
    host_arena = micro.smallest_arena(integer_tflite)
    write_micro_source(integer_tflite, work / "pair", arena_size=host_arena)
    lib = Path(os.environ.get("TFSEP_TFLM_LIB") or cortex_m.default_lib_dir())
    elf = cortex_m.build(TFLM, work / "pair", work / "build", lib)
    mels = models.noise_logmels(4, seed=3).numpy()
    got = cortex_m.run(elf, mels, work)
    host = micro.MicroInterpreter(integer_tflite).run(mels)
    assert np.array_equal(got["logits"], host), np.abs(got["logits"] - host).max()
    assert got["arena_used"] <= got["smallest_arena"] <= got["arena_used"] + 16
    assert got["smallest_arena"] < host_arena  # 4-byte pointers: less bookkeeping than x86-64
    # tfsep_classify with exactly the arena found on the core (-DTFSEP_ARENA_BYTES) classifies
    # the same; 16 bytes less and it cannot set up (the harness fails)
    tight = cortex_m.build(TFLM, work / "pair", work / "tight", lib, arena=got["smallest_arena"])
    assert np.array_equal(cortex_m.run(tight, mels, work)["logits"], host)
    short = cortex_m.build(TFLM, work / "pair", work / "short", lib, arena=got["smallest_arena"] - 16)
    with pytest.raises(RuntimeError, match="tfsep_classify failed"):
        cortex_m.run(short, mels, work)
