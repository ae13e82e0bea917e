"""The aarch64 check's comparison (deploy/arm-emulation/check.py) on hand-made results: no qemu here."""

from __future__ import annotations

import json

from conftest import load_script

arm_check = load_script("deploy/arm-emulation/check.py", "arm_check")


def result(arch: str, fp32: list[float], int8: list[float], labels=("bus", "park")) -> dict:
    def files(logits):
        return {f"{i}.wav": {"label": labels[i], "logits": logits} for i in range(2)}

    return {
        "arch": arch,
        "machine": {"cpu_model": arch},
        "isa": ["asimd"],
        "models": {
            "m_fp32.onnx": {"precision": "fp32", "files": files(fp32), "bench_ran": True},
            "m_int8.onnx": {"precision": "int8", "files": files(int8), "bench_ran": True},
        },
    }


def write(tmp_path, name, data):
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def test_within_tolerance_passes(tmp_path, capsys):
    host = write(tmp_path, "x86.json", result("x86_64", [0.5, -1.0], [0.45, -0.9]))
    guest = write(tmp_path, "a72.json", result("aarch64", [0.5 + 3e-6, -1.0], [0.45 + 5e-5, -0.9]))
    assert arm_check.compare(host, [guest]) == 0
    out = capsys.readouterr().out
    assert "FAIL" not in out and "vs x86 FP32" in out  # the INT8 quantization gap is reported, not checked


def test_fp32_beyond_tolerance_fails(tmp_path):
    host = write(tmp_path, "x86.json", result("x86_64", [0.5, -1.0], [0.45, -0.9]))
    guest = write(tmp_path, "a76.json", result("aarch64", [0.5 + 2 * arm_check.TOL["fp32"], -1.0], [0.45, -0.9]))
    assert arm_check.compare(host, [guest]) == 1


def test_label_mismatch_fails(tmp_path):
    host = write(tmp_path, "x86.json", result("x86_64", [0.5, -1.0], [0.45, -0.9]))
    guest = write(tmp_path, "a72.json", result("aarch64", [0.5, -1.0], [0.45, -0.9], labels=("bus", "tram")))
    assert arm_check.compare(host, [guest]) == 1
