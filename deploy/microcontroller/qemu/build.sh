#!/bin/bash
# Build m4_main.elf for a Cortex-M4F (QEMU mps2-an386) from a --micro pair and a TFLM checkout.
#   build.sh TFLM_ROOT PAIR_DIR OUT_DIR [LIB_DIR]
# PAIR_FLAGS: extra flags for the pair and tfsep_classify.cc (e.g. -DTFSEP_ARENA_BYTES=79472).
# TFLM_ROOT: a tensorflow/tflite-micro checkout whose tools/make/downloads holds flatbuffers (with
# TFLM's flatbuffers.patch), gemmlowp and ruy (its Makefile downloads them; see ../README.md).
# TFLM's library (reference kernels, -O2) is compiled into LIB_DIR (default OUT_DIR/lib) and reused
# while its stamp (TFLM commit, compiler, flags) is unchanged.
set -euo pipefail
TFLM=$(cd "$1" && pwd); PAIR=$(cd "$2" && pwd); mkdir -p "$3"; OUT=$(cd "$3" && pwd)
HERE=$(cd "$(dirname "$0")" && pwd); LIBDIR=${4:-$OUT/lib}
DL=$TFLM/tensorflow/lite/micro/tools/make/downloads
CPU=(-mcpu=cortex-m4 -mthumb -mfloat-abi=hard -mfpu=fpv4-sp-d16)
CXXFLAGS=(-std=c++17 "${CPU[@]}" -O2 -ffunction-sections -fdata-sections -fno-exceptions -fno-rtti
  -fno-threadsafe-statics -fno-unwind-tables -funsigned-char -DTF_LITE_STATIC_MEMORY
  -DTF_LITE_MCU_DEBUG_LOG -DNDEBUG "-I$TFLM" "-I$DL/flatbuffers/include" "-I$DL/gemmlowp" "-I$DL/ruy")
LIB=$LIBDIR/libtflm.a
STAMP="$(git -C "$TFLM" rev-parse HEAD 2>/dev/null || echo "$TFLM") $(arm-none-eabi-g++ --version | head -n1) ${CXXFLAGS[*]}"
if [ ! -f "$LIB" ] || [ "$(cat "$LIBDIR/stamp" 2>/dev/null)" != "$STAMP" ]; then
  mkdir -p "$LIBDIR"
  BUILD=$(mktemp -d "$LIBDIR/build.XXXXXX")
  # TFLM's portable library: the micro framework and its reference kernels, no tests or ports.
  (cd "$TFLM" && { find tensorflow/lite/micro -name '*.cc' | grep -v -E \
    '_test\.cc|/(examples|tools|python|integration_tests|benchmarks|testing|docs|compression|models)/|/kernels/[a-z_]+/|test_helper|mock_micro_graph|fake_micro_context|^tensorflow/lite/micro/[a-z0-9_]+/(debug_log|micro_time|system_setup)\.cc';
    find tensorflow/lite/core tensorflow/lite/kernels tensorflow/lite/schema tensorflow/compiler -name '*.cc' | grep -v _test; }) \
    | sort > "$BUILD/sources.txt"
  export TFLM BUILD
  xargs -P "$(nproc)" -I{} sh -c 'arm-none-eabi-g++ "$@" -c "$TFLM/$0" -o "$BUILD/$(echo "$0" | tr / _).o"' {} \
    "${CXXFLAGS[@]}" < "$BUILD/sources.txt"
  arm-none-eabi-ar rcs "$BUILD/libtflm.a" "$BUILD"/*.o
  mv -f "$BUILD/libtflm.a" "$LIB"; echo "$STAMP" > "$LIBDIR/stamp"; rm -rf "$BUILD"
fi
# shellcheck disable=SC2086  # PAIR_FLAGS: zero or more flags
arm-none-eabi-g++ "${CXXFLAGS[@]}" ${PAIR_FLAGS:-} -I"$PAIR" -c "$PAIR/tfsep_model.cc" -o "$OUT/tfsep_model.o"
# shellcheck disable=SC2086
arm-none-eabi-g++ "${CXXFLAGS[@]}" ${PAIR_FLAGS:-} -I"$PAIR" -c "$HERE/../tfsep_classify.cc" -o "$OUT/tfsep_classify.o"
arm-none-eabi-g++ "${CXXFLAGS[@]}" -I"$PAIR" -c "$HERE/m4_main.cc" -o "$OUT/m4_main.o"
arm-none-eabi-gcc "${CPU[@]}" -O2 -c "$HERE/startup.c" -o "$OUT/startup.o"
arm-none-eabi-g++ "${CPU[@]}" --specs=rdimon.specs -T "$HERE/mps2.ld" -Wl,--gc-sections -o "$OUT/m4_main.elf" \
  "$OUT/startup.o" "$OUT/m4_main.o" "$OUT/tfsep_classify.o" "$OUT/tfsep_model.o" "$LIB" -lm
arm-none-eabi-size "$OUT/m4_main.elf"
