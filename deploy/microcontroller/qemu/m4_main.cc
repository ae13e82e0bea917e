// Cortex-M4 check of a `tfsep-edge export ... --micro DIR` pair under QEMU (mps2-an386, with
// semihosting for files and output): see README.md in this folder. Reads float32 log-mel patches
// (tfsep_n_mels x tfsep_n_frames each, row-major) from the host file named by the first argument,
// classifies each with tfsep_classify() and prints its logits; then prints the arena the
// interpreter used and the smallest arena with which it builds and runs (a binary search over
// interpreters placed in one large buffer, in 16-byte steps).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>

#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_log.h"
#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"
#include "tfsep_model.h"

int tfsep_classify(const float* logmel, float* logits);
size_t tfsep_arena_used();

namespace {

constexpr size_t kSearchArena = 1536 * 1024;
alignas(16) uint8_t search_arena[kSearchArena];
alignas(tflite::MicroInterpreter) uint8_t interpreter_space[sizeof(tflite::MicroInterpreter)];
float logmel[tfsep_n_mels * tfsep_n_frames];

// Whether the model builds and runs one zero input with an arena of `size` bytes.
bool Fits(size_t size) {
  static tflite::MicroMutableOpResolver<tfsep_op_kinds> resolver;
  static const bool registered = tfsep_add_ops(resolver);
  if (!registered) return false;
  auto* interpreter = new (interpreter_space)
      tflite::MicroInterpreter(tflite::GetModel(tfsep_model), resolver, search_arena, size);
  bool ok = interpreter->AllocateTensors() == kTfLiteOk;
  if (ok) {
    TfLiteTensor* input = interpreter->input(0);
    std::memset(input->data.raw, 0, input->bytes);
    ok = interpreter->Invoke() == kTfLiteOk;
  }
  interpreter->~MicroInterpreter();
  return ok;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::printf("usage: m4_main LOGMELS.f32\n");
    return 2;
  }
  std::FILE* f = std::fopen(argv[1], "rb");
  if (f == nullptr) {
    std::printf("cannot open %s\n", argv[1]);
    return 2;
  }
  const size_t n = static_cast<size_t>(tfsep_n_mels) * tfsep_n_frames;
  float logits[tfsep_num_labels];
  int patches = 0;
  while (std::fread(logmel, sizeof(float), n, f) == n) {
    const int k = tfsep_classify(logmel, logits);
    if (k < 0) {
      std::printf("tfsep_classify failed\n");
      return 1;
    }
    std::printf("logits");
    for (int i = 0; i < tfsep_num_labels; ++i) std::printf(" %.9g", logits[i]);
    std::printf("\n");
    ++patches;
  }
  std::fclose(f);
  std::printf("patches %d\narena_used %u\n", patches, static_cast<unsigned>(tfsep_arena_used()));
  size_t lo = 0, hi = kSearchArena;  // Fits(hi); !Fits(lo)
  if (!Fits(hi)) {
    std::printf("smallest_arena none (over %u bytes)\n", static_cast<unsigned>(hi));
    return 1;
  }
  while (hi - lo > 16) {
    const size_t mid = (lo + (hi - lo) / 2) & ~static_cast<size_t>(15);
    if (mid <= lo) break;
    (Fits(mid) ? hi : lo) = mid;
  }
  std::printf("smallest_arena %u\n", static_cast<unsigned>(hi));
  return 0;
}
