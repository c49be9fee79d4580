//===- ArtifactWrapper.h - the C API of a moe-compile artifact --*- C++ -*-===//
//
// An artifact is a shared library with three C functions, declared in the
// header moe-compile writes next to it:
//
//   const char *moe_artifact_signature(void);
//   int moe_artifact_run(void *const *buffers, int64_t tokens);
//   const char *moe_artifact_error(void);
//
// The signature is text, one line per item:
//   target gpu sm_90            (or: target cpu)
//   entry mixtral_moe
//   input x bf16 ?x4096         (? is a dynamic dimension: `tokens` at run time)
//   output result0 bf16 ?x4096
// `buffers` holds the inputs then the outputs, C-contiguous: device pointers
// for a gpu artifact, host pointers for a cpu one.
//
//===----------------------------------------------------------------------===//

#ifndef TOOLS_MOE_COMPILE_ARTIFACTWRAPPER_H
#define TOOLS_MOE_COMPILE_ARTIFACTWRAPPER_H

#include <cstdint>
#include <string>
#include <vector>

namespace artifact {

struct BufferSpec {
  std::string name;
  std::string dtype;            // f32, bf16, ...
  std::vector<int64_t> shape;   // -1: dynamic (the token count)
};

struct ArtifactSpec {
  std::string entry;
  std::string target;           // "gpu sm_90" or "cpu"
  bool gpu = false;
  std::vector<BufferSpec> inputs, outputs;
};

/// The signature text described above.
std::string signatureText(const ArtifactSpec &spec);
/// C source of the three functions, calling `_mlir_ciface_<entry>`.
std::string wrapperSource(const ArtifactSpec &spec);
/// The header users include.
std::string headerSource(const ArtifactSpec &spec, const std::string &libraryName);

} // namespace artifact

#endif // TOOLS_MOE_COMPILE_ARTIFACTWRAPPER_H
