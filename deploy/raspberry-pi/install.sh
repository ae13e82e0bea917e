#!/usr/bin/env bash
# Install the light tfsep-edge runtime (numpy, onnxruntime, soundfile, soxr, typer, tqdm; no torch)
# plus LiteRT for .tflite models (the [tflite] extra: ai-edge-litert, its XNNPACK CPU kernels;
# LITERT=0 leaves it out) into a virtual environment. Run on the Pi (64-bit Raspberry Pi OS, Python 3.11):
#   bash install.sh SOURCE [VENV]
# SOURCE: a tfsep-edge wheel (tfsep_edge-*.whl) or a checkout of the repository.
# VENV:   where the environment goes (default ~/tfsep-edge-venv).
set -euo pipefail
SOURCE=${1:?usage: bash install.sh WHEEL_OR_REPO [VENV]}
VENV=${2:-$HOME/tfsep-edge-venv}

[ -e "$SOURCE" ] || { echo "error: $SOURCE: no such wheel or folder" >&2; exit 2; }
ARCH=$(uname -m)
if [ "$ARCH" != "aarch64" ] && [ "$ARCH" != "x86_64" ]; then
    echo "error: $ARCH: onnxruntime has no wheels for a 32-bit OS; install the 64-bit Raspberry Pi OS" >&2
    exit 2
fi
python3 -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
    || { echo "error: $(python3 --version): Python 3.10 or newer is needed" >&2; exit 2; }
if ! python3 -m venv --help >/dev/null 2>&1; then
    echo "python3-venv is missing; installing it (sudo apt install python3-venv)" >&2
    sudo apt-get install -y python3-venv
fi

python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
# The base install (+ [tflite] unless LITERT=0): never the torch extra (the Pi does not need it).
if [ "${LITERT:-1}" = 0 ]; then
    "$VENV/bin/python" -m pip install -q "$SOURCE"
else
    "$VENV/bin/python" -m pip install -q "$SOURCE[tflite]"
fi

# Prove the install is the light one and works.
"$VENV/bin/python" - <<'PY'
import importlib.util, sys
assert importlib.util.find_spec("torch") is None, "torch is installed in this venv; it is not needed"
import onnxruntime, numpy
from tfsep_edge.machine import machine_info, package_version
m = machine_info(1)
litert = package_version("ai-edge-litert")
print(f"tfsep-edge ready: {m['cpu_model']} ({m['arch']}), ISA {','.join(m['isa'])}, "
      f"onnxruntime {onnxruntime.__version__}, LiteRT {litert or 'not installed'}, numpy {numpy.__version__}, "
      f"Python {sys.version.split()[0]}")
PY
echo "activate with: source $VENV/bin/activate   (then: tfsep-edge --help)"
