#!/usr/bin/env bash
# make test-arm: the light runtime on aarch64 (qemu-user, Pi 4 = cortex-a72, Pi 5 = cortex-a76)
# and on x86 without VNNI (qemu -cpu Haswell) must give the same labels as this x86 and logits
# within tolerance (see check.py). Correctness only:
# times under emulation are ~100x off and never reported.
# Steps: cached arm64 rootfs + aarch64 wheels (rootfs.sh); models made on the host with the
# project's own export (FP32, INT8 QDQ ONNX; FP32, INT8 .tflite); a few WAVs; the same check.py on x86 and on each CPU.
# Then OpenVINO (when installed, as by `make setup`): every ONNX kind, the integer model's too, with its
# default settings and f32 on the host, each aarch64 CPU and x86 without VNNI (openvino_check.py).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
CACHE=${ARM_CACHE:-.cache/arm64}
WORK="$CACHE/check"
CPUS=${ARM_CPUS:-cortex-a72 cortex-a76}
start=$(date +%s)

ROOT=$(bash deploy/arm-emulation/rootfs.sh | tail -n1)
echo "rootfs ready: $ROOT ($(( $(date +%s) - start )) s)"

rm -rf "$WORK" && mkdir -p "$WORK/wavs"
# Models: untrained C=12 (randomised BN), exported by tfsep_edge.export like any user's model.
"$PY" - "$WORK" <<'PYEOF'
import sys
from pathlib import Path
sys.path.insert(0, ".")
from benchmarks.models import make_models
from tests.runtime_models import write_wav  # noqa: E402 (tests/ is a plain folder)

work = Path(sys.argv[1])
models = make_models(12, work / "models")
for note in models.notes:
    print("note:", note)
if models.onnx_fp32 is None:
    sys.exit("error: could not export the FP32 ONNX model")
names = [models.onnx_fp32] + ([models.onnx_int8] if models.onnx_int8 else [])
# The LiteRT (.tflite) targets of the same weights, exported as a user would.
from tfsep_edge.export.tflite_export import export_tflite  # noqa: E402

quiet = {"echo": lambda _s: None, "timing": False}
names.append(export_tflite(models.checkpoint, work / "models" / "tfsep12_fp32.tflite", **quiet)["out"])
if models.quantized:
    names.append(export_tflite(models.quantized, work / "models" / "tfsep12_int8.tflite", int8=True, **quiet)["out"])
(work / "models.txt").write_text("\n".join(map(str, names)) + "\n")
# OpenVINO stage: every ONNX kind, the integer model's too, on noise log-mels of the one front end.
import numpy as np  # noqa: E402

from benchmarks.models import make_quantized, noise_logmels  # noqa: E402
from tfsep_edge.export.onnx_export import export as export_onnx  # noqa: E402

