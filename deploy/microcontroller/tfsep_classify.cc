// A minimal TF-SepNet classifier on TensorFlow Lite Micro, around the pair that
// tfsep_edge.export.micro_source writes (tfsep_model.h / tfsep_model.cc, name prefix "tfsep").
// See README.md in this folder. The log-mel front end is the application's job: this file
// takes the finished log-mel patch.

#include <cmath>
#include <cstddef>
#include <cstdint>

#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"
#include "tensorflow/lite/schema/schema_generated.h"
#include "tfsep_model.h"

namespace {

// The tensor arena: the size the header asks for (measured on the x86-64 host plus a margin), or
// -DTFSEP_ARENA_BYTES=N: the figure measured for the core (a 32-bit core needs less bookkeeping;
// README.md, "Checking a build"). Put it in the fastest RAM the part has; the model array
// itself stays in flash.
#ifdef TFSEP_ARENA_BYTES
constexpr size_t kArenaBytes = TFSEP_ARENA_BYTES;
#else
constexpr size_t kArenaBytes = tfsep_arena_size;
#endif
alignas(16) uint8_t tensor_arena[kArenaBytes];

tflite::MicroInterpreter* Interpreter() {
  static tflite::MicroMutableOpResolver<tfsep_op_kinds> resolver;
  static const bool registered = tfsep_add_ops(resolver);
  static tflite::MicroInterpreter interpreter(tflite::GetModel(tfsep_model), resolver, tensor_arena,
                                              sizeof(tensor_arena));
  static const bool allocated = registered &&
                                tflite::GetModel(tfsep_model)->version() == TFLITE_SCHEMA_VERSION &&
                                interpreter.AllocateTensors() == kTfLiteOk;
  return allocated ? &interpreter : nullptr;
}

}  // namespace

// Classifies one log-mel patch: `logmel` holds tfsep_n_mels x tfsep_n_frames floats, row-major
// (logmel[mel * tfsep_n_frames + frame]), computed as the header's front-end comment says.
// Writes tfsep_num_labels logits to `logits` (if not null) and returns the index of the scene
// in tfsep_labels, or -1 if the interpreter could not be set up or failed.
int tfsep_classify(const float* logmel, float* logits) {
  tflite::MicroInterpreter* interpreter = Interpreter();
  if (interpreter == nullptr) return -1;
  TfLiteTensor* input = interpreter->input(0);
  for (int i = 0; i < tfsep_input_elements; ++i) {
    if (tfsep_input_is_int8) {
      // half away from zero, as TFLite Micro's QUANTIZE (and tfsep-edge's runtime) rounds: the
      // integers the float-input file would make there, so both files give the same logits
      const float q = std::round(logmel[i] / tfsep_input_scale) + tfsep_input_zero_point;
      input->data.int8[i] = static_cast<int8_t>(q < -128.0f ? -128.0f : (q > 127.0f ? 127.0f : q));
    } else {
      input->data.f[i] = logmel[i];
    }
  }
  if (interpreter->Invoke() != kTfLiteOk) return -1;
  const TfLiteTensor* output = interpreter->output(0);
  int best = 0;
  float best_value = 0.0f;
  for (int k = 0; k < tfsep_num_labels; ++k) {
    const float value = tfsep_output_is_int8
                            ? (output->data.int8[k] - tfsep_output_zero_point) * tfsep_output_scale
                            : output->data.f[k];
    if (logits != nullptr) logits[k] = value;
    if (k == 0 || value > best_value) {
      best = k;
      best_value = value;
    }
  }
  return best;
}

// The RAM the interpreter really used, for shrinking tfsep_arena_size on the device
// (after the first tfsep_classify); 0 before.
size_t tfsep_arena_used() {
  tflite::MicroInterpreter* interpreter = Interpreter();
  return interpreter == nullptr ? 0 : interpreter->arena_used_bytes();
}
