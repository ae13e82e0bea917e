"""What machine a benchmark ran on, and its measured peak float32 multiply-accumulate rate. No torch.

Everything is read from the system (/proc, /sys, platform, package metadata) or measured;
a field that cannot be read is None rather than guessed.
"""

from __future__ import annotations

import json
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

# ISA features that matter for these kernels (names as /proc/cpuinfo spells them).
X86_FEATURES = (
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512_vnni",
    "avx_vnni",
    "avx512_bf16",
    "amx_int8",
    "amx_bf16",
)
ARM_FEATURES = ("fp", "asimd", "asimdhp", "asimddp", "i8mm", "bf16", "sve", "sve2", "fphp")
# ARM "CPU part" codes of the cores a Raspberry Pi (and common boards) have; /proc/cpuinfo has no model name there.
ARM_PARTS = {
    "0xd03": "Cortex-A53",
    "0xd04": "Cortex-A35",
    "0xd05": "Cortex-A55",
    "0xd07": "Cortex-A57",
    "0xd08": "Cortex-A72",
    "0xd09": "Cortex-A73",
    "0xd0a": "Cortex-A75",
    "0xd0b": "Cortex-A76",
    "0xd0c": "Neoverse-N1",
    "0xd0d": "Cortex-A77",
    "0xd40": "Neoverse-V1",
    "0xd41": "Cortex-A78",
    "0xd46": "Cortex-A510",
    "0xd47": "Cortex-A710",
    "0xd49": "Neoverse-N2",
    "0xd4f": "Neoverse-V2",
}
THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "ORT_NUM_THREADS")


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace").strip("\x00\n ")
    except OSError:
        return None


def _cpuinfo_fields() -> dict[str, str]:
    """The first value of each key in /proc/cpuinfo (all cores are alike on these boards)."""
    fields: dict[str, str] = {}
    for line in (_read("/proc/cpuinfo") or "").splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip(), value.strip())
    return fields


def emulated(fields: dict[str, str]) -> bool:
    """An aarch64 process reading an x86 /proc/cpuinfo: qemu-user emulation (times mean nothing)."""
    return platform.machine().lower() in ("aarch64", "arm64") and "vendor_id" in fields


def cpu_model(fields: dict[str, str]) -> str | None:
    if emulated(fields):
        return f"emulated aarch64 on {fields.get('model name', 'unknown host')}"
    if fields.get("model name"):
        return fields["model name"]
    part = fields.get("CPU part", "").lower()
    if part:
        return ARM_PARTS.get(part, f"ARM part {part}")
    return platform.processor() or None


# aarch64 HWCAP bits (linux/arch/arm64/include/uapi/asm/hwcap.h): what the kernel (or qemu-user) offers.
AT_HWCAP, AT_HWCAP2 = 16, 26
HWCAP_BITS = {"fp": 0, "asimd": 1, "fphp": 9, "asimdhp": 10, "asimddp": 20, "sve": 22}
HWCAP2_BITS = {"sve2": 1, "i8mm": 13, "bf16": 14}