kinds = {"fp32": models.onnx_fp32, "int8": models.onnx_int8}
integer = make_quantized(models.checkpoint, work / "models" / "integer12", integer=True)
kinds["integer"] = export_onnx(integer, work / "models" / "tfsep12_integer.onnx", int8=True, **quiet)["out"]
(work / "ov_models.txt").write_text("".join(f"{k}={p}\n" for k, p in kinds.items() if p))
np.save(work / "mels.npy", noise_logmels(16, seed=3).numpy())
write_wav(work / "wavs" / "stereo48k_2s5.wav", 2.5, rate=48_000, channels=2, seed=7)
write_wav(work / "wavs" / "mono16k_0s7.wav", 0.7, rate=16_000, seed=8)
PYEOF
cp tests/data/micirp/*.wav "$WORK/wavs/"
mapfile -t MODELS <"$WORK/models.txt"
WAVS=("$WORK"/wavs/*.wav)
echo "models: ${MODELS[*]##*/}; ${#WAVS[@]} wavs ($(( $(date +%s) - start )) s)"

"$PY" deploy/arm-emulation/check.py run --out "$WORK/x86_64.json" --models "${MODELS[@]}" --wavs "${WAVS[@]}"
GUESTS=()
for cpu in $CPUS; do
    t0=$(date +%s)
    # A clean environment: only the guest's site-packages and the package source (no torch there).
    env -i PATH=/usr/bin:/bin HOME=/tmp LANG=C.UTF-8 PYTHONPATH="$ROOT/opt/site:$PWD" QEMU_CPU="$cpu" \
        qemu-aarch64-static -L "$ROOT" "$ROOT/usr/bin/python3.11" deploy/arm-emulation/check.py run \
        --out "$WORK/$cpu.json" --models "${MODELS[@]}" --wavs "${WAVS[@]}" \
        2> >(grep -v -e '^Error in cpuinfo' -e 'cpuinfo_initialize failed' -e 'cpuid_info warning' >&2)
    echo "$cpu done in $(( $(date +%s) - t0 )) s"
    GUESTS+=("$WORK/$cpu.json")
done
# x86 without VNNI, where onnxruntime's u8s8 int8 kernels can saturate: qemu-x86_64 -cpu Haswell,
# through the runtime and with onnxruntime's default session options (any other program).
if [ "$(uname -m)" = x86_64 ] && command -v qemu-x86_64-static >/dev/null; then
    for plain in "" --plain-ort; do
        t0=$(date +%s)
        out="$WORK/x86_64-haswell${plain}.json"
        qemu-x86_64-static -cpu Haswell "$PY" deploy/arm-emulation/check.py run $plain --out "$out" \
            --label "x86_64 under qemu -cpu Haswell (AVX2, no VNNI)" --models "${MODELS[@]}" --wavs "${WAVS[@]}" \
            2> >(grep -v "TCG doesn't support requested feature" >&2)
        echo "Haswell${plain} done in $(( $(date +%s) - t0 )) s"
        GUESTS+=("$out")
    done
elif [ "$(uname -m)" = x86_64 ]; then
    echo "note: no qemu-x86_64-static here: the x86-without-VNNI runs are skipped" >&2
fi
"$PY" deploy/arm-emulation/check.py compare "$WORK/x86_64.json" "${GUESTS[@]}"

# OpenVINO on each CPU kind: the host's, aarch64 (Pi 4 / Pi 5) and x86 without VNNI (Haswell; EPYC-Rome,
# an AMD EPYC with AVX2 only), default settings and f32, against onnxruntime (openvino_check.py).
if "$PY" -c "import openvino" 2>/dev/null; then
    mapfile -t OV_MODELS <"$WORK/ov_models.txt"
    OV=(deploy/arm-emulation/openvino_check.py)
    "$PY" "${OV[@]}" reference --out "$WORK/ov_reference.json" --models "${OV_MODELS[@]}" --mels "$WORK/mels.npy"
    OV_RUNS=()
    # One process per model: under qemu-aarch64 the third compile_model of one process aborted
    # ("pure virtual method called"); alone, each ran every time.
    ov_run() {  # NAME LAUNCHER... -- ARGS...: each model in its own process
        local name=$1; shift
        local launcher=()
        while [ "$1" != -- ]; do launcher+=("$1"); shift; done; shift
        local t0 model
        t0=$(date +%s)
        for model in "${OV_MODELS[@]}"; do
            "${launcher[@]}" "${OV[@]}" run --out "$WORK/ov_${name}_${model%%=*}.json" --models "$model" \
                --mels "$WORK/mels.npy" "$@"
            OV_RUNS+=("$WORK/ov_${name}_${model%%=*}.json")
        done
        echo "OpenVINO $name done in $(( $(date +%s) - t0 )) s"
    }
    host_cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)
    host_flags=()
    [ "$(uname -m)" = x86_64 ] && ! grep -qwE 'avx512_vnni|avx_vnni' /proc/cpuinfo && host_flags=(--no-vnni)
    ov_run host "$PY" -- --label "$(uname -m) $host_cpu (native)" "${host_flags[@]}"
    declare -A MIDR=([cortex-a72]=0x00000000410fd083 [cortex-a76]=0x00000000414fd0b1)
    for cpu in $CPUS; do
        # OpenVINO's ARM plugin reads the CPU's MIDR from sysfs (segfaults without it); qemu -L serves the root's.
        mkdir -p "$ROOT/sys/devices/system/cpu/cpu0/regs/identification"
        echo "${MIDR[$cpu]:-0x00000000410fd083}" >"$ROOT/sys/devices/system/cpu/cpu0/regs/identification/midr_el1"
        ov_run "$cpu" env -i PATH=/usr/bin:/bin HOME=/tmp LANG=C.UTF-8 PYTHONPATH="$ROOT/opt/site-ov" QEMU_CPU="$cpu" \
            qemu-aarch64-static -L "$ROOT" "$ROOT/usr/bin/python3.11" -- --label "aarch64 $cpu (qemu)" \
            2> >(grep -v -e cpuinfo -e 'cpuid_info warning' >&2)
    done
    if [ "$(uname -m)" = x86_64 ] && command -v qemu-x86_64-static >/dev/null; then
        for cpu in Haswell EPYC-Rome; do
            ov_run "$cpu" qemu-x86_64-static -cpu "$cpu" "$PY" -- --no-vnni --label "x86_64 $cpu (qemu, AVX2, no VNNI)" \
                2> >(grep -v "TCG doesn't support requested feature" >&2)
        done
    fi
    "$PY" "${OV[@]}" compare "$WORK/ov_reference.json" "${OV_RUNS[@]}" | tee "$WORK/openvino.md"
else
    echo "note: openvino is not installed here: the OpenVINO stage is skipped" >&2
fi
echo "test-arm passed in $(( $(date +%s) - start )) s"
