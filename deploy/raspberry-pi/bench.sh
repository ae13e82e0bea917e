#!/usr/bin/env bash
# The recommended Raspberry Pi benchmark: performance governor, throttling and temperature checks,
# 1 thread and all cores, model only and wav -> label. Writes one JSON per setting into OUT.
#   bash bench.sh OUT_DIR MODEL.onnx [MODEL2.onnx ...]
# Needs sudo only to set the CPU governor (skipped with a note if that is not possible).
set -euo pipefail
OUT=${1:?usage: bash bench.sh OUT_DIR MODEL.onnx [MODEL.onnx ...]}
shift
[ $# -ge 1 ] || { echo "error: give at least one ONNX model" >&2; exit 2; }
command -v tfsep-edge >/dev/null || { echo "error: tfsep-edge not found; source the venv first" >&2; exit 2; }
mkdir -p "$OUT"
SECONDS_EACH=${SECONDS_EACH:-20}
CORES=$(nproc)
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
if [ -r /proc/device-tree/model ]; then BOARD=$(tr -d '\0' </proc/device-tree/model | tr -c 'A-Za-z0-9.\n' '-'); else BOARD=$(hostname); fi
THREADS_LIST="1"
[ "$CORES" -gt 1 ] && THREADS_LIST="1 $CORES"

status() {  # throttling flags and temperature, where the firmware tool exists
    if command -v vcgencmd >/dev/null; then
        echo "$1: $(vcgencmd measure_temp) $(vcgencmd get_throttled)"
    elif [ -r /sys/class/thermal/thermal_zone0/temp ]; then
        echo "$1: temp=$(( $(cat /sys/class/thermal/thermal_zone0/temp) / 1000 ))C (no vcgencmd: throttling unknown)"
    fi
}

GOV=/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor
OLD_GOV=$(cat "$GOV" 2>/dev/null || echo "")
if [ -n "$OLD_GOV" ] && [ "$OLD_GOV" != performance ]; then
    if echo performance | sudo tee /sys/devices/system/cpu/cpu*/cpufreq/scaling_governor >/dev/null 2>&1; then
        trap 'echo "$OLD_GOV" | sudo tee /sys/devices/system/cpu/cpu*/cpufreq/scaling_governor >/dev/null' EXIT
        echo "CPU governor: performance (was $OLD_GOV; restored at the end)"
    else
        echo "note: could not set the performance governor (no sudo?); results may include frequency ramp-up"
    fi
fi

status "before"
THROTTLED_BEFORE=$(vcgencmd get_throttled 2>/dev/null || true)
case "$THROTTLED_BEFORE" in
    *=0x0|"") ;;
    *) echo "warning: the board reports throttling or under-voltage ($THROTTLED_BEFORE): use the official power supply and a cooler" ;;
esac
sleep 5  # let the clock settle after the governor change

for threads in $THREADS_LIST; do
    for mode in --model-only --include-frontend; do
        name="$OUT/${BOARD}_${STAMP}_t${threads}${mode/--/_}.json"
        tfsep-edge bench "$@" --threads "$threads" "$mode" --seconds "$SECONDS_EACH" --json "$name"
        status "after t=$threads $mode"
    done
done
echo "results in $OUT: send the *.json files back (see README)"
