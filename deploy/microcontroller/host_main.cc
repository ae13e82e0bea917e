// Host harness for tfsep_classify.cc: reads one log-mel patch (tfsep_n_mels x tfsep_n_frames
// little-endian float32, row-major) on stdin, prints the logits, then the scene's index, its
// label and MicroInterpreter::arena_used_bytes(). For checking a TFLM build on a PC against
// tfsep_edge.runtime.micro (see README.md, "Checking a build").
#include <cstddef>
#include <cstdio>

#include "tfsep_model.h"

int tfsep_classify(const float* logmel, float* logits);
size_t tfsep_arena_used();

int main() {
  static float logmel[tfsep_n_mels * tfsep_n_frames];
  const size_t n = static_cast<size_t>(tfsep_n_mels) * tfsep_n_frames;
  if (std::fread(logmel, sizeof(float), n, stdin) != n) return 2;
  float logits[tfsep_num_labels];
  const int k = tfsep_classify(logmel, logits);
  for (int i = 0; i < tfsep_num_labels; ++i) std::printf("%.9g ", logits[i]);
  std::printf("\n%d %s %zu\n", k, k >= 0 ? tfsep_labels[k] : "-", tfsep_arena_used());
  return k < 0 ? 1 : 0;
}
