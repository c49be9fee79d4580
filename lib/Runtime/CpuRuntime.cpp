//===- CpuRuntime.cpp - what MLIR-lowered CPU code calls ------------------===//
//
// The CPU pipeline lowers copies between strided buffers to a call of
// memrefCopy(elementSize, source, target) on unranked descriptors; MLIR's
// libmlir_c_runner_utils provides it for the JIT, this library for artifacts.
// An artifact's entry also reports here a result whose dynamic size differs
// from the buffer its caller sized (moe-results-to-out-params), and the
// expert-parallel runtime the errors of its exchanges (moeRuntimeSetCallError);
// imported programs check here what only the run-time sizes decide (an ONNX
// TopK's K against its axis).
//
//===----------------------------------------------------------------------===//

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace {
/// A ranked memref descriptor: {allocated, aligned, offset, sizes[rank], strides[rank]}.
struct Ranked {
  char *allocated;
  char *aligned;
  int64_t offset;
  int64_t sizesAndStrides[];
};
struct Unranked {
  int64_t rank;
  Ranked *descriptor;
};
} // namespace

extern "C" void memrefCopy(int64_t elementSize, Unranked *source, Unranked *target) {
  int64_t rank = source->rank;
  const Ranked *src = source->descriptor, *dst = target->descriptor;
  const int64_t *sizes = src->sizesAndStrides, *srcStrides = src->sizesAndStrides + rank;
  const int64_t *dstStrides = dst->sizesAndStrides + rank;
  for (int64_t d = 0; d < rank; ++d)
    if (sizes[d] == 0)
      return;
  // Walk every index in C order with an odometer.
  std::vector<int64_t> index(rank, 0);
  int64_t srcOffset = src->offset, dstOffset = dst->offset;
  while (true) {
    std::memcpy(dst->aligned + dstOffset * elementSize, src->aligned + srcOffset * elementSize,
                elementSize);
    int64_t d = rank - 1;
    for (; d >= 0; --d) {
      ++index[d];
      srcOffset += srcStrides[d];
      dstOffset += dstStrides[d];
      if (index[d] < sizes[d])
        break;
      srcOffset -= srcStrides[d] * sizes[d];
      dstOffset -= dstStrides[d] * sizes[d];
      index[d] = 0;
    }
    if (d < 0)
      return;
  }
}

namespace {
/// The first result size mismatch of the current call on this thread.
thread_local std::string callError;
thread_local std::string takenError;
} // namespace

extern "C" void moeRuntimeCheckOutputDim(int64_t output, int64_t dim, int64_t got, int64_t want) {
  if (got == want || !callError.empty())
    return;
  callError = "moe_artifact_run: output " + std::to_string(output) + " has " + std::to_string(got) +
              " elements in its dynamic dimension " + std::to_string(dim) + ", but the buffer for it has " +
              std::to_string(want) +
              " (every dynamic dimension of an artifact is its one token count; this program's result "
              "has another size there, such as batch x sequence rows); its results are incomplete";
}

extern "C" void moeRuntimeCheckTopK(int64_t k, int64_t length) {
  if (k <= length || !callError.empty())
    return;
  callError = "TopK: K = " + std::to_string(k) + " exceeds the " + std::to_string(length) +
              " elements of its axis in this call (ONNX requires K <= that size); the results are not defined";
}
// The name the program calls after llvm-request-c-wrappers (scalars only:
// the same signature).
extern "C" void _mlir_ciface_moeRuntimeCheckTopK(int64_t k, int64_t length) { moeRuntimeCheckTopK(k, length); }

extern "C" void moeRuntimeCheckSharedExpertView(int64_t dim, int64_t got, int64_t want) {
  if (got == want || !callError.empty())
    return;
  callError = "MoE block: the routed output is viewed with " + std::to_string(got) + " elements in dimension " +
              std::to_string(dim) + " before the shared expert's output, with " + std::to_string(want) +
              ", is added; the imported layer adds the shared expert to the same tokens' rows, so its results "
              "are not the model's";
}
extern "C" void _mlir_ciface_moeRuntimeCheckSharedExpertView(int64_t dim, int64_t got, int64_t want) {
  moeRuntimeCheckSharedExpertView(dim, got, want);
}

extern "C" void moeRuntimeCheckBroadcast(int64_t dim, int64_t got, int64_t want) {
  if (got == want || got == 1 || !callError.empty())
    return;
  callError = "broadcast: dimension " + std::to_string(dim) + " of an operand has " + std::to_string(got) +
              " elements in this call, where the other operands give " + std::to_string(want) +
              " (numpy broadcasting requires equal sizes or 1); the results are not defined";
}
extern "C" void _mlir_ciface_moeRuntimeCheckBroadcast(int64_t dim, int64_t got, int64_t want) {
  moeRuntimeCheckBroadcast(dim, got, want);
}

extern "C" void moeRuntimeCheckContraction(int64_t dim, int64_t got, int64_t want) {
  if (got == want || !callError.empty())
    return;
  callError = "MatMul: the contracted dimension has " + std::to_string(want) + " elements in A and " +
              std::to_string(got) + " in B (dimension " + std::to_string(dim) +
              ") in this call (they must be equal); the results are not defined";
}
extern "C" void _mlir_ciface_moeRuntimeCheckContraction(int64_t dim, int64_t got, int64_t want) {
  moeRuntimeCheckContraction(dim, got, want);
}

// The rules of moe::onnx_import::OperandSizeRule, in its order.
extern "C" void moeRuntimeCheckOperandSize(int64_t rule, int64_t dim, int64_t got, int64_t want) {
  bool atMost = rule >= 2;
  if ((atMost ? got <= want : got == want) || !callError.empty())
    return;
  static const char *const ops[] = {"ScatterND", "ScatterElements", "GatherElements", "ScatterElements"};
  std::string op = rule >= 0 && rule < 4 ? ops[rule] : "scatter/gather";
  std::string sizes = " dimension " + std::to_string(dim) + " has " + std::to_string(got) + " elements in this call";
  switch (rule) {
  case 0:
    callError = op + ": updates" + sizes + ", but the indices and data give " + std::to_string(want) +
                " (ONNX requires updates = indices.shape[:-1] + data.shape[q:])";
    break;
  case 1:
    callError = op + ": updates" + sizes + ", but the indices have " + std::to_string(want) +
                " (ONNX requires the indices' shape)";
    break;
  default:
    callError = op + ": indices" + sizes + ", more than the data's " + std::to_string(want) +
                " (off the axis, indices may not exceed the data)";
  }
  callError += "; the results are not defined";
}
extern "C" void _mlir_ciface_moeRuntimeCheckOperandSize(int64_t rule, int64_t dim, int64_t got, int64_t want) {
  moeRuntimeCheckOperandSize(rule, dim, got, want);
}

extern "C" void moeRuntimeSetCallError(const char *message) {
  if (callError.empty())
    callError = message;
}

extern "C" const char *moeRuntimeTakeCallError(void) {
  if (callError.empty())
    return nullptr;
  takenError = std::move(callError);
  callError.clear();
  return takenError.c_str();
}
