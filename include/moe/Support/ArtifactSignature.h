//===- ArtifactSignature.h - what a moe-compile artifact takes ---*- C++ -*-===//
//
// An artifact describes its buffers as text (moe_artifact_signature()):
//
//   target cpu
//   entry moe_layer
//   input x f32 ?x1024
//   output y f32 ?x1024
//
// Hosts (moe-exec) read it here and bind their data to it: every dynamic (?)
// dimension is one `tokens` size, inputs must match in type and shape, and
// every buffer's byte size must fit before anything is allocated. Standard
// C++ only: moe-exec runs where no LLVM is installed.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_SUPPORT_ARTIFACTSIGNATURE_H
#define MOE_SUPPORT_ARTIFACTSIGNATURE_H

#include "moe/Support/Npy.h"

#include <cstdint>
#include <string>
#include <vector>

namespace artifact {

struct BufferSignature {
  std::string name;
  npy::DType type = npy::DType::f32;
  std::vector<int64_t> shape; // -1: dynamic
};

struct Signature {
  bool gpu = false;
  std::string target, entry;
  std::vector<BufferSignature> inputs, outputs;

  bool hasDynamicDims() const;
};

/// Largest number of buffers and rank a signature may declare: a corrupted
/// artifact is an error, not an allocation its text asks for.
constexpr size_t kMaxBuffers = 4096;
constexpr size_t kMaxRank = 16;

/// The signature as text (what moe_artifact_signature() returns).
std::string signatureText(const Signature &signature);

/// Parses the signature text; false with `error` set when a line is
/// malformed or the target or entry is missing.
bool parseSignature(const std::string &text, Signature &signature, std::string &error);

/// The size of the dynamic dimensions: `tokens` when given (>= 0), else the
/// first dynamic dimension of the input arrays (when given). -1 when the
/// signature has no dynamic dimension and none was given.
int64_t tokenCount(const Signature &signature, const std::vector<npy::Array> &inputs, int64_t tokens);

/// `shape` with its dynamic dimensions set to `tokens`.
std::vector<int64_t> concreteShape(const std::vector<int64_t> &shape, int64_t tokens);

/// Checks that `inputs` (named by `names` in errors; none: random inputs
/// will be made) match the signature's inputs in count, type and shape for
/// `tokens`, and that every buffer, outputs included, has a byte size that
/// fits in int64. False with `error` set otherwise.
bool checkBuffers(const Signature &signature, const std::vector<npy::Array> &inputs,
                  const std::vector<std::string> &names, int64_t tokens, std::string &error);

} // namespace artifact

#endif // MOE_SUPPORT_ARTIFACTSIGNATURE_H
