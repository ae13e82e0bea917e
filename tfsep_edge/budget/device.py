"""What a .tflite needs on a microcontroller, against the limits a user gives: RAM (the smallest
TensorFlow Lite Micro arena, measured by the interpreter) and flash (the flatbuffer's bytes).

The measurement itself lives in runtime/micro.py (TFLM on the host); the budget stage sits below
the runtime, so the command passes it in as `measure` (cli.py). Sizes are bytes, or a number with
an SI or binary suffix: 96K = 96kB = 96,000; 96KiB = 98,304; M/MB and MiB likewise (the DCASE
parameter limit, 128 kB, is 128,000 bytes).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from tfsep_edge.core.errors import TfsepError

_UNITS = {"": 1, "k": 1000, "kb": 1000, "kib": 1024, "m": 1000**2, "mb": 1000**2, "mib": 1024**2}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$", re.IGNORECASE)


def parse_size(text: str | None, option: str) -> int | None:
    """'96K' -> 96000, '256KiB' -> 262144, '80000' -> 80000; None stays None."""
    if text is None:
        return None
    m = _SIZE.match(str(text))
    unit = m.group(2).lower() if m else None
    if m is None or unit not in _UNITS:
        raise TfsepError(f"{option} {text!r}: not a size; give bytes (80000) or with a unit (96K, 96kB, 256KiB, 1MiB)")
    value = float(m.group(1)) * _UNITS[unit]
    if value <= 0 or value != int(value):
        raise TfsepError(f"{option} {text!r}: must be a positive whole number of bytes")
    return int(value)


def device_checks(
    path: Path | None, ram: int | None, flash: int | None, measure: Callable[[Path, bool], dict] | None
) -> dict | None:
    """The report's `device` section for a .tflite: measured figures, and a PASS/FAIL check for each
    limit given. `measure(path, need_ram)` returns {"flash_bytes", "arena_bytes" (None if TFLM is
    not installed and not needed)}. None when MODEL is not a .tflite and no limit was given."""
    is_tflite = path is not None and Path(path).suffix.lower() == ".tflite"
    if not is_tflite:
        if ram is not None or flash is not None:
            flag = "--ram" if ram is not None else "--flash"
            raise TfsepError(
                f"{path or 'budget'}: {flag} applies to a .tflite (what TensorFlow Lite Micro runs); "
                "export one with `tfsep-edge export MODEL --tflite OUT.tflite` and pass it"
            )
        return None
    figures = measure(Path(path), ram is not None)
    checks = []
    for name, used, allowed in (("ram", figures["arena_bytes"], ram), ("flash", figures["flash_bytes"], flash)):
        if allowed is None or used is None:
            continue
        checks.append(
            {
                "name": name,
                "used": used,
                "allowed": allowed,
                "headroom": allowed - used,
                "headroom_percent": round(100.0 * (allowed - used) / allowed, 2),
                "pass": used <= allowed,
            }
        )
    return figures | {"checks": checks, "fits": all(c["pass"] for c in checks)}


def format_device(device: dict) -> list[str]:
    arena = device["arena_bytes"]
    ram = (
        f"{arena:,} bytes (smallest TFLite Micro arena, measured; {device['arena_basis']})"
        if arena is not None
        else f"not measured: {device['arena_basis']}"
    )
    lines = ["", "On a microcontroller (TensorFlow Lite Micro):", f"  RAM   {ram}"]
    lines.append(f"  flash {device['flash_bytes']:,} bytes (the .tflite flatbuffer, stored as the model array)")
    for c in device["checks"]:
        lines.append(
            f"  {c['name']:<5} {c['used']:>10,} of {c['allowed']:>10,} allowed, headroom {c['headroom']:,} "
            f"({c['headroom_percent']:.1f}%)  {'PASS' if c['pass'] else 'FAIL'}"
        )
    ram_failed = any(c["name"] == "ram" and not c["pass"] for c in device["checks"])
    if ram_failed and device.get("pointer_bits", 32) > 32:
        lines.append(
            "  note: measured with this host's TFLM; a 32-bit core needs less bookkeeping: build the --micro pair "
            "for the part and read tfsep_arena_used() there (deploy/microcontroller/README.md)"
        )
    if device["checks"]:
        verdict = "fits" if device["fits"] else "does NOT fit"
        lines.append(f"{'PASS' if device['fits'] else 'FAIL'}: the model {verdict} the device limits given")
    return lines
