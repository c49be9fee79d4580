//===- ExpertParallelOptions.h - --ranks and friends ------------*- C++ -*-===//
//
// moe-compile and moe-run take the same expert-parallel flags (--ranks,
// --placement, --expert-profile, --replicas); this checks them and reads
// the profile into the options of moe-optimize, which inserts
// moe-shard-experts.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_TOOLS_EXPERTPARALLELOPTIONS_H
#define MOE_TOOLS_EXPERTPARALLELOPTIONS_H

#include "moe/Pipelines/Pipelines.h"

#include <string>

namespace mlir::moe {

/// Sets `options`' ranks, placement, replicas and loads (from `profile`, a
/// .npy of [E] or [layers, E] token counts; "" for none). False, with
/// `error`, for flags that do not go together or a profile that is not one.
bool setExpertParallelOptions(int64_t ranks, const std::string &placement, bool placementGiven,
                              const std::string &profile, int64_t replicas, MoeOptimizeOptions &options,
                              std::string &error);

} // namespace mlir::moe

#endif // MOE_TOOLS_EXPERTPARALLELOPTIONS_H
