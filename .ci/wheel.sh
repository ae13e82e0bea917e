#!/usr/bin/env bash
# What users install: build the wheel, install it into clean venvs outside the repo, and run the
# pipeline from an empty folder. Heavy venv ([torch,tflite]): synth -> train (2 epochs, default
# options) -> quantize -> export FP32 and INT8 ONNX and .tflite -> budget -> predict -> bench.
# Light venv (no extras): torch must not import; predict and bench of the ONNX models must work;
# then with the [tflite] extra added, the same for the .tflite models.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
PY=${PY:-$REPO/.venv/bin/python}
WORK=$(mktemp -d /tmp/tfsep-wheel.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
start=$(date +%s)
step() { echo "== $* ($(( $(date +%s) - start )) s)"; }

step "build the wheel"
"$PY" -m pip wheel -q --no-deps --no-build-isolation -w "$WORK/dist" "$REPO" 2>/dev/null \
    || "$PY" -m pip wheel -q --no-deps -w "$WORK/dist" "$REPO"
WHEEL=$(ls "$WORK"/dist/tfsep_edge-*.whl)
# (zipfile, not `unzip -l | grep -q`: grep's early exit is a SIGPIPE that pipefail reports as failure)
"$PY" -c "import sys, zipfile; names = zipfile.ZipFile(sys.argv[1]).namelist()
sys.exit(sum(n.startswith('tfsep_edge/assets/micirp/') and n.endswith('.wav') for n in names) != 66)" "$WHEEL" \
    || { echo "wheel lacks the 66 MicIRP assets"; exit 1; }

step "heavy venv: torch first (a user who has it), then $WHEEL[torch,tflite] must keep it"
python3 -m venv "$WORK/heavy"
"$WORK/heavy/bin/pip" install -q -c "$REPO/constraints.txt" torch
before=$("$WORK/heavy/bin/python" -c "import torch; print(torch.__version__)")
"$WORK/heavy/bin/pip" install "$WHEEL[torch,tflite]" > "$WORK/heavy-pip.log" 2>&1 \
    || { grep -v "WARNING: Location" "$WORK/heavy-pip.log" | tail -20; exit 1; }
grep "Requirement already satisfied: torch" "$WORK/heavy-pip.log" | head -n1
after=$("$WORK/heavy/bin/python" -c "import torch; print(torch.__version__)")
[ "$before" = "$after" ] || { echo "installing the wheel replaced torch $before by $after"; exit 1; }
step "light venv: $WHEEL"
python3 -m venv "$WORK/light"
"$WORK/light/bin/pip" install -q "$WHEEL"

mkdir "$WORK/run" && cd "$WORK/run"  # an empty folder: nothing of the checkout is reachable
H="$WORK/heavy/bin/tfsep-edge"
L="$WORK/light/bin/tfsep-edge"
step "synth, train (default options)"
"$H" synth data --clips-per-class 12
"$H" train data --epochs 2 --warmup-epochs 1 -o run 2>&1 | tee train.log
grep -q "66 impulse responses" train.log || { echo "training did not use the 66 packaged responses"; exit 1; }
step "quantize, export, budget"
"$H" quantize run/best.pt --calib data -o int8 --no-sensitivity
"$H" export run/best.pt --onnx fp32.onnx
"$H" export int8 --int8 --onnx int8.onnx | tee export.log
grep -q "MicIRP microphone recordings" export.log || { echo "export validated without the packaged audio"; exit 1; }
"$H" budget int8.onnx
"$H" export run/best.pt --tflite fp32.tflite
"$H" export int8 --int8 --tflite int8.tflite
"$H" budget int8.tflite
step "predict, bench (heavy)"
"$H" predict int8.onnx data/audio --csv heavy.tsv >/dev/null
"$H" predict int8.tflite data/audio --csv heavy_tflite.tsv >/dev/null
"$H" bench fp32.onnx int8.onnx fp32.tflite int8.tflite run/best.pt --seconds 1 --warmup 5

step "light venv: no torch, predict and bench"
if "$WORK/light/bin/python" -c "import torch" 2>/dev/null; then echo "torch imports in the light venv"; exit 1; fi
"$L" predict int8.onnx data/audio --csv light.tsv >/dev/null
cmp heavy.tsv light.tsv
"$L" bench fp32.onnx int8.onnx --seconds 1 --warmup 5
rc=0; "$L" predict int8.tflite data/audio >/dev/null 2>lite.err || rc=$?
[ "$rc" = 2 ] && grep -q "tfsep-edge\[tflite\]" lite.err || { echo "no one-line install hint (rc $rc):"; cat lite.err; exit 1; }
step "light venv + [tflite]: predict and bench the .tflite models, torch-free"
"$WORK/light/bin/pip" install -q "$WHEEL[tflite]"
if "$WORK/light/bin/python" -c "import torch" 2>/dev/null; then echo "[tflite] pulled torch in"; exit 1; fi
"$L" predict int8.tflite data/audio --csv light_tflite.tsv >/dev/null
cmp heavy_tflite.tsv light_tflite.tsv
"$L" bench fp32.tflite int8.tflite --seconds 1 --warmup 5
step "wheel pipeline passed"
