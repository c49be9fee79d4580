//===- RaisingCheck.h - raised MoE layers checked against their own ops -*- C++ -*-===//
//
// --verify-raising: a front end that keeps the ops each recognised layer
// replaces (moe.raising_check) has both evaluated on random inputs by the
// project's CPU path; the layer stays only where they agree.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_TOOLS_RAISINGCHECK_H
#define MOE_TOOLS_RAISINGCHECK_H

#include "mlir/IR/BuiltinOps.h"
#include "llvm/Support/CommandLine.h"

#include <string>

namespace mlir::moe {

/// What checkRaisedLayers did.
struct RaisingCheckSummary {
  /// Layers that agreed with their ops (kept), that differed (their ops
  /// kept instead), and that could not be compared (layer kept, remark).
  unsigned kept = 0, refused = 0, unchecked = 0;
  double milliseconds = 0;
};

/// Resolves every moe.raising_check in `module`. For each, the ops that
/// only the layer or only the original ops need (their slices within the
/// op's block) are copied into a function of the values both read: float
/// tensors are filled with seeded random values (dynamic sizes 24), large
/// float constants too (scaled by 1/sqrt of their larger last-two size, as
/// trained weights are), small constants copied. It is lowered with
/// moe-cpu-pipeline, JIT-compiled and run on two draws. A row (the last
/// dimension) differs when its relative error exceeds 1e-3 (4e-2 for 16-bit
/// floats); the layer is refused (a remark at the layer; the original ops
/// replace it) when, in both draws, more than 1 row in 64 (1 in 8 for
/// 16-bit floats, whose rounded router scores tie more often) differs:
/// fewer is routing near a tie, where the two may pick different experts.
/// With `strict` a refused layer is an error rather than a remark.
RaisingCheckSummary checkRaisedLayers(ModuleOp module, bool strict = false);

/// Whether MOE_VERIFY_RAISING is set to a non-empty value other than 0: the
/// test suite turns the check on for every tool this way.
bool verifyRaisingByDefault();
/// Whether MOE_VERIFY_RAISING is "strict": a refused layer is an error (the
/// test suite's setting, so that a wrong matcher fails the test).
bool verifyRaisingStrictly();

/// What the tools ask of MoE layer recognition.
struct RaisingOptions {
  /// Check every recognised layer against the ops it was recognised in
  /// (--verify-raising; checkRaisedLayers); on when MOE_VERIFY_RAISING is set.
  bool verify = false;
  /// Tests only: every layer raised with its renormalisation flipped, for
  /// the check to refuse.
  bool wrongForTesting = false;
  /// A refused layer is an error and the model does not load
  /// (MOE_VERIFY_RAISING=strict, the test suite's setting).
  bool strict = verifyRaisingStrictly();
  /// Filled in when `verify` is on: what the check did.
  RaisingCheckSummary *summary = nullptr;
};

/// moe-run's and moe-compile's --verify-raising (default from
/// MOE_VERIFY_RAISING) and the hidden --wrong-raising-for-testing.
struct RaisingFlags {
  explicit RaisingFlags(llvm::cl::OptionCategory &category);
  /// "raising check: N kept, N refused, N not checked (T ms)", or empty when
  /// nothing was checked.
  static std::string describe(const RaisingCheckSummary &summary);

  /// The load options these flags ask for; `summary` receives what the
  /// check did.
  RaisingOptions options(RaisingCheckSummary *summary) const;

  llvm::cl::opt<bool> verify;
  llvm::cl::opt<bool> wrongForTesting;
};

} // namespace mlir::moe

#endif // MOE_TOOLS_RAISINGCHECK_H
