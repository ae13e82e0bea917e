#!/usr/bin/env bash
# make test-arm: the light runtime on aarch64 (qemu-user, Pi 4 = cortex-a72, Pi 5 = cortex-a76)
# and on x86 without VNNI (qemu -cpu Haswell) must give the same labels as this x86 and logits
# within tolerance (see check.py). Correctness only:
# times under emulation are ~100x off and never reported.
# Steps: cached arm64 rootfs + aarch64 wheels (rootfs.sh); models made on the host with the
# project's own export (FP32, INT8 QDQ ONNX; FP32, INT8 .tflite); a few WAVs; the same check.py on x86 and on each CPU.
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
echo "test-arm passed in $(( $(date +%s) - start )) s"
