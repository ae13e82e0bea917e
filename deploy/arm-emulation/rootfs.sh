#!/usr/bin/env bash
# Build (once) an aarch64 Debian 12 root with python3.11 and the light runtime's aarch64 wheels,
# entirely on the x86 host: debootstrap --foreign only downloads and unpacks (no emulation), and
# the host's pip installs aarch64 wheels. Cached under $ARM_CACHE (default .cache/arm64, gitignored).
# Needs root (debootstrap) and apt access; see ../../../shared notes "aarch64-emulation" for why.
set -euo pipefail
cd "$(dirname "$0")/../.."
CACHE=${ARM_CACHE:-.cache/arm64}
ROOT="$CACHE/rootfs"
WHEELS="$CACHE/wheels"
SITE="$ROOT/opt/site"
PIP=${PIP:-.venv/bin/pip}
PKGS="onnxruntime numpy soundfile soxr typer tqdm ai-edge-litert==2.3.0"
# manylinux_2_27: ai-edge-litert's aarch64 wheel carries that tag alone
PLAT=(--only-binary=:all: --platform manylinux_2_28_aarch64 --platform manylinux_2_27_aarch64
      --platform manylinux2014_aarch64 --platform manylinux_2_17_aarch64 --python-version 3.11
      --implementation cp --abi cp311)

need() { command -v "$1" >/dev/null 2>&1; }
if ! need qemu-aarch64-static || ! need debootstrap; then
    [ "$(id -u)" = 0 ] || { echo "error: install qemu-user-static and debootstrap (needs root)" >&2; exit 2; }
    echo "installing qemu-user-static debootstrap" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq qemu-user-static debootstrap >/dev/null \
        || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq qemu-user-static debootstrap >/dev/null; }
fi

if [ ! -f "$ROOT/.tfsep-rootfs-done" ]; then
    [ "$(id -u)" = 0 ] || { echo "error: debootstrap needs root to build $ROOT" >&2; exit 2; }
    # The Debian mirror this host already uses (deb822 or one-line sources).
    MIRROR=$( (sed -nE 's/^URIs:[[:space:]]*([^[:space:]]+).*/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null;
        sed -nE 's/^deb[[:space:]]+(\[[^]]*\][[:space:]]+)?([^[:space:]]+).*/\2/p' /etc/apt/sources.list 2>/dev/null) \
        | grep -v security | head -n1 || true)
    MIRROR=${ARM_MIRROR:-${MIRROR:-http://deb.debian.org/debian}}
    echo "debootstrap arm64 bookworm from $MIRROR into $ROOT" >&2
    rm -rf "$ROOT"
    mkdir -p "$ROOT"
    debootstrap --arch=arm64 --foreign --variant=minbase --include=python3.11 bookworm "$ROOT" "$MIRROR" >&2
    for d in "$ROOT"/var/cache/apt/archives/*.deb; do dpkg -x "$d" "$ROOT"; done
    rm -f "$ROOT"/var/cache/apt/archives/*.deb
    # onnxruntime's CPU probe segfaults reading the x86 host's /sys through `qemu -L`: give it empty files.
    mkdir -p "$ROOT/sys/devices/system/cpu"
    : >"$ROOT/sys/devices/system/cpu/possible"
    : >"$ROOT/sys/devices/system/cpu/present"
    touch "$ROOT/.tfsep-rootfs-done"
fi

STAMP="$SITE/.tfsep-wheels-$(echo "$PKGS" | tr ' ' '-')"
if [ ! -f "$STAMP" ]; then
    echo "installing aarch64 wheels: $PKGS" >&2
    mkdir -p "$WHEELS"
    rm -rf "$SITE"
    "$PIP" download -q "${PLAT[@]}" -d "$WHEELS" $PKGS
    "$PIP" install -q --no-index --find-links "$WHEELS" "${PLAT[@]}" --target "$SITE" $PKGS
    touch "$STAMP"
fi
# OpenVINO (make test-arm's OpenVINO stage only): a site of its own, kept off the light runtime's path.
OV_SITE="$ROOT/opt/site-ov"
OV_STAMP="$OV_SITE/.tfsep-openvino-$(sed -n 's/^openvino==//p' constraints.txt)"
if [ ! -f "$OV_STAMP" ]; then
    echo "installing the aarch64 openvino wheel" >&2
    rm -rf "$OV_SITE"
    # manylinux_2_35: the tag of openvino's aarch64 wheel (Debian 12 has glibc 2.36)
    OV_PLAT=("${PLAT[@]}" --platform manylinux_2_35_aarch64)
    "$PIP" download -q "${OV_PLAT[@]}" -c constraints.txt -d "$WHEELS" openvino numpy
    "$PIP" install -q --no-index --find-links "$WHEELS" "${OV_PLAT[@]}" -c constraints.txt --target "$OV_SITE" openvino numpy
    touch "$OV_STAMP"
fi
echo "$ROOT"
