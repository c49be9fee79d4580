//===- ArtifactWrapper.h - the C API of a moe-compile artifact --*- C++ -*-===//
//
// An artifact is a shared library with three C functions (four for a GPU
// one), declared in the header moe-compile writes next to it:
//
//   const char *moe_artifact_signature(void);
//   int moe_artifact_run(void *const *buffers, int64_t tokens);
//   int moe_artifact_run_on_stream(void *const *buffers, int64_t tokens,
//                                  void *stream);          (gpu artifacts)
//   const char *moe_artifact_error(void);
//
// The signature is text, one line per item:
//   target gpu sm_90            (or: target cpu)
//   entry mixtral_moe
//   input x bf16 ?x4096         (? is a dynamic dimension: `tokens` at run time)
//   output result0 bf16 ?x4096
// `buffers` holds the inputs then the outputs, C-contiguous: device pointers
// for a gpu artifact, host pointers for a cpu one. The signature text is
// written and read by moe/Support/ArtifactSignature.h.
//
//===----------------------------------------------------------------------===//

#ifndef TOOLS_MOE_COMPILE_ARTIFACTWRAPPER_H
#define TOOLS_MOE_COMPILE_ARTIFACTWRAPPER_H

#include "moe/Support/ArtifactSignature.h"

#include <string>
#include <vector>

namespace artifact {

/// C source of the three functions, calling `_mlir_ciface_<entry>`.
/// moe_artifact_run returns 2 for a call it refuses (null buffers, a token
/// count below 0 or one that makes a buffer's size overflow) and 1 when the
/// GPU runtime failed; moe_artifact_error() says why. It also returns 2 on
/// an x86 CPU that lacks one of `cpuFeatures` (those the code was compiled
/// for), rather than dying of an illegal instruction.
std::string wrapperSource(const Signature &signature, const std::vector<std::string> &cpuFeatures = {});
/// The header users include.
std::string headerSource(const Signature &signature, const std::string &libraryName);

} // namespace artifact

#endif // TOOLS_MOE_COMPILE_ARTIFACTWRAPPER_H
