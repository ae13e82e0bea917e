"""A .tflite on a Cortex-M4 under emulation: TFLite Micro built for the core, run in QEMU.

`export ... --micro DIR` writes the C/C++ pair; deploy/microcontroller/qemu/build.sh compiles it
with deploy/microcontroller/tfsep_classify.cc, the harness m4_main.cc and TFLM's reference
kernels for a Cortex-M4F (arm-none-eabi-g++), and QEMU's mps2-an386 board runs the result with
semihosting (host files and output). What comes back: each log-mel patch's logits (to compare
with TFLM on this host, tfsep_edge.runtime.micro), the arena the interpreter used, and the
smallest arena with which it builds and runs, found on the core itself: TFLM's bookkeeping with
the core's 4-byte pointers, not the x86-64 host's. QEMU counts no cycles: no timings here.

Needs a tensorflow/tflite-micro checkout with its downloads in place (flatbuffers, gemmlowp, ruy:
the Makefile's download scripts), arm-none-eabi-g++ with newlib, and qemu-system-arm.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np

QEMU_DIR = Path(__file__).resolve().parents[1] / "deploy" / "microcontroller" / "qemu"
TOOLS = ("arm-none-eabi-g++", "qemu-system-arm")
BOARD = "mps2-an386"  # Arm's MPS2 FPGA image of a Cortex-M4 with FPU


def missing(tflm_root: Path | None) -> str | None:
    """Why a Cortex-M4 run cannot happen here, or None."""
    for tool in TOOLS:
        if shutil.which(tool) is None:
            return f"{tool} not installed"
    if tflm_root is None:
        return "no tensorflow/tflite-micro checkout given"
    if not (Path(tflm_root) / "tensorflow" / "lite" / "micro").is_dir():
        return f"{tflm_root}: not a tensorflow/tflite-micro checkout (no tensorflow/lite/micro in it)"
    if not (Path(tflm_root) / "tensorflow/lite/micro/tools/make/downloads/flatbuffers/include").is_dir():
        return f"{tflm_root}: its Makefile's downloads (flatbuffers, gemmlowp, ruy) are missing"
    return None


def default_lib_dir() -> Path:
    """Where TFLM's Cortex-M4 library is kept between runs (build.sh rebuilds it when its stamp,
    TFLM commit, compiler and flags, changes)."""
    return Path.home() / ".cache" / "tfsep-edge" / "tflm-cortex-m4"


def flash_bytes(elf: Path) -> int:
    """What the program keeps in flash: its text (code, constants, the model) and initialised data."""
    out = subprocess.run(["arm-none-eabi-size", str(elf)], capture_output=True, text=True, check=True).stdout
    text, data = (int(v) for v in out.splitlines()[1].split()[:2])
    return text + data


def build(tflm_root: Path, pair_dir: Path, out_dir: Path, lib_dir: Path, arena: int | None = None) -> Path:
    """The harness ELF for the pair in `pair_dir`; TFLM's library is compiled into `lib_dir` once.
    `arena`: tfsep_classify's arena in bytes (-DTFSEP_ARENA_BYTES) instead of the header's."""
    env = {**os.environ, "PAIR_FLAGS": f"-DTFSEP_ARENA_BYTES={int(arena)}" if arena else ""}
    done = subprocess.run(
        ["bash", str(QEMU_DIR / "build.sh"), str(tflm_root), str(pair_dir), str(out_dir), str(lib_dir)],
        capture_output=True,
        text=True,
        timeout=3600,
        env=env,
    )
    if done.returncode != 0:
        raise RuntimeError(f"build.sh failed: {(done.stdout + done.stderr)[-2000:]}")
    return out_dir / "m4_main.elf"


def run(elf: Path, logmels: np.ndarray, work: Path, timeout: float = 600) -> dict:
    """Run the harness on float32 log-mel patches: {"logits", "arena_used", "smallest_arena"}."""
    feed = work / "logmels.f32"
    np.ascontiguousarray(logmels, dtype="<f4").tofile(feed)
    cmd = ["qemu-system-arm", "-machine", BOARD, "-nographic", "-monitor", "none", "-serial", "none"]
    cmd += ["-semihosting-config", "enable=on,target=native", "-kernel", str(elf), "-append", str(feed)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    out = done.stdout
    logits = [[float(v) for v in line.split()[1:]] for line in out.splitlines() if line.startswith("logits ")]
    fields = dict(re.findall(r"^(arena_used|smallest_arena|patches) (\d+)$", out, re.M))
    if done.returncode != 0 or "smallest_arena" not in fields or len(logits) != len(logmels):
        raise RuntimeError(f"the Cortex-M4 run failed (exit {done.returncode}): {(out + done.stderr)[-1500:]}")
    return {
        "logits": np.array(logits, np.float32),
        "arena_used": int(fields["arena_used"]),
        "smallest_arena": int(fields["smallest_arena"]),
    }


def versions() -> dict:
    """The toolchain and emulator that made a result."""

    def first_line(cmd: list[str]) -> str | None:
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.splitlines()[0]
        except (OSError, IndexError, subprocess.SubprocessError):
            return None

    return {
        "compiler": first_line(["arm-none-eabi-g++", "--version"]),
        "qemu": first_line(["qemu-system-arm", "--version"]),
    }


def tflm_commit(tflm_root: Path) -> str | None:
    """The checkout's commit, if `tflm_root` is the top of a git work tree (not a folder inside another)."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", "-C", str(tflm_root), *args], capture_output=True, text=True)
        return done.stdout.strip()

    top = git("rev-parse", "--show-toplevel")
    if not top or Path(top).resolve() != Path(tflm_root).resolve():
        return None
    return git("rev-parse", "HEAD") or None