def hwcap_features() -> set[str]:
    """aarch64 features from the auxiliary vector (/proc/self/auxv); empty elsewhere.
    Under qemu-user /proc/cpuinfo is the host's, but auxv is the emulated CPU's."""
    try:
        raw = Path("/proc/self/auxv").read_bytes()
    except OSError:
        return set()
    import numpy as np

    words = np.frombuffer(raw[: len(raw) // 16 * 16], dtype="<u8").reshape(-1, 2)
    aux = {int(k): int(v) for k, v in words}
    found = {name for name, bit in HWCAP_BITS.items() if aux.get(AT_HWCAP, 0) >> bit & 1}
    return found | {name for name, bit in HWCAP2_BITS.items() if aux.get(AT_HWCAP2, 0) >> bit & 1}


def isa_features(fields: dict[str, str]) -> list[str]:
    flags = set((fields.get("flags") or fields.get("Features") or "").split())
    if platform.machine().lower() in ("aarch64", "arm64") and not fields.get("Features"):
        flags = hwcap_features()
    wanted = ARM_FEATURES if platform.machine().lower() in ("aarch64", "arm64", "armv7l") else X86_FEATURES
    found = [f for f in wanted if f in flags]
    if "asimd" in found:
        found.insert(0, "neon")  # asimd is what Linux calls NEON on aarch64
    if "asimddp" in found:
        found.append("dotprod")
    return found


def cpu_frequency_mhz(fields: dict[str, str]) -> dict[str, float | None]:
    def khz(name: str) -> float | None:
        value = _read(f"/sys/devices/system/cpu/cpu0/cpufreq/{name}")
        return round(int(value) / 1000.0, 1) if value and value.isdigit() else None

    mhz = fields.get("cpu MHz")
    return {
        "current": khz("scaling_cur_freq") or (round(float(mhz), 1) if mhz else None),
        "max": khz("cpuinfo_max_freq"),
        "min": khz("cpuinfo_min_freq"),
    }


def os_name() -> str:
    text = _read("/etc/os-release") or ""
    pretty = re.search(r'^PRETTY_NAME="?([^"\n]*)"?', text, re.M)
    return f"{pretty.group(1)} ({platform.system()} {platform.release()})" if pretty else platform.platform()


def package_version(name: str) -> str | None:
    """Installed version without importing the package (importing torch costs seconds and memory)."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def raspberry_pi_status() -> dict[str, str | None]:
    """Board model, throttling flags and temperature where the system offers them."""
    out: dict[str, str | None] = {"board": _read("/proc/device-tree/model")}
    vcgencmd = shutil.which("vcgencmd")
    for key, args in (("throttled", ["get_throttled"]), ("temperature", ["measure_temp"])):
        value = None
        if vcgencmd:
            try:
                value = subprocess.run([vcgencmd, *args], capture_output=True, text=True, timeout=5).stdout.strip()
            except (OSError, subprocess.SubprocessError):
                value = None
        out[key] = value or None
    if out["temperature"] is None:
        milli = _read("/sys/class/thermal/thermal_zone0/temp")
        out["temperature"] = f"{int(milli) / 1000:.1f}C" if milli and milli.lstrip("-").isdigit() else None
    return out


def machine_info(threads: int) -> dict:
    fields = _cpuinfo_fields()
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count()
    return {
        "hostname": platform.node(),
        "cpu_model": cpu_model(fields),
        "arch": platform.machine(),
        "emulated": emulated(fields),
        "cores": os.cpu_count(),
        "cores_usable": usable,
        "frequency_mhz": cpu_frequency_mhz(fields),
        "governor": _read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"),
        "isa": isa_features(fields),
        "os": os_name(),
        "python": platform.python_version(),
        "versions": {
            name: package_version(name) for name in ("onnxruntime", "ai-edge-litert", "numpy", "torch", "tfsep-edge")
        },
        "threads": threads,
        "thread_env": {k: os.environ[k] for k in THREAD_ENV if k in os.environ},
        "board": raspberry_pi_status(),
    }


BLAS_ENV = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def pin_blas_threads(threads: int) -> None:
    """Give numpy's BLAS the benchmark's thread count (unless the user set it), before numpy loads.

    Otherwise a large product (the reference front end) wakes BLAS threads on every core, which
    then spin and slow whatever runs next, the next front-end call included.
    """
    if "numpy" not in sys.modules:
        for var in BLAS_ENV:
            os.environ.setdefault(var, str(threads))


def _peak_worker(n: int, seconds: float) -> None:
    """Run in a subprocess whose BLAS thread count is set by the environment: best n^3 matmul rate."""
    import numpy as np

    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    out = np.empty((n, n), dtype=np.float32)
    np.matmul(a, b, out=out)  # warm-up: page in, pick kernels
    best, reps, start = float("inf"), 0, time.perf_counter()
    while reps < 3 or (time.perf_counter() - start < seconds and reps < 200):
        t0 = time.perf_counter_ns()
        np.matmul(a, b, out=out)
        best = min(best, time.perf_counter_ns() - t0)
        reps += 1
    print(json.dumps({"macs_per_s": n**3 / (best * 1e-9), "n": n, "reps": reps, "best_ms": best / 1e6}))


def measure_peak_macs(threads: int, n: int = 1024, seconds: float = 1.0) -> dict:
    """Peak float32 MAC rate of this machine with `threads` BLAS threads: the best of repeated n x n
    matrix products (numpy's BLAS), measured in a fresh process so the thread count takes effect."""
    env = {**os.environ, **{k: str(threads) for k in BLAS_ENV}}
    code = f"from tfsep_edge.bench.machine import _peak_worker; _peak_worker({int(n)}, {float(seconds)})"
    try:
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120 + 10 * seconds
        )
        result = json.loads(done.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return {"macs_per_s": None, "n": n, "threads": threads, "note": "matmul probe failed"}
    result["threads"] = threads
    result["method"] = f"numpy float32 matmul {n}x{n}x{n}, best of {result['reps']}"
    return result


def rss_mb() -> float | None:
    """Current resident memory of this process (Linux /proc/self/statm)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * resource.getpagesize() / 2**20


def ru_maxrss_mb() -> float:
    """getrusage's peak (KiB on Linux, bytes on macOS). Caveat: Linux carries it across exec, so a
    process started by a big parent (a test runner, a benchmark script) inherits the parent's peak."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def peak_rss_mb() -> float:
    """Peak resident memory of this process: VmHWM (this address space only), else ru_maxrss."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return ru_maxrss_mb()
