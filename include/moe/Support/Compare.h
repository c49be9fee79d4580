//===- Compare.h - an output against its reference ---------------*- C++ -*-===//
//
// How moe-run and moe-exec check a result against an expected .npy: the
// normwise relative error max|ours - ref| / max|ref| over the finite
// reference elements, NaN and inf required in the same places, and a
// default tolerance per element type. Standard C++ only.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_SUPPORT_COMPARE_H
#define MOE_SUPPORT_COMPARE_H

#include "moe/Support/Npy.h"

#include <string>

namespace npy {

struct Comparison {
  /// max|ours - ref| / max|ref| (the absolute error when ref is all 0).
  double relativeError = 0;
  /// Every NaN and inf of the reference is the same in ours.
  bool specialsMatch = true;
  double tolerance = 0;
  bool ok() const { return relativeError <= tolerance && specialsMatch; }
};

/// 1e-5 for f32/f64, 2e-3 for f16, 8e-3 for bf16 (they round every
/// intermediate), 0 for integers.
double defaultTolerance(DType type);

/// Compares `ours` with `reference` (a negative `tolerance`: the default for
/// the type). False with `error` set when their types or shapes differ.
bool compare(const Array &ours, const Array &reference, double tolerance, Comparison &result, std::string &error);

/// "max rel err 1.2e-07 (tol 1e-05) ok", or "... FAIL".
std::string describe(const Comparison &c);

} // namespace npy

#endif // MOE_SUPPORT_COMPARE_H
