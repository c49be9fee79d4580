//===- ExpertParallelOptions.h - --ranks and friends ------------*- C++ -*-===//
//
// moe-compile and moe-run take the same expert-parallel flags (--ranks,
// --placement, --expert-profile, --replicas): declared once here, checked,
// and turned (the profile read) into the options of moe-optimize, which
// inserts moe-shard-experts.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_TOOLS_EXPERTPARALLELOPTIONS_H
#define MOE_TOOLS_EXPERTPARALLELOPTIONS_H

#include "moe/Pipelines/Pipelines.h"
#include "llvm/Support/CommandLine.h"

#include <string>

namespace mlir::moe {

/// The flags, registered in a tool's option category.
struct ExpertParallelFlags {
  explicit ExpertParallelFlags(llvm::cl::OptionCategory &category);

  /// Sets `options`' ranks, placement, replicas and loads (from the
  /// profile, a .npy of [E] or [layers, E] token counts). False, with
  /// `error`, for flags that do not go together or a profile that is not one.
  bool apply(MoeOptimizeOptions &options, std::string &error) const;

  llvm::cl::opt<int64_t> ranks;
  llvm::cl::opt<std::string> placement;
  llvm::cl::opt<std::string> expertProfile;
  llvm::cl::opt<int64_t> replicas;
};

} // namespace mlir::moe

#endif // MOE_TOOLS_EXPERTPARALLELOPTIONS_H
